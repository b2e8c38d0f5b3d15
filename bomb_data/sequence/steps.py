"""The per-step instruction of a stored episode (light: exporters import it).

A GoSequence episode (``meta["task"] == "sequence"``) stores ``subtask_index`` per step and the
instruction of each subtask in its metadata; a step's instruction is the instruction of its subtask,
or the whole plan (``meta["instruction"]``) in plan mode. Every other episode has one instruction.
"""

from __future__ import annotations

from typing import Any


def is_sequence(meta: dict[str, Any]) -> bool:
    return meta.get("task") == "sequence"


def episode_instructions(meta: dict[str, Any]) -> list[str]:
    """The distinct instructions an episode's steps carry, in order of appearance (metadata only)."""
    if is_sequence(meta) and not meta.get("plan_mode"):
        n = len(meta.get("subtask_ends") or meta["subtask_instructions"])
        return list(dict.fromkeys(str(t) for t in meta["subtask_instructions"][:n]))
    return [str(meta["instruction"])]


def step_instructions(ep: Any) -> list[str]:
    """The instruction of every step of a store episode (``bomb_data.store.reader.Episode``)."""
    meta = ep.meta
    if is_sequence(meta) and not meta.get("plan_mode"):
        texts = meta["subtask_instructions"]
        return [str(texts[int(i)]) for i in ep["subtask_index"]]
    return [str(meta["instruction"])] * ep.length
