"""What ``bomb-data info`` prints about a store: :func:`describe_store` (the whole description, and
optionally a sheet of thumbnails) and :func:`store_overview`, what it adds from the episodes'
metadata alone (no arrays read).

``store_overview(description, episodes)``:

- ``task``: ``place`` (GoPlace-v0) or ``sequence`` (GoSequence-v0, from the store's description);
- for a sequence store, ``sequences``: episodes per number of moves K (``moves``) and per number of
  subtasks (moves plus removals, ``subtasks``), per source (``sources``), in plan mode
  (``plan_mode``), and the subtasks completed (``subtasks_completed``: total and mean per episode);
- ``view``: what the agentview picture showed of the board at reset (``docs/perturbations.md``):
  ``board_visible_fraction``, ``line_spacing_px`` and ``hidden_intersections`` as distributions
  (count, mean, median, p10, p90, min, max over the episodes that recorded them) and
  ``target_visible`` as counts (visible, hidden, unknown: episodes without the field, e.g. stores
  recorded before it existed or episodes recorded without images).
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

#: Metadata fields of ``view`` summarised as distributions.
VIEW_NUMBERS = ("board_visible_fraction", "line_spacing_px", "hidden_intersections")


def _distribution(values: list[Any]) -> dict[str, Any]:
    v = np.array([float(x) for x in values if isinstance(x, (int, float)) and not isinstance(x, bool)
                  and math.isfinite(float(x))], dtype=float)
    if not v.size:
        return {"count": 0}
    r = lambda x: round(float(x), 4)  # noqa: E731
    return {"count": int(v.size), "mean": r(v.mean()), "median": r(np.median(v)), "p10": r(np.percentile(v, 10)),
            "p90": r(np.percentile(v, 90)), "min": r(v.min()), "max": r(v.max())}


def _counts(values: list[Any]) -> dict[str, int]:
    c = Counter(str(v) for v in values)
    return dict(sorted(c.items(), key=lambda kv: (len(kv[0]), kv[0])))


def store_overview(description: dict[str, Any], episodes: list[dict[str, Any]]) -> dict[str, Any]:
    """The task, the sequence distribution (sequence stores) and the view summary (see the module docstring)."""
    task = str(description.get("task") or "place")
    out: dict[str, Any] = {"task": task}
    if task == "sequence":
        seq = [m for m in episodes if m.get("subtasks") is not None]
        done = [int(m.get("subtasks_completed") or 0) for m in seq]
        out["sequences"] = {
            "moves": _counts([sum(1 for k, *_ in m["subtasks"] if k == "place") for m in seq]),
            "subtasks": _counts([len(m["subtasks"]) for m in seq]),
            "sources": _counts([(m.get("sequence") or {}).get("source", "?") for m in seq]),
            "plan_mode": sum(1 for m in seq if m.get("plan_mode")),
            "subtasks_completed": {"total": sum(done), "mean": round(sum(done) / len(done), 3) if done else None},
        }
    vis = [m.get("target_visible") for m in episodes]
    out["view"] = {**{k: _distribution([m.get(k) for m in episodes]) for k in VIEW_NUMBERS},
                   "target_visible": {"visible": sum(1 for v in vis if v is True),
                                      "hidden": sum(1 for v in vis if v is False),
                                      "unknown": sum(1 for v in vis if v is None)}}
    return out


def describe_store(path: Path, thumbnails: Path | None = None) -> dict[str, Any]:
    """What a store holds: episodes, splits, cells, image shape, control rate, versions, size, and
    :func:`store_overview`. The first and last episode are verified against their checksums first (the
    ends a killed writer or a truncation hits); StoreError if they are damaged. With ``thumbnails``,
    also a PNG sheet of the first and last agentview frame of up to 12 episodes at that path."""
    from . import EpisodeStore

    s = EpisodeStore(path)
    for i in sorted({0, len(s) - 1}) if len(s) else ():
        s.verify_episode(i)
    eps = s.episodes
    cells: dict[str, int] = {}
    for m in eps:
        cells[m["cell_id"]] = cells.get(m["cell_id"], 0) + 1
    summary: dict[str, Any] = {
        "store": str(path),
        "episodes": len(s),
        "successful": sum(1 for m in eps if m["success"]),
        "steps": s.num_steps,
        "splits": s.splits(),
        "cells": cells,
        "image_shape": list(s.image_shape),
        "control_hz": s.fps,
        "config_hash": s.description.get("config_hash"),
        "versions": s.description.get("versions"),
        "created": s.description.get("created"),
        "size_bytes": s.size_bytes(),
    }
    summary.update(store_overview(s.description, eps))  # task, sequences (K distribution), view at reset
    if thumbnails is not None:
        from ..pictures import contact_sheet

        imgs, labels = [], []
        for ep in s.iter_episodes(range(min(12, len(s)))):
            frames = ep.images("agentview")
            m = ep.meta
            imgs += [frames[0], frames[-1]]
            labels += [f"{m['episode_index']} {m['cell_id']}",
                       f"{m['target']} {'ok' if m['success'] else m['failure_reason']}"]
        if imgs:
            contact_sheet(imgs, labels, cols=6).save(thumbnails)
        summary["thumbnails"] = str(thumbnails)
    return summary
