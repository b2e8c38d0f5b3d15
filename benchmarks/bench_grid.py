"""Perturbation grids: the expert's success per cell, and what applying a perturbation costs. Prints JSON.

    python benchmarks/bench_grid.py [--grids study ablation] [--episodes 4] [--cost-cells 0] [--out FILE]

Success: for every cell of each grid, ``--episodes`` expert episodes (episode k of the grid uses
cell k mod n_cells and seed ``episode_seed(seed, k, 0)``, exactly as ``bomb-data generate``), in
the state-only environment (the expert acts from privileged state, so image-level axes cannot
change its success; scene-level axes are all applied). Each cell reports successes, episodes, the
Wilson 95% lower bound and failure reasons; ``cells_below_95`` lists cells under 95%.

Cost: full generation episodes per cell (``rollout_expert``: both 256 x 256 cameras rendered,
JPEG-encoded for the store) with timers around the perturbation work:
``params_s`` (grid.episode_params), ``image_s`` (perturb_frame on every frame), and
``scene_build_s`` (compiling a new model when the cell changes the scene structure; the
environment caches compiled models, so this is paid once per structure per worker). The fraction
reported is (params_s + image_s) / episode_s, the median over ``--cost-repeats`` timed episodes
after one untimed warm-up episode of the cell (per-process one-time work such as the noise bank is
excluded, as in a long generation run); ``with_build`` adds scene_build_s as if the model were
rebuilt for every episode (the worst case). The renderer runs as ``bomb-data generate`` runs it
with one worker per core (``LP_NUM_THREADS=1``) unless the variable is already set.

A frame that the perturbation leaves as a JPEG file (``jpeg_quality``) is stored as that file, so
generation skips the store's own JPEG encode of it. ``net_fraction`` accounts for that: the time
the skipped encodes would have taken (``store_encode_saved_s``, measured by encoding the same
frames at the store's quality after the episode) is subtracted from the perturbation's time and
added back to the episode's: net = image_s + params_s - saved_s, net_fraction = net /
(episode_s - net). Cells without JPEG artefacts have saved_s = 0 and net ~ fraction.
The reported row of a cell is the timed episode with the median net_fraction.

``cost.random_all_axes`` times ``--cost-random`` episodes of the ``randomized`` grid, where every
axis is sampled at once (image-level ones included), and reports the same fractions.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("LP_NUM_THREADS", "1")  # as bomb-data generate's workers (one per core)

import cv2  # noqa: E402
import numpy as np  # noqa: E402

import bomb_data.env as env_mod  # noqa: E402
from bomb_data.config import BombConfig, SimConfig  # noqa: E402
from bomb_data.env import GoPlaceEnv  # noqa: E402
from bomb_data.perturb.grid import load_grid  # noqa: E402
from bomb_data.rollout import episode_seed, rollout_expert  # noqa: E402
from bomb_data.sim.scene import Structure, build_scene  # noqa: E402
from bomb_data.store.images import encode_jpeg  # noqa: E402
from scripted_policies import PickPlaceExpert  # noqa: E402

cv2.setNumThreads(1)  # as bomb-data generate's workers (bomb_data.generate._worker_env)


def wilson_low(k: int, n: int, z: float = 1.96) -> float:
    if n == 0:
        return 0.0
    p = k / n
    d = 1 + z * z / n
    return (p + z * z / (2 * n) - z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / d


def run_state_episode(env: GoPlaceEnv, params: Any, seed: int) -> dict[str, Any]:
    obs, info = env.reset(seed=seed, options={"params": params})
    ex = PickPlaceExpert(control_hz=env.cfg.control_hz)
    ex.reset(info, np.random.default_rng(seed))
    done = False
    while not done:
        obs, _, term, trunc, info = env.step(ex.act(obs, info))
        done = term or trunc
    return info


def success_per_cell(grid_name: str, episodes: int, seed: int) -> dict[str, Any]:
    g = load_grid(grid_name)
    cells = g.cells()
    env = GoPlaceEnv(SimConfig(), render_images=False)
    res: dict[str, dict[str, Any]] = {c.id: {"successes": 0, "episodes": 0, "failures": {}} for c in cells}
    t0 = time.perf_counter()
    for j in range(episodes):
        for i in range(len(cells)):
            k = i + j * len(cells)
            cell, params = g.episode_params(seed, k)
            info = run_state_episode(env, params, episode_seed(seed, k, 0))
            r = res[cell.id]
            r["episodes"] += 1
            if info["success"]:
                r["successes"] += 1
            else:
                reason = info.get("failure_reason") or "unknown"
                r["failures"][reason] = r["failures"].get(reason, 0) + 1
    env.close()
    for r in res.values():
        r["rate"] = r["successes"] / r["episodes"]
        r["wilson95_low"] = round(wilson_low(r["successes"], r["episodes"]), 3)
    total = sum(r["successes"] for r in res.values()), sum(r["episodes"] for r in res.values())
    return {"grid": g.name, "hash": g.hash, "cells": len(cells), "episodes_per_cell": episodes,
            "overall_rate": total[0] / total[1], "episodes": total[1],
            "cells_below_95": {cid: r["rate"] for cid, r in res.items() if r["rate"] < 0.95},
            "seconds": round(time.perf_counter() - t0, 1), "per_cell": res}


class _ImageTimer:
    """Times perturb_frame inside the environment (wraps the name env.py calls)."""

    def __init__(self) -> None:
        self.seconds, self.frames = 0.0, 0
        self.as_jpeg: list[Any] = []  # frames stored as the perturbation's own JPEG file
        self._original = env_mod.perturb_frame

    def __enter__(self) -> _ImageTimer:
        def timed(img, p, rng):  # noqa: ANN001, ANN202
            t = time.perf_counter()
            out = self._original(img, p, rng)
            self.seconds += time.perf_counter() - t
            self.frames += 1
            if out[1] is not None:
                self.as_jpeg.append(out[0])
            return out

        env_mod.perturb_frame = timed
        return self

    def __exit__(self, *exc: object) -> None:
        env_mod.perturb_frame = self._original

    def reset(self) -> None:
        self.seconds, self.frames = 0.0, 0
        self.as_jpeg = []

    def saved_store_encode_s(self, quality: int) -> float:
        """Seconds the store's JPEG encode of the frames kept as their own JPEG files would take."""
        t = time.perf_counter()
        for f in self.as_jpeg:
            encode_jpeg(f, quality)
        return time.perf_counter() - t


def _timed_episode(env: GoPlaceEnv, cfg: BombConfig, params: Any, seed: int, timer: _ImageTimer,
                   params_s: float) -> dict[str, Any]:
    timer.reset()
    _, summ = rollout_expert(env, cfg, params, seed)
    saved = timer.saved_store_encode_s(cfg.generate.jpeg_quality)
    net = params_s + timer.seconds - saved
    return {"episode_s": summ["seconds"], "steps": summ["steps"], "success": summ["success"],
            "image_s": timer.seconds, "frames": timer.frames, "saved_s": saved,
            "fraction": (params_s + timer.seconds) / summ["seconds"],
            "net_fraction": net / (summ["seconds"] - net)}


def cost_per_cell(grid_name: str, seed: int, max_cells: int, axes: list[str] | None = None,
                  repeats: int = 3) -> dict[str, Any]:
    g = load_grid(grid_name)
    cells = [c for c in g.cells() if not axes or c.axis is None or c.axis in axes]
    cells = cells if max_cells <= 0 else cells[:max_cells]
    cfg = BombConfig()
    env = GoPlaceEnv(cfg)
    built: dict[Structure, float] = {}
    nominal_structure = Structure.of(g.cells()[0].params.scene)
    rows = {}
    with _ImageTimer() as timer:
        try:
            rollout_expert(env, cfg, g.cells()[0].params, 10_000)  # warm up: model, GL context
            index = {c.id: i for i, c in enumerate(g.cells())}
            for c in cells:
                i = index[c.id]
                t = time.perf_counter()
                for _ in range(100):
                    cell, params = g.episode_params(seed, i)
                params_s = (time.perf_counter() - t) / 100
                st = Structure.of(params.scene)
                if st not in built:
                    t = time.perf_counter()
                    build_scene(cfg.sim, params.scene)
                    built[st] = time.perf_counter() - t
                build = built[st] if st != nominal_structure else 0.0
                ep_seed = episode_seed(seed, i, 0)
                rollout_expert(env, cfg, params, ep_seed)  # warm-up of this cell (untimed)
                runs = [_timed_episode(env, cfg, params, ep_seed, timer, params_s) for _ in range(repeats)]
                med = sorted(runs, key=lambda r: r["net_fraction"])[len(runs) // 2]
                rows[cell.id] = {"episode_s": round(med["episode_s"], 3), "steps": med["steps"],
                                 "success": med["success"], "params_s": round(params_s, 6),
                                 "image_s": round(med["image_s"], 4),
                                 "image_ms_per_frame": round(1e3 * med["image_s"] / max(1, med["frames"]), 3),
                                 "episode_ms_per_frame": round(1e3 * med["episode_s"] / max(1, med["frames"]), 3),
                                 "scene_build_s": round(build, 3),
                                 "fraction": round(med["fraction"], 4),
                                 "fractions_all_repeats": [round(r["fraction"], 4) for r in runs],
                                 "fraction_with_build": round(med["fraction"] + build / med["episode_s"], 4),
                                 "store_encode_saved_s": round(med["saved_s"], 4),
                                 "net_fraction": round(med["net_fraction"], 4)}
        finally:
            env.close()
    fr = [r["fraction"] for r in rows.values()]
    worst = max(rows, key=lambda k: rows[k]["fraction"])
    return {"grid": g.name, "cells_measured": len(rows), "repeats": repeats, "max_fraction": max(fr),
            "max_fraction_cell": worst, "mean_fraction": round(float(np.mean(fr)), 4),
            "max_fraction_with_build": max(r["fraction_with_build"] for r in rows.values()),
            "cells_at_or_above_10pct": {k: r["fraction"] for k, r in rows.items() if r["fraction"] >= 0.10},
            "max_net_fraction": max(r["net_fraction"] for r in rows.values()),
            "max_net_fraction_cell": max(rows, key=lambda k: rows[k]["net_fraction"]),
            "per_cell": rows}


def cost_random(seed: int, episodes: int) -> dict[str, Any]:
    """Fractions over episodes of the ``randomized`` grid (every axis sampled per episode)."""
    g = load_grid("randomized")
    cfg = BombConfig()
    env = GoPlaceEnv(cfg)
    out = []
    with _ImageTimer() as timer:
        try:
            rollout_expert(env, cfg, g.episode_params(seed, 0)[1], 10_000)
            for i in range(episodes):
                t = time.perf_counter()
                _, params = g.episode_params(seed, i)
                params_s = time.perf_counter() - t
                rollout_expert(env, cfg, params, episode_seed(seed, i, 1))  # warm-up: scene compile cached
                out.append(_timed_episode(env, cfg, params, episode_seed(seed, i, 0), timer, params_s))
        finally:
            env.close()
    fr = sorted(r["fraction"] for r in out)
    net = sorted(r["net_fraction"] for r in out)
    return {"grid": g.name, "episodes": len(out), "median_fraction": round(fr[len(fr) // 2], 4),
            "max_fraction": round(fr[-1], 4), "median_net_fraction": round(net[len(net) // 2], 4),
            "max_net_fraction": round(net[-1], 4),
            "image_ms_per_frame_median": round(float(np.median([1e3 * r["image_s"] / r["frames"] for r in out])), 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--grids", nargs="+", default=["study", "ablation"])
    ap.add_argument("--episodes", type=int, default=4, help="expert episodes per cell (success)")
    ap.add_argument("--cost-grid", default="ablation", help="grid whose cells are timed (--cost-repeats episodes each)")
    ap.add_argument("--cost-cells", type=int, default=0, help="time only the first N cells (0 = all)")
    ap.add_argument("--cost-axes", nargs="*", default=None, help="time only cells of these axes (and nominal)")
    ap.add_argument("--cost-repeats", type=int, default=3, help="timed episodes per cell (median reported)")
    ap.add_argument("--cost-random", type=int, default=10, help="randomized-grid episodes timed (0 = skip)")
    ap.add_argument("--no-cost", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-success", action="store_true")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    a = ap.parse_args()
    out: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "mujoco_gl": os.environ.get("MUJOCO_GL"),
                                       "lp_num_threads": os.environ.get("LP_NUM_THREADS"),
                                       "load_average_1min_at_start": round(os.getloadavg()[0], 2)},
                           "success": {}}
    for name in [] if a.no_success else a.grids:
        out["success"][name] = success_per_cell(name, a.episodes, a.seed)
    if not a.no_cost:
        out["cost"] = cost_per_cell(a.cost_grid, a.seed, a.cost_cells, a.cost_axes, a.cost_repeats)
        if a.cost_random > 0:
            out["cost"]["random_all_axes"] = cost_random(a.seed, a.cost_random)
    text = json.dumps(out, indent=2)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    main()
