"""The LeRobot backbone hook on a trained checkpoint: ACT trained on a bomb-data LeRobot v3.0 export.

Run in the side env ``lerobot30`` (lerobot 0.4.4, torch CPU; no mujoco, no scikit-learn) from the
repository root:

    PYTHONPATH=$PWD .venvs/lerobot30/bin/python tests/compat/check_probe_act.py DATASET IMAGES.npz OUT \
        [--steps 300 --batch 4] [--explain-out DIR]

1. ACT is trained for ``--steps`` steps on ``DATASET`` exactly as in check_explain_act.py (tiny ACT,
   ResNet-18 backbone from random initialisation, lerobot's own pre-processor and L1 loss), and saved
   as a lerobot checkpoint (``OUT/pretrained_model``: config, weights, pre-processor).
2. ``LeRobotBackbone.from_pretrained(OUT/pretrained_model)`` — the hook as a user loads it — gives the
   features of every image of ``IMAGES.npz`` (``images``: N×H×W×3 uint8, rendered by bomb-data in the
   main environment), written to ``OUT/features.npz`` (``trained``; ``init``: the same backbone at its
   initialisation, seed 0, for reference).
3. Checks: the reloaded checkpoint gives the features of the policy in memory; the hook's input
   normalisation is the one lerobot's pre-processor applies (features through ``pre`` + the backbone,
   pooled, are the hook's); training changed the backbone.

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from check_explain_act import CAMERAS, CHUNK, explain_trained, load_frames, train

FRAMES = ((0, 5), (0, 40), (1, 20))  # the frames explained with --explain-out (check_explain_act's default)


def pipeline_features(policy: Any, pre: Any, images: np.ndarray, state_dim: int) -> np.ndarray:
    """Features the way the policy itself sees an image: lerobot's pre-processor, then model.backbone."""
    x = torch.from_numpy(images.astype(np.float32) / 255.0).permute(0, 3, 1, 2).contiguous()
    batch = {f"observation.images.{c}": x for c in CAMERAS}
    batch["observation.state"] = torch.zeros(len(images), state_dim)
    b = pre(batch)
    with torch.no_grad():
        fm = policy.model.backbone(b["observation.images.agentview"])["feature_map"]
    return fm.mean(dim=(2, 3)).numpy()


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def main(dataset: Path, images_path: Path, out: Path, steps: int, batch: int,
         explain_out: Path | None = None) -> dict[str, Any]:
    """Steps 1-3; with ``explain_out``, check_explain_act's steps 2 and 3 on the same trained policy
    afterwards (into ``explain_out``, its result under ``"explain"``): one training serves both tests."""
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    ds, items = load_frames(dataset, CHUNK)
    t_load = time.perf_counter() - t0
    policy, pre, losses = train(ds, items, steps, CHUNK, batch)
    t_train = time.perf_counter() - t0 - t_load
    res = {"steps": steps, "batch": batch, "load_seconds": round(t_load, 1), "train_seconds": round(t_train, 1),
           **probe_trained(ds, policy, pre, losses, images_path, out)}
    if explain_out is not None:  # after the probe: explaining patches the policy's attention modules
        t1 = time.perf_counter()
        res["explain"] = {"steps": steps, "batch": batch, "train_seconds": round(t_train, 1),
                          **explain_trained(dataset, ds, items, policy, pre, losses, batch, explain_out,
                                            list(FRAMES))}
        res["explain_seconds"] = round(time.perf_counter() - t1, 1)
    return res


def probe_trained(ds: Any, policy: Any, pre: Any, losses: list[float], images_path: Path,
                  out: Path) -> dict[str, Any]:
    """Steps 2 and 3 on a policy ``train`` made."""
    from lerobot.policies.act.modeling_act import ACTPolicy

    from bomb_data.ground.features import LeRobotBackbone

    ckpt = out / "pretrained_model"
    policy.save_pretrained(ckpt)
    pre.save_pretrained(ckpt)

    images = np.load(images_path)["images"]
    hook = LeRobotBackbone.from_pretrained(ckpt)
    t1 = time.perf_counter()
    trained = np.stack([hook.features({"agentview": im}) for im in images])
    per_image_ms = (time.perf_counter() - t1) / len(images) * 1e3
    stats = ds.meta.stats["observation.images.agentview"]
    in_memory = LeRobotBackbone(policy, mean=np.asarray(stats["mean"]), std=np.asarray(stats["std"]))
    mem = np.stack([in_memory.features({"agentview": im}) for im in images[:8]])
    state_dim = int(policy.config.input_features["observation.state"].shape[0])
    through_pre = pipeline_features(hook.policy, pre, images[:8], state_dim)
    torch.manual_seed(0)  # train() builds the policy right after this seed: its initial weights
    init_policy = ACTPolicy(policy.config)
    init = LeRobotBackbone(init_policy, mean=hook.mean, std=hook.std)
    init_feats = np.stack([init.features({"agentview": im}) for im in images])
    np.savez(out / "features.npz", trained=trained.astype(np.float32), init=init_feats.astype(np.float32))
    return {"loss_first": losses[0],
            "loss_last": float(np.mean(losses[-20:])), "module": hook.module_path, "shape": list(trained.shape),
            "finite": bool(np.isfinite(trained).all()), "describe": hook.describe(),
            # differences relative to the largest feature (float32 sums in other orders: ~1e-6)
            "reload_rel_diff": rel(mem, trained[:8]), "preprocessor_rel_diff": rel(through_pre, trained[:8]),
            "trained_vs_init_rel_diff": rel(init_feats, trained), "feature_scale": float(np.abs(trained).mean()),
            "per_image_ms": round(per_image_ms, 2)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset", type=Path)
    ap.add_argument("images", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--explain-out", type=Path, default=None,
                    help="also explain the trained policy as check_explain_act.py does, into this directory")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MUJOCO_GL", "egl")
    print(json.dumps(main(a.dataset, a.images, a.out, a.steps, a.batch, a.explain_out)))
