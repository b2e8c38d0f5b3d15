"""Probing sets: items written per second by ``make_probe_set`` (rendering included). Prints JSON.

    python benchmarks/bench_probe.py [--n 20] [--size 256] [--grid randomized]

Wall time and this process's CPU time (``time.process_time``, which counts the renderer's threads
too); on a machine shared with other work the CPU figure is the one to read. Target: >= 50 items/s
per core at 256².
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bomb_data.ground.probe import make_probe_set


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--grid", default="randomized")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        make_probe_set(a.grid, 1, Path(d) / "warm", size=a.size)  # compile the scene once
        t0, c0 = time.perf_counter(), time.process_time()
        meta = make_probe_set(a.grid, a.n, Path(d) / "set", size=a.size)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"grid": a.grid, "scenes": a.n, "size": a.size, "items": meta["items"],
                      "items_per_s_wall": round(meta["items"] / wall, 2),
                      "items_per_cpu_s": round(meta["items"] / cpu, 2), "target_items_per_s": 50}, indent=2))


if __name__ == "__main__":
    main()
