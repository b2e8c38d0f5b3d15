"""Load a bomb-data LeRobot export with the real ``LeRobotDataset`` and print what it sees, as JSON.

Runs inside a lerobot side env (``lerobot30`` = lerobot 0.4.x for format v3.0, ``lerobot21`` =
lerobot 0.3.x for v2.1) with the checkout on PYTHONPATH (only to read the source store for PSNR and
for lerobot's own statistics over the same frames). The pytest side compares the output with the
store.

    python tests/compat/check_lerobot.py DATASET_ROOT STORE KEYS_JSON [--segments] [--frame-tasks]

``--segments``: the export was made with ``--segment-subtasks``; the store is read through the same
segmented view (``bomb_data.store.segments``). ``--frame-tasks``: also the ``task`` string
``LeRobotDataset.__getitem__`` gives for every frame (``frame_tasks``).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def main() -> None:
    root, store_path, keys = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
    flags = set(sys.argv[4:])
    import lerobot
    from lerobot.datasets import compute_stats as cs
    from lerobot.datasets.lerobot_dataset import CODEBASE_VERSION, LeRobotDataset

    from bomb_data.store import EpisodeStore
    from bomb_data.store.segments import SegmentedStore

    ds = LeRobotDataset("bomb/go_export", root=root, video_backend="pyav")
    meta = ds.meta
    out: dict = {
        "lerobot_version": getattr(lerobot, "__version__", None) or _dist_version("lerobot"),
        "codebase_version": CODEBASE_VERSION,
        "info_codebase_version": meta.info["codebase_version"],
        "num_frames": ds.num_frames,
        "num_episodes": ds.num_episodes,
        "len": len(ds),
        "fps": ds.fps,
        "robot_type": meta.robot_type,
        "camera_keys": list(meta.camera_keys),
        "video_keys": list(meta.video_keys),
        "features": {k: {"dtype": v["dtype"], "shape": list(v["shape"]), "names": v.get("names")}
                     for k, v in meta.features.items()},
    }
    hf = ds.hf_dataset.with_format(None)
    cols = {k: np.asarray(hf[k]) for k in (keys["state"], keys["action"], "timestamp", "frame_index",
                                           "episode_index", "index", "task_index")}
    out["columns"] = {k: v.tolist() for k, v in cols.items()}
    if CODEBASE_VERSION.startswith("v3"):
        tasks = [str(t) for t in meta.tasks.index]
        eps = [{"episode_index": int(e["episode_index"]), "length": int(e["length"]),
                "from": int(e["dataset_from_index"]), "to": int(e["dataset_to_index"]), "tasks": list(e["tasks"]),
                "seed": e.get("bomb_data/seed"), "store_index": e.get("bomb_data/store_index"),
                "target": e.get("bomb_data/target")} for e in meta.episodes]
    else:
        tasks = [meta.tasks[i] for i in sorted(meta.tasks)]
        edi = ds.episode_data_index
        eps = [{"episode_index": int(e["episode_index"]), "length": int(e["length"]),
                "from": int(edi["from"][i]), "to": int(edi["to"][i]), "tasks": list(e["tasks"]),
                "seed": e.get("bomb_data", {}).get("seed"), "store_index": e.get("bomb_data", {}).get("store_index"),
                "target": e.get("bomb_data", {}).get("target")}
               for i, e in enumerate(meta.episodes[k] for k in sorted(meta.episodes))]
    out["tasks"] = tasks
    out["episodes"] = eps

    # items through __getitem__: video decoding (or parquet images), task strings
    store = SegmentedStore(store_path) if "--segments" in flags else EpisodeStore(store_path)
    if "--frame-tasks" in flags:  # what a policy's dataloader gets as each frame's instruction
        out["frame_tasks"] = [ds[i]["task"] for i in range(len(ds))]
    cams = {"agentview": keys["agentview"], "wrist": keys["wrist"]}
    items, psnrs = [], {c: [] for c in cams}
    for e in eps:
        ep = store.episode(int(e["store_index"]))
        frames = {c: ep.images(c) for c in cams}
        T = e["length"]
        for t in sorted({0, 1, T // 2, T - 2, T - 1}):
            it = ds[e["from"] + t]
            rec = {"index": int(it["index"]), "episode_index": int(it["episode_index"]),
                   "frame_index": int(it["frame_index"]), "timestamp": float(it["timestamp"]),
                   "task": it["task"], "state": it[keys["state"]].numpy().tolist(),
                   "action": it[keys["action"]].numpy().tolist()}
            for c, k in cams.items():
                img = it[k]  # (3, H, W) float32 in [0, 1]
                arr = np.clip(np.round(img.numpy().transpose(1, 2, 0) * 255), 0, 255).astype(np.uint8)
                ref = frames[c][t]
                if ref.shape != arr.shape:
                    ref = np.asarray(Image.fromarray(ref).resize(arr.shape[1::-1], Image.Resampling.BILINEAR))
                rec[f"{c}_shape"] = list(img.shape)
                rec[f"{c}_range"] = [float(img.min()), float(img.max())]
                psnrs[c].append(psnr(arr, ref))
            items.append(rec)
    out["items"] = items
    out["psnr"] = {c: {"min": float(np.min(v)), "mean": float(np.mean(v))} for c, v in psnrs.items()}

    # action chunks as SmolVLA / pi0 request them (delta_timestamps), padded at the episode end
    horizon = 5
    dsd = LeRobotDataset("bomb/go_export", root=root, video_backend="pyav",
                         delta_timestamps={keys["action"]: [i / ds.fps for i in range(horizon)]})
    last = eps[0]["to"] - 1
    it = dsd[last - 2]
    out["chunk"] = {"at": last - 2, "action": it[keys["action"]].numpy().tolist(),
                    "pad": it[f"{keys['action']}_is_pad"].numpy().tolist()}

    # lerobot's own statistics over the same data: per episode, then aggregated
    feats = meta.features
    ep_stats = []
    with tempfile.TemporaryDirectory() as tmp:
        for e in eps:
            sl = slice(e["from"], e["to"])
            data = {k: v[sl] for k, v in cols.items()}
            ep = store.episode(int(e["store_index"]))
            paths = {}
            for c, k in cams.items():
                fr = ep.images(c)
                H, W = feats[k]["shape"][:2]
                d = Path(tmp) / f"{e['episode_index']}_{c}"
                d.mkdir()
                paths[k] = []
                for t, f in enumerate(fr):
                    im = Image.fromarray(f)
                    if im.size != (W, H):
                        im = im.resize((W, H), Image.Resampling.BILINEAR)
                    p = d / f"frame_{t:06d}.png"
                    im.save(p)
                    paths[k].append(str(p))
            s = cs.compute_episode_stats(data, feats)
            for k, ps in paths.items():
                arr = cs.sample_images(ps)
                # lerobot 0.4.x squares the uint8 samples in place (overflow; upstream later casts to
                # float32, whose running sums drift ~1% on 256x256 frames): call its function on
                # float64 samples, the exact value our export writes.
                fs = cs.get_feature_stats(arr.astype(np.float64), axis=(0, 2, 3), keepdims=True)
                s[k] = {n: v if n == "count" else np.squeeze(v / 255.0, axis=0) for n, v in fs.items()}
            ep_stats.append(s)
    ref = cs.aggregate_stats(ep_stats)
    diffs = {}
    for k, s in ref.items():
        for n, v in s.items():
            got = np.asarray(meta.stats[k][n], dtype=np.float64)
            exp = np.asarray(v, dtype=np.float64)
            scale = np.maximum(np.abs(exp), 1e-3)
            diffs[f"{k}/{n}"] = float(np.max(np.abs(got.reshape(exp.shape) - exp) / scale))
    out["stats_rel_diff"] = diffs
    out["stats_keys"] = {k: sorted(v) for k, v in meta.stats.items()}
    print(json.dumps(out))


def _dist_version(name: str) -> str | None:
    from importlib.metadata import version

    try:
        return version(name)
    except Exception:
        return None


if __name__ == "__main__":
    main()
