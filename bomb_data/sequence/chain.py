"""CALVIN-style chain evaluation of GoSequence episodes: metrics and a small HTML report.

The protocol is the environment's own: the policy is given the first subtask's instruction; when a
subtask succeeds the next one's replaces it; the episode stops at the first subtask that fails (its
step budget, ``sim.max_steps``, runs out) or when the last one succeeds. ``run_chain`` rolls a policy
(anything with ``reset(info, rng)`` and ``act(obs, info)``, like the scripted experts) through
episodes of seeds; ``chain_metrics`` summarises:

- ``chain_success[k-1]``: of the episodes with at least k subtasks, the fraction that completed the
  first k in a row (k = 1 .. the longest chain);
- ``average_completed``: mean number of subtasks completed in a row;
- ``failures``: count per ``kind:failure_reason`` of the subtask that ended each failed episode;
- ``placement_error_m``: per completed place subtask, the stone's distance to its intersection
  (mean, median, 95th percentile, max);
- ``chain_counts[k-1]``: ``[completed the first k, episodes with at least k subtasks]`` (the counts
  behind ``chain_success``, for confidence intervals);
- ``failures_by_kind``: ``failures`` split by the kind of the subtask (``place`` / ``remove``);
- ``placement_error_m_per_move[j]``: ``placement_error_m`` of the (j+1)-th place subtask of each
  episode (the j-th move of the sequence), when completed.

A result may carry ``displaced_points`` (``[row, col]`` of board stones that ended the episode more
than the displacement tolerance from where they had come to rest, as ``bomb-data eval`` records
them); the board diagram marks them.
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from ..seeds import expert_rngs
from .pictures import board_diagram


def run_chain(env: Any, policy: Any, seeds: list[int], options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One chain per seed; returns per-episode results (plain data, JSON-serialisable)."""
    out = []
    for seed in seeds:
        obs, info = env.reset(seed=seed, options=options)
        policy.reset(info, expert_rngs(seed)[0])
        while True:
            obs, _, term, trunc, info = env.step(policy.act(obs, info))
            if term or trunc:
                break
        done = int(info["subtasks_completed"])
        errors = [float(r.error_m) if r is not None else None for r in env.results]
        out.append({
            "seed": int(seed), "n_subtasks": int(info["n_subtasks"]), "completed": done,
            "success": bool(info["success"]), "steps": int(env._steps),
            "failed_kind": None if info["success"] else info["subtask_kind"],
            "failure_reason": info.get("failure_reason"),
            "subtasks": [[k, c, int(p[0]), int(p[1])] for k, c, p in info["plan"]],
            "subtask_errors_m": errors,
            "board_size": int(env.params.scene.board_size),
            "initial_position": [[r, c, col] for (r, c), col in sorted(env.game.initial.items())],
            "final_position": [[r, c, col] for (r, c), col in sorted(env.game.final.items())],
        })
    return out


def chain_metrics(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The chain metrics of ``run_chain`` results (see the module docstring)."""
    if not results:
        return {"episodes": 0}
    longest = max(r["n_subtasks"] for r in results)
    curve, counts = [], []
    for k in range(1, longest + 1):
        eligible = [r for r in results if r["n_subtasks"] >= k]
        done = sum(r["completed"] >= k for r in eligible)
        curve.append(round(done / len(eligible), 4))
        counts.append([int(done), len(eligible)])
    errs = np.array([r["subtask_errors_m"][i] for r in results for i, (kind, *_) in enumerate(r["subtasks"])
                     if kind == "place" and i < r["completed"]], dtype=float)
    per_move: list[list[float]] = []
    for r in results:
        places = [i for i, (kind, *_) in enumerate(r["subtasks"]) if kind == "place"]
        for j, i in enumerate(places):
            while len(per_move) <= j:
                per_move.append([])
            if i < r["completed"] and r["subtask_errors_m"][i] is not None:
                per_move[j].append(float(r["subtask_errors_m"][i]))
    fails = Counter(f"{r['failed_kind']}:{r['failure_reason']}" for r in results if not r["success"])
    by_kind: dict[str, dict[str, int]] = {"place": {}, "remove": {}}
    for key, n in fails.most_common():
        kind, _, reason = key.partition(":")
        by_kind.setdefault(kind, {})[reason] = n
    return {
        "episodes": len(results),
        "full_success": round(sum(r["success"] for r in results) / len(results), 4),
        "chain_success": curve,
        "average_completed": round(float(np.mean([r["completed"] for r in results])), 3),
        "failures": dict(fails.most_common()),
        "placement_error_m": _error_stats(errs),
        "chain_counts": counts,
        "failures_by_kind": by_kind,
        "placement_error_m_per_move": [_error_stats(np.array(v, dtype=float)) for v in per_move],
    }


def _error_stats(errs: np.ndarray) -> dict[str, Any]:
    if not errs.size:
        return {"n": 0}
    return {"n": int(errs.size), "mean": float(errs.mean()), "median": float(np.median(errs)),
            "p95": float(np.percentile(errs, 95)), "max": float(errs.max())}


def _png(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def chain_curve(curve: list[float], size: tuple[int, int] = (320, 200)) -> Image.Image:
    """The chain-length curve: success of completing 1..K subtasks in a row."""
    w, h = size
    img = Image.new("RGB", size, (255, 255, 255))
    d = ImageDraw.Draw(img)
    x0, y0, x1, y1 = 36, 12, w - 10, h - 24
    d.rectangle([x0, y0, x1, y1], outline=(0, 0, 0))
    for v in (0.0, 0.5, 1.0):
        y = y1 - v * (y1 - y0)
        d.text((4, y - 5), f"{v:.1f}", fill=(0, 0, 0))
    n = len(curve)
    pts = [(x0 + (x1 - x0) * (i / max(1, n - 1)), y1 - v * (y1 - y0)) for i, v in enumerate(curve)]
    if len(pts) > 1:
        d.line(pts, fill=(30, 90, 200), width=2)
    for i, (x, y) in enumerate(pts):
        d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(30, 90, 200))
        d.text((x - 3, y1 + 4), str(i + 1), fill=(0, 0, 0))
    return img


def write_report(results: list[dict[str, Any]], out: str | Path, title: str = "GoSequence chain evaluation") -> Path:
    """An HTML page: the metrics, the chain-length curve, and per episode the start position and the
    moves (made: numbered; captured stones crossed; subtasks not completed ringed in red)."""
    m = chain_metrics(results)
    rows = []
    for r in results:
        img = episode_diagram(r)
        status = "complete" if r["success"] else f"stopped at subtask {r['completed'] + 1}: {r['failed_kind']} " \
                                                  f"{r['failure_reason']}"
        rows.append(f"<div class=ep><img src='{_png(img)}'><br>seed {r['seed']}: {r['completed']}/"
                    f"{r['n_subtasks']} ({html.escape(status)})</div>")
    page = (f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif} .ep{display:inline-block;margin:6px;font-size:12px}</style>"
            f"<h1>{html.escape(title)}</h1><pre>{html.escape(_fmt(m))}</pre>"
            f"<h2>Chain length</h2><img src='{_png(chain_curve(m.get('chain_success', [])))}'>"
            f"<h2>Episodes</h2>{''.join(rows)}")
    p = Path(out)
    p.write_text(page, encoding="utf-8")
    return p


def episode_diagram(r: dict[str, Any], cell: int = 16) -> Image.Image:
    """The board of one chain result: the start position with the completed subtasks applied (moves
    numbered, removed stones crossed), the subtasks not completed ringed in red, the stones in
    ``displaced_points`` (if any) marked with an orange square."""
    before = {(a, b): c for a, b, c in r["initial_position"]}
    after = dict(before)
    moves, removed = [], []
    for kind, col, a, b in r["subtasks"][: r["completed"]]:
        if kind == "place":
            after[(a, b)] = col
            moves.append((col, a, b))
        else:
            after.pop((a, b), None)
            removed.append((a, b))
    missed = [(a, b) for _, _, a, b in r["subtasks"][r["completed"]:]]
    displaced = [(int(a), int(b)) for a, b in r.get("displaced_points") or []]
    return board_diagram(int(r["board_size"]), after, moves, removed, missed, cell=cell, displaced=displaced)


def _fmt(m: dict[str, Any]) -> str:
    import json

    return json.dumps(m, indent=2)
