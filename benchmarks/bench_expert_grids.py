"""The scripted expert's success on every cell of every shipped grid, under the success check. Prints JSON.

    python benchmarks/bench_expert_grids.py [--grids nominal randomized study ablation] [--episodes 10]
                                            [--mixed 200] [--out FILE]

State-only environment (``GoPlaceEnv(render_images=False)``): the expert acts from privileged
state, so image-level axes (noise, blur, JPEG, colour balance, ...) cannot change its success;
every scene-level axis is applied. Per cell: ``--episodes`` episodes with the cell's parameters,
episode k of the grid using cell k mod n_cells and seed ``episode_seed(seed, k, 0)`` and the
expert's generator ``expert_rngs(seed)`` (exactly as ``bomb-data generate``). A ``random``-mode
grid (``randomized``) is measured per level (its one-at-a-time cells) and also as the mix it
generates (``--mixed`` episodes, every axis sampled at once). Each row gives successes, episodes,
the Wilson 95% interval, failure reasons and mean episode length (steps).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

from bomb_data.config import SimConfig  # noqa: E402
from bomb_data.env import GoPlaceEnv  # noqa: E402
from bomb_data.perturb.grid import load_grid  # noqa: E402
from bomb_data.rollout import episode_seed, expert_rngs  # noqa: E402
from scripted_policies import PickPlaceExpert  # noqa: E402


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of k successes in n trials."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def episode(env: GoPlaceEnv, params: Any, seed: int) -> tuple[dict[str, Any], int]:
    obs, info = env.reset(seed=seed, options={"params": params})
    ex = PickPlaceExpert(control_hz=env.cfg.control_hz)
    ex.reset(info, expert_rngs(seed)[0])
    steps, done = 0, False
    while not done:
        obs, _, term, trunc, info = env.step(ex.act(obs, info))
        steps += 1
        done = term or trunc
    return info, steps


def _row(results: list[tuple[bool, str | None, int]]) -> dict[str, Any]:
    k, n = sum(r[0] for r in results), len(results)
    lo, hi = wilson(k, n)
    reasons: dict[str, int] = {}
    for ok, reason, _ in results:
        if not ok:
            reasons[str(reason)] = reasons.get(str(reason), 0) + 1
    return {"successes": k, "episodes": n, "rate": round(k / n, 4), "wilson95": [round(lo, 3), round(hi, 3)],
            "failures": reasons, "mean_steps": round(float(np.mean([r[2] for r in results])), 1)}


def per_cell(env: GoPlaceEnv, name: str, episodes: int, seed: int) -> dict[str, Any]:
    g = load_grid(name)
    cells = g.cells()
    res: dict[str, list[tuple[bool, str | None, int]]] = {c.id: [] for c in cells}
    t0 = time.perf_counter()
    for j in range(episodes):
        for i, c in enumerate(cells):
            k = i + j * len(cells)
            info, steps = episode(env, c.params, episode_seed(seed, k, 0))
            res[c.id].append((bool(info["success"]), info.get("failure_reason"), steps))
    rows = {cid: _row(r) for cid, r in res.items()}
    everything = [x for r in res.values() for x in r]
    return {"grid": name, "cells": len(cells), "episodes_per_cell": episodes, "overall": _row(everything),
            "cells_below_95": {cid: r["rate"] for cid, r in rows.items() if r["rate"] < 0.95},
            "min_rate": min(r["rate"] for r in rows.values()), "seconds": round(time.perf_counter() - t0, 1),
            "per_cell": rows}


def mixed(env: GoPlaceEnv, name: str, episodes: int, seed: int) -> dict[str, Any]:
    g = load_grid(name)
    out = []
    for k in range(episodes):
        _, params = g.episode_params(seed, k)
        info, steps = episode(env, params, episode_seed(seed, k, 0))
        out.append((bool(info["success"]), info.get("failure_reason"), steps))
    return {"grid": name, "mode": "every axis sampled per episode", **_row(out)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--grids", nargs="+", default=["nominal", "randomized", "study", "ablation"])
    ap.add_argument("--episodes", type=int, default=10, help="expert episodes per cell")
    ap.add_argument("--mixed", type=int, default=200, help="episodes of each random-mode grid's mix (0 = skip)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="also write the JSON here")
    a = ap.parse_args()
    env = GoPlaceEnv(SimConfig(), render_images=False)
    machine = {"cpus": os.cpu_count(), "load_average_1min_at_start": round(os.getloadavg()[0], 2)}
    out: dict[str, Any] = {"machine": machine, "grids": {}}
    try:
        for name in a.grids:
            out["grids"][name] = per_cell(env, name, a.episodes, a.seed)
            if a.mixed > 0 and load_grid(name).spec.mode == "random":
                out["grids"][name]["mixed"] = mixed(env, name, a.mixed, a.seed)
    finally:
        env.close()
    text = json.dumps(out, indent=2)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    main()
