"""Load a robomimic-layout export with robomimic's own SequenceDataset; print what it read as JSON.

Run in the side environment ``.venvs/robomimic`` (scripts/side_envs/robomimic.sh):

    python tests/compat/check_robomimic.py EXPORT.hdf5

For each filter key (``train``, ``valid``, and all demos) it builds a SequenceDataset the way a
robomimic training config over LIBERO-style keys would (frame_stack 1, seq_length 1, no next_obs,
low-dim cache), then reads every sample: per demo, the actions, rewards, dones and low-dim
observations of all its steps, and per image key the sum and shape of each frame. Each step's
instruction as a robomimic user finds it (robomimic 0.3 reads no text, and casts dataset keys to
float): a sequence demo's ``subtask_index`` dataset key indexes its ``subtask_instructions``
attribute; any other demo has its ``instruction`` attribute.
"""

from __future__ import annotations

import contextlib
import json
import sys

import numpy as np
import robomimic
import robomimic.utils.obs_utils as ObsUtils
from robomimic.utils.dataset import SequenceDataset

LOW_DIM = ["ee_pos", "ee_ori", "ee_states", "gripper_states", "joint_states"]
RGB = ["agentview_rgb", "eye_in_hand_rgb"]


def load(path: str, filter_key: str | None) -> dict:
    import h5py

    with h5py.File(path, "r") as f:
        subtasks = all("subtask_index" in g for g in f["data"].values())
    keys = ("actions", "rewards", "dones") + (("subtask_index",) if subtasks else ())
    ds = SequenceDataset(
        hdf5_path=path, obs_keys=LOW_DIM + RGB, dataset_keys=keys,
        load_next_obs=False, frame_stack=1, seq_length=1, pad_frame_stack=True, pad_seq_length=True,
        get_pad_mask=False, goal_mode=None, hdf5_cache_mode="low_dim", hdf5_use_swmr=True,
        hdf5_normalize_obs=False, filter_by_attribute=filter_key)
    demos: dict[str, dict] = {}
    for i in range(len(ds)):
        item = ds[i]
        demo = ds._index_to_demo_id[i]
        d = demos.setdefault(demo, {k: [] for k in ["actions", "rewards", "dones", *LOW_DIM]}
                             | {f"{k}_sum": [] for k in RGB} | {f"{k}_shape": None for k in RGB})
        for k in ("actions", "rewards", "dones"):
            d[k].append(np.asarray(item[k][0], dtype=np.float64).reshape(-1).tolist())
        attrs = ds.hdf5_file[f"data/{demo}"].attrs
        text = json.loads(attrs["subtask_instructions"])[int(item["subtask_index"][0])] if subtasks \
            else str(attrs["instruction"])
        d.setdefault("instruction", []).append(text)
        for k in LOW_DIM:
            d[k].append(np.asarray(item["obs"][k][0], dtype=np.float64).tolist())
        for k in RGB:
            img = np.asarray(item["obs"][k][0])
            d[f"{k}_sum"].append(int(img.astype(np.int64).sum()))
            d[f"{k}_shape"] = list(img.shape)
            d[f"{k}_dtype"] = str(img.dtype)
    return {"n_demos": ds.n_demos, "len": len(ds), "demos": list(ds.demos), "data": demos}


def main() -> None:
    path = sys.argv[1]
    with contextlib.redirect_stdout(sys.stderr):  # robomimic prints progress to stdout
        ObsUtils.initialize_obs_utils_with_obs_specs({"obs": {"low_dim": LOW_DIM, "rgb": RGB}})
        out = {"robomimic_version": robomimic.__version__,
               "filters": {key or "all": load(path, key) for key in ("train", "valid", None)}}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
