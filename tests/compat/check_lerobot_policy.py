"""Observation equivalence of ``lerobot:`` (issue 24), run inside a side env with lerobot: lerobot30
(0.4, v3.0 datasets), lerobot21_train (0.3.3, v2.1 datasets) or lerobot30_sim.

The evaluator's first observation of an episode (adapted by bomb-data in the main venv, saved as
NPZ: exactly what ``eval`` sends the policy) and the first frame of the same episode in the
training dataset (read by lerobot's own ``LeRobotDataset``) go through the checkpoint's own
preprocessor; prints JSON with their differences, plus what the same comparison gives for a
flipped and a channel-swapped image (so the test can tell orientation and channel order apart),
and one action of the policy.

    python tests/compat/check_lerobot_policy.py CHECKPOINT DATASET_ROOT OBS_NPZ EPISODE_INDEX
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np  # noqa: E402


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(1.0 / mse)  # images in [0, 1]


def main() -> None:
    ckpt, root, npz, ep = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    import torch
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from bomb_data.evaluate.lerobot_policy import LeRobotPolicy
    from bomb_data.evaluate.protocol import EpisodeStart

    pol = LeRobotPolicy(ckpt)
    with np.load(npz) as z:
        obs = {k: z[k] for k in z.files}
    obs["task"] = str(obs["task"])
    ds = LeRobotDataset("bomb/go_export", root=root, video_backend="pyav")
    if hasattr(ds, "episode_data_index"):  # lerobot 0.3 (format v2.1)
        start = int(ds.episode_data_index["from"][ep])
    else:  # lerobot 0.4 (format v3.0)
        start = int(ds.meta.episodes[ep]["dataset_from_index"])
    item = ds[start]
    assert int(item["frame_index"]) == 0 and int(item["episode_index"]) == ep
    b_ds = {k: item[k].unsqueeze(0) for k in (*pol.info.images, *pol.info.state)}
    b_ds["task"] = [item["task"]]
    b_ev = pol.batch(obs)
    out: dict = {"line": pol.info.line, "task_eval": obs["task"], "task_dataset": item["task"], "images": {},
                 "state": {}}
    # the checkpoint's own preprocessing: its preprocessor (0.4) or the model's normalize_inputs (0.3)
    pre = pol.pre if pol.info.line == "0.4" else (lambda b: pol.model.normalize_inputs(pol.pre(b)))
    with torch.inference_mode():
        p_ev, p_ds = pre(dict(b_ev)), pre(dict(b_ds))
    for k in pol.info.images:
        e, d = b_ev[k][0].numpy(), b_ds[k][0].numpy()
        out["images"][k] = {
            "shape_eval": list(e.shape), "shape_dataset": list(d.shape), "psnr_db": psnr(e, d),
            "psnr_db_flipped": psnr(e[:, ::-1, :], d), "psnr_db_bgr": psnr(e[::-1], d),
            "preprocessed_max_abs": float((p_ev[k] - p_ds[k]).abs().max()),
        }
    for k in pol.info.state:
        out["state"][k] = {"raw_max_abs": float((b_ev[k] - b_ds[k]).abs().max()),
                           "preprocessed_max_abs": float((p_ev[k] - p_ds[k]).abs().max()),
                           "eval": b_ev[k][0].tolist(), "dataset": b_ds[k][0].tolist()}
    pol.reset(EpisodeStart("x", 1234, obs["task"]))
    a1 = [pol.act(obs).tolist() for _ in range(3)]
    pol.reset(EpisodeStart("x", 1234, obs["task"]))
    a2 = [pol.act(obs).tolist() for _ in range(3)]
    out["actions"] = a1
    out["actions_repeat_after_reset"] = a1 == a2
    print(json.dumps(out))


if __name__ == "__main__":
    main()
