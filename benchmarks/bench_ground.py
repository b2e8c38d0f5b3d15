"""Grounding metrics: time of ``ground_scores`` (every metric at once) on one map. Prints JSON.

    python benchmarks/bench_ground.py [--size 256] [--repeats 7] [--number 200]

Three maps of ``--size``² against a 40 x 20 px box-shaped mask: smooth (a Gaussian blob, few local
maxima), noise (uniform random, a local maximum every ~9 px) and flat (a constant map, every pixel
a peak candidate: the worst case of the pointing-game search). Each figure is the best of
``--repeats`` runs of ``--number`` calls, in ms per call (target: <= 1 ms at 256²), as wall time
and as this process's CPU time (``time.process_time``; on a machine shared with other work the
wall time includes waiting for a core, the CPU time does not).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import timeit

import numpy as np

from bomb_data.ground.metrics import ground_scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--number", type=int, default=200)
    a = ap.parse_args()
    n = a.size
    y, x = np.mgrid[0:n, 0:n].astype(np.float32)
    maps = {
        "smooth": np.exp(-((x - 0.4 * n) ** 2 + (y - 0.45 * n) ** 2) / (2 * (0.08 * n) ** 2)).astype(np.float32),
        "noise": np.random.default_rng(0).random((n, n)).astype(np.float32),
        "flat": np.ones((n, n), np.float32),
    }
    mask = np.zeros((n, n), bool)
    mask[int(0.4 * n) : int(0.4 * n) + 20, int(0.35 * n) : int(0.35 * n) + 40] = True
    out = {"size": [n, n], "numpy": np.__version__, "python": platform.python_version(), "ms_per_call": {},
           "cpu_ms_per_call": {}}
    for name, s in maps.items():
        for key, timer in (("ms_per_call", time.perf_counter), ("cpu_ms_per_call", time.process_time)):
            best = min(timeit.repeat(lambda s=s: ground_scores(s, mask), number=a.number, repeat=a.repeats,
                                     timer=timer))
            out[key][name] = round(best / a.number * 1000, 4)
    out["target_ms"] = 1.0
    out["meets_target_wall"] = all(v <= 1.0 for v in out["ms_per_call"].values())
    out["meets_target_cpu"] = all(v <= 1.0 for v in out["cpu_ms_per_call"].values())
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
