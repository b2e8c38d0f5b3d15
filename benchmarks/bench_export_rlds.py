"""Benchmark the RLDS export (converters/rlds.py); prints JSON.

    python benchmarks/bench_export_rlds.py --store data/bomb_go     # an existing store
    python benchmarks/bench_export_rlds.py                          # generates a small 256x256 store first

Frames per second with 1 and 2 worker processes, with the stored JPEG files passed through
(the default) and with ``--image-size 224`` (decode, resize, re-encode). Target on this machine:
>= 1,000 frames/s with pass-through. The export runs in the core install (no tensorflow).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=None, help="store to export [default: generate one]")
    ap.add_argument("--episodes", type=int, default=12, help="episodes of the generated store")
    ap.add_argument("--size", type=int, default=256, help="image size of the generated store")
    ap.add_argument("--repeats", type=int, default=2, help="runs per setting (the best is reported)")
    args = ap.parse_args()

    from bomb_data._cpus import default_workers
    from bomb_data.store import EpisodeStore
    from converters import rlds

    tmp = Path(tempfile.mkdtemp(prefix="bench_rlds_"))
    try:
        store_path = args.store
        gen_s = None
        if store_path is None:
            from tests._stores import make_store

            store_path = tmp / "store"
            t0 = time.perf_counter()
            make_store(store_path, n=args.episodes, H=args.size, W=args.size, workers=default_workers())
            gen_s = round(time.perf_counter() - t0, 1)
        store = EpisodeStore(store_path)
        results = []
        for image_size in (None, 224):
            for workers in (1, 2):
                best = None
                for _ in range(args.repeats):
                    out = tmp / "out"
                    s = rlds.export(store_path, out, overwrite=True, workers=workers, image_size=image_size)
                    if best is None or s["seconds"] < best["seconds"]:
                        best = s
                    shutil.rmtree(out)
                results.append({"workers": workers, "image_size": best["image_size"],
                                "jpeg_pass_through": best["jpeg_pass_through"], "frames": best["frames"],
                                "seconds": best["seconds"], "frames_per_second": best["frames_per_second"],
                                "bytes_per_frame": round(best["bytes"] / best["frames"], 1)})
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        print(json.dumps({
            "benchmark": "export_rlds", "store": str(store_path), "episodes": len(store), "frames": store.num_steps,
            "store_image_shape": list(store.image_shape), "generated_store_seconds": gen_s,
            "cpu_count": os.cpu_count(), "load_average_1min": load, "target_frames_per_second": 1000,
            "results": results,
        }, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
