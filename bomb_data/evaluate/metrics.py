"""Per-episode results → aggregates: success with Wilson 95% intervals per cell, per axis level, per
level of each axis marginalised over the others (random and full grids) and per intersection,
placement error distributions, failure reasons, latency and control rate.

Conventions (docs/evaluation.md): episodes whose policy call failed (``status == "error"``, e.g. the
server dropped) are counted apart in ``n_error`` and left out of success rates, which are over
completed episodes (``n``); ``success_rate_all`` counts them as failures.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (0, 1) when n == 0.

    Args:
        successes: number of successes k (0 <= k <= n).
        n: number of trials.
        z: normal quantile (1.96 for 95%).

    Returns:
        (low, high), both in [0, 1].
    """
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"successes: expected 0..{n}, found {successes}")
    p = successes / n
    z2 = z * z
    den = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), nd)


def success_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """n, successes, rate, Wilson 95% interval, errors; over completed episodes (status ok)."""
    ok = [r for r in rows if r.get("status") == "ok"]
    n, k = len(ok), sum(1 for r in ok if r.get("success"))
    lo, hi = wilson_interval(k, n)
    return {"n": n, "successes": k, "success_rate": _r(k / n) if n else None, "ci95": [_r(lo), _r(hi)],
            "n_error": len(rows) - n, "success_rate_all": _r(k / len(rows)) if rows else None}


def distribution(values: Iterable[float | None]) -> dict[str, Any]:
    """count, mean, median, p10, p90, max, min of the finite values."""
    v = np.array([x for x in values if x is not None and math.isfinite(x)], float)
    if v.size == 0:
        return {"count": 0, "mean": None, "median": None, "p10": None, "p90": None, "max": None, "min": None}
    return {"count": int(v.size), "mean": _r(v.mean(), 3), "median": _r(float(np.median(v)), 3),
            "p10": _r(float(np.percentile(v, 10)), 3), "p90": _r(float(np.percentile(v, 90)), 3),
            "max": _r(v.max(), 3), "min": _r(v.min(), 3)}


def _group(rows: list[dict[str, Any]], key) -> dict[Any, list[dict[str, Any]]]:
    g: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        for k in key(r):
            g[k].append(r)
    return g


def _cell_block(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in rows if r.get("status") == "ok"]
    reasons: dict[str, int] = defaultdict(int)
    for r in rows:
        if not r.get("success"):
            reasons[r.get("failure_reason") or "unknown"] += 1
    return {**success_stats(rows),
            "placement_error_mm": distribution(r.get("placement_error_mm") for r in ok),
            "placement_error_cells": distribution(r.get("placement_error_cells") for r in ok),
            "failure_reasons": dict(sorted(reasons.items())),
            **view_stats(rows)}


def view_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What the agentview picture showed of the board at reset: pixels between neighbouring lines
    (median per episode), visible fraction of the board, and episodes whose target the arm hid
    (rows without these fields, e.g. from older runs, count as unknown)."""
    seen = [r for r in rows if r.get("target_visible") is not None]
    return {"line_spacing_px": distribution(r.get("line_spacing_px") for r in rows),
            "board_visible_fraction": distribution(r.get("board_visible_fraction") for r in rows),
            "target_hidden": sum(1 for r in seen if not r["target_visible"]), "target_visibility_known": len(seen)}


def per_axis_marginal(rows: list[dict[str, Any]], grid_axes: dict[str, list[Any]] | None = None,
                      extra: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None
                      ) -> dict[str, dict[str, Any]]:
    """Success per level of each axis, marginalised over the other axes.

    For grids whose episodes take one level of every axis (``random``: sampled together per
    episode; ``full``: the factorial), each row carries ``grid_levels`` (axis -> level id). For axis
    a and level v the block is ``success_stats`` of every row with ``grid_levels[a] == v``, whatever
    the other axes took, plus ``heldout`` (the level is held out of training) and ``share`` (the
    fraction of the rows with ``grid_levels`` that drew it). Rows without ``grid_levels`` are left out.

    Args:
        rows: result rows.
        grid_axes: axis -> ``[[level id, heldout], ...]`` in grid order (``run.json``); levels no
            episode drew are listed with n = 0. Without it, axes and levels come in first-seen order.

    Returns:
        axis -> level id -> block (empty when no row has ``grid_levels``).
    """
    graded = [r for r in rows if isinstance(r.get("grid_levels"), dict)]
    if not graded:
        return {}
    order: dict[str, dict[str, bool]] = {a: {str(lv): bool(h) for lv, h in lvs} for a, lvs in (grid_axes or {}).items()}
    for r in graded:
        for a, lv in r["grid_levels"].items():
            order.setdefault(a, {}).setdefault(str(lv), False)
    out: dict[str, dict[str, Any]] = {}
    for a, levels in order.items():
        by_level = _group(graded, lambda r, a=a: [str(r["grid_levels"][a])] if a in r["grid_levels"] else [])
        n_axis = sum(len(v) for v in by_level.values())
        block: dict[str, Any] = {}
        for lv, held in levels.items():
            rs = by_level.get(lv, [])
            block[lv] = {**success_stats(rs), "heldout": held,
                         "share": _r(len(rs) / n_axis) if n_axis else None, **(extra(rs) if extra else {})}
        out[a] = block
    return out


def aggregate(rows: list[dict[str, Any]], grid_axes: dict[str, list[Any]] | None = None,
              extra: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None) -> dict[str, Any]:
    """All aggregates of a run from its per-episode rows (``results.jsonl``).

    ``grid_axes`` (axis -> ``[[level id, heldout], ...]``, from ``run.json``) orders the per-axis
    marginals and lists the levels no episode drew. ``extra(rows)`` (e.g. the chain metrics of a
    sequence run, ``bomb_data.evaluate.sequence.chain_extra``) is merged into every block: overall,
    per cell, per axis level, per marginal level and per split.

    Returns:
        ``overall``, ``per_cell`` (by cell id, in first-seen order), ``per_axis_level``
        (axis → level → stats; the ``nominal`` level is the nominal cell, or, in grids whose cells
        combine several axes, every cell where that axis is nominal), ``per_intersection``
        (``"NxN"`` → row → col → {n, successes, rate}), ``failure_reasons``, ``error_kinds``,
        ``latency`` and ``timing``; for a replay of a store, ``replay``: the episodes whose outcome
        differs from the one recorded (a determinism check); ``per_axis_marginal`` (see
        ``per_axis_marginal``; empty unless rows carry ``grid_levels``); ``per_split``: success of
        episodes with and without a held-out level (``train_levels``, ``heldout_levels``).
    """
    more = extra or (lambda rs: {})
    out: dict[str, Any] = {"episodes": len(rows), "overall": {**_cell_block(rows), **more(rows)}}
    out["per_cell"] = {cid: {"axis": rs[0].get("axis"), "level": rs[0].get("level"),
                             "heldout": bool(rs[0].get("heldout")), **_cell_block(rs), **more(rs)}
                       for cid, rs in _group(rows, lambda r: [r["cell_id"]]).items()}
    combined = any(len(r.get("levels") or []) > 1 for r in rows)
    axes = sorted({a for r in rows for a, _ in (r.get("levels") or [])})
    per_axis: dict[str, dict[str, Any]] = {}
    for a in axes:
        levels = _group(rows, lambda r, a=a: [lv for ax, lv in (r.get("levels") or []) if ax == a])
        nominal = [r for r in rows if (not r.get("levels")) or (combined and a not in {ax for ax, _ in r["levels"]})]
        block: dict[str, Any] = {}
        if nominal:
            block["nominal"] = {**success_stats(nominal), "heldout": False, **more(nominal)}
        for lv, rs in levels.items():
            block[lv] = {**success_stats(rs), "heldout": any(r.get("heldout") for r in rs), **more(rs)}
        per_axis[a] = block
    out["per_axis_level"] = per_axis
    out["per_axis_marginal"] = per_axis_marginal(rows, grid_axes, extra)
    out["per_split"] = {k: {**success_stats(rs), **more(rs)} for k, rs in (
        ("train_levels", [r for r in rows if not r.get("heldout")]),
        ("heldout_levels", [r for r in rows if r.get("heldout")]))}
    inter: dict[str, Any] = {}
    for r in rows:  # (a sequence's moves have targets of their own: per move in its chain block)
        if r.get("status") != "ok" or r.get("target") is None or r.get("task") == "sequence":
            continue
        n = int(r.get("board_size") or 0)
        tr, tc = (int(x) for x in r["target"])
        cell = inter.setdefault(f"{n}x{n}", {}).setdefault(str(tr), {}).setdefault(str(tc), {"n": 0, "successes": 0})
        cell["n"] += 1
        cell["successes"] += int(bool(r.get("success")))
    for board in inter.values():
        for row in board.values():
            for c in row.values():
                c["success_rate"] = _r(c["successes"] / c["n"])
    out["per_intersection"] = inter
    out["failure_reasons"] = out["overall"]["failure_reasons"]
    kinds: dict[str, int] = defaultdict(int)
    for r in rows:
        if r.get("status") == "error":
            kinds[r.get("error_kind") or "unknown"] += 1
    out["error_kinds"] = dict(sorted(kinds.items()))
    replayed = [r for r in rows if r.get("status") == "ok" and r.get("source_success") is not None]
    if replayed:  # replay: policy: each episode should reproduce the outcome recorded in the store
        differ = [r["episode_id"] for r in replayed if bool(r.get("success")) != bool(r["source_success"])]
        out["replay"] = {"episodes": len(replayed), "same_outcome": len(replayed) - len(differ),
                         "different_outcome": differ}
    lat_all = [x for r in rows for x in (r.get("latency_ms") or [])]
    out["latency"] = {
        "policy_calls": len(lat_all),
        "latency_ms_mean": _r(float(np.mean(lat_all)), 2) if lat_all else None,
        "latency_ms_p95": _r(float(np.percentile(lat_all, 95)), 2) if lat_all else None,
        "control_hz_mean": _r(float(np.mean([r["control_hz"] for r in rows if r.get("control_hz")])), 2)
        if any(r.get("control_hz") for r in rows) else None,
    }
    steps = sum(int(r.get("steps") or 0) for r in rows)
    out["timing"] = {
        "env_steps": steps,
        "episode_seconds_total": _r(sum(float(r.get("seconds") or 0) for r in rows), 2),
        "overhead_ms_per_step": _r(float(np.average([r["overhead_ms_per_step"] for r in rows if r.get("steps")],
                                                    weights=[r["steps"] for r in rows if r.get("steps")])), 2)
        if steps else None,
        "env_ms_per_step": _r(float(np.average([r["env_ms_per_step"] for r in rows if r.get("steps")],
                                               weights=[r["steps"] for r in rows if r.get("steps")])), 2)
        if steps else None,
    }
    return out
