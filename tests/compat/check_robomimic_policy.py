"""The first observation an evaluated robomimic checkpoint gets vs its training data; print JSON.

Run in the side environment ``.venvs/robomimic``:

    python tests/compat/check_robomimic_policy.py CKPT.pth EXPORT.hdf5 OBS.npz DEMO

``OBS.npz`` holds the observation bomb-data's eval builds for the checkpoint at the reset of the
episode ``demo_DEMO`` was generated from. Both sides go through robomimic's own code: the eval side
through ``RobomimicPolicy.observation`` (``ObsUtils.process_obs``, as robomimic's environment
wrappers) and ``RolloutPolicy._prepare_observation``; the dataset side is frame 0 of that demo
from ``SequenceDataset`` with the checkpoint's obs keys, through ``ObsUtils.process_obs_dict`` as
``Algo.postprocess_batch_for_training`` applies it to every training batch. Prints
per low-dim key the max abs difference, per image key shapes, value range and PSNR (also against
the frame flipped upside down and with channels reversed, which the check must be able to tell
apart), and three actions after ``start_episode`` twice (same actions = per-episode reset).
"""

from __future__ import annotations

import contextlib
import json
import sys

import numpy as np


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(1.0 / mse)


def main() -> None:
    ckpt, h5, npz, demo = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    import robomimic.utils.obs_utils as ObsUtils
    import torch
    from robomimic.utils.dataset import SequenceDataset

    from bomb_data.evaluate.protocol import EpisodeStart
    from bomb_data.evaluate.robomimic_policy import RobomimicPolicy

    with contextlib.redirect_stdout(sys.stderr):
        pol = RobomimicPolicy(ckpt)
        obs = dict(np.load(npz))
        ev = pol.observation(obs)  # what act() hands to RolloutPolicy
        ev_t = pol.policy._prepare_observation(ev)
        keys = list(pol.info.images) + list(pol.info.state)
        ds = SequenceDataset(hdf5_path=h5, obs_keys=keys, dataset_keys=("actions",), load_next_obs=False,
                             frame_stack=1, seq_length=1, pad_frame_stack=True, pad_seq_length=True,
                             get_pad_mask=False, goal_mode=None, hdf5_cache_mode="low_dim", hdf5_use_swmr=True,
                             hdf5_normalize_obs=False, filter_by_attribute=None)
        idx = next(i for i in range(len(ds)) if ds._index_to_demo_id[i] == f"demo_{demo}")
        item = ds[idx]
        # training applies this in Algo.postprocess_batch_for_training (no obs normalisation in this config)
        dobs = ObsUtils.process_obs_dict({k: np.asarray(item["obs"][k][0]) for k in keys})
        out: dict = {"state": {}, "images": {}}
        for k in pol.info.state:
            e = ev_t[k][0].numpy()
            d = np.asarray(dobs[k], np.float32)
            out["state"][k] = {"max_abs": float(np.max(np.abs(e - d))), "shape_eval": list(e.shape),
                               "shape_dataset": list(d.shape)}
        for k in pol.info.images:
            e = ev_t[k][0].numpy()
            d = np.asarray(dobs[k], np.float32)
            out["images"][k] = {"shape_eval": list(e.shape), "shape_dataset": list(d.shape),
                                "range_eval": [float(e.min()), float(e.max())],
                                "range_dataset": [float(d.min()), float(d.max())],
                                "psnr_db": psnr(e, d), "psnr_db_flipped": psnr(e[:, ::-1], d),
                                "psnr_db_bgr": psnr(e[::-1], d)}
        acts = []
        for _ in range(2):
            pol.reset(EpisodeStart(episode_id="check/0", seed=7, instruction=""))
            acts.append([pol.act(obs).tolist() for _ in range(3)])
        out["actions"] = acts[0]
        out["actions_repeat_after_reset"] = bool(np.allclose(acts[0], acts[1]))
        out["torch"] = torch.__version__
    print(json.dumps(out))


if __name__ == "__main__":
    main()
