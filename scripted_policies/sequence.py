"""Expert for ``bomb_data/GoSequence-v0``: the pick-and-place expert once per subtask, chained.

A ``place`` subtask is the single task's pick and place (stone from its bowl onto the intersection);
a ``remove`` subtask is the same primitive from the board into the lid. Each subtask gets a fresh
``PickPlaceExpert`` planned from the info of the step its subtask began; the previous one runs to
its own end (release and retreat) before the next is planned, so the hand leaves a placed stone the
way the single task leaves it.

The finger direction is chosen here, for both ends of the carry: a remove picks from a crowded
point (a captured stone is surrounded), so the direction with the most room between the stones
around the pick and around the place point is searched in 5-degree steps, with the pads modelled as
boxes (three points across their width), and handed to ``PickPlaceExpert`` as its reference yaw
with no stones left to avoid (it then keeps that yaw).

A place grasps the stone ``PLACE_GRASP_RAISE_M`` higher than the single task's expert does (the
pads' lower face 5 mm, not 1 mm, above the stone's bottom): a stone that slides up in the grasp
during transport then still meets the board before the fingertips, so the closed-loop release puts
it down instead of dropping it from the fingertips' height. In the single task on 9x9 (10 stones,
seeds 0..199) that took ``dropped`` from 6/200 to 0/200; in sequences, where a chain of five places
compounds it, it was the cause of most failed sequences (docs/sequences.md).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bomb_data.config import ExpertConfig

from .pick_place import PickPlaceExpert


class SequenceExpert:
    """``reset(info, rng)`` plans the first subtask; ``act(obs, info)`` returns one action (7,)."""

    name = "expert"

    def __init__(self, config: ExpertConfig | None = None, control_hz: float = 10.0):
        self.cfg = config or ExpertConfig()
        self.control_hz = control_hz

    def reset(self, info: dict[str, Any], rng: np.random.Generator) -> None:
        self.rng = rng
        self._start(info)

    def _start(self, info: dict[str, Any]) -> None:
        self.index = int(info["subtask_index"])
        self.yaw: float | None = None
        cfg = self.cfg
        if info["privileged"].get("subtask_kind") == "remove":  # a surrounded stone: slower, so the hand tracks
            lo, hi = cfg.speed_m_s
            cfg = cfg.model_copy(update={"speed_m_s": (lo * REMOVE_SPEED_SCALE, hi * REMOVE_SPEED_SCALE)})
        self.expert = PickPlaceExpert(cfg, control_hz=self.control_hz)
        self.expert.reset(self._view(info), self.rng)
        if info["privileged"].get("subtask_kind") == "place":
            raise_grasp(self.expert, PLACE_GRASP_RAISE_M)

    def _view(self, info: dict[str, Any]) -> dict[str, Any]:
        if int(info["subtask_index"]) != self.index:
            return info
        pv = info["privileged"]
        if self.yaw is None:
            self.yaw = choose_yaw(pv)
        return {**info, "privileged": {**pv, "board_yaw": self.yaw, "board_stones": []}}

    def act(self, obs: Any, info: dict[str, Any]) -> NDArray[np.float32]:
        if int(info["subtask_index"]) != self.index and self.expert.done:
            self._start(info)
        return self.expert.act(obs, self._view(info))


REMOVE_SPEED_SCALE = 0.6  # of expert.speed_m_s, for remove subtasks
PLACE_GRASP_RAISE_M = 0.004  # place subtasks: grasp this much higher on the stone than PickPlaceExpert


def raise_grasp(expert: PickPlaceExpert, dz: float) -> None:
    """Move a freshly planned expert's grasp point (the end of its ``descend``) up by ``dz``."""
    seg = next(s for s in expert.segments if s.name == "descend")
    assert seg.end is not None
    seg.end = seg.end.copy()
    seg.end[2] += dz
PAD_RADIAL_M = 0.037  # outer face of an open finger pad from the grasp centre
PAD_HALF_WIDTH_M = 0.009


def choose_yaw(pv: dict[str, Any]) -> float:
    """Finger yaw (rad) with the most room between the pads and the board stones, at the pick and the
    place point together; ties go to the direction nearest the board's diagonal."""
    others = np.array([np.asarray(s, float)[:2] for s in pv["board_stones"]]).reshape(-1, 2)
    pts = [np.asarray(pv["stone_pos"], float)[:2], np.asarray(pv["target_pos"], float)[:2]]
    if not len(others):
        return float(pv["board_yaw"] + math.pi / 4)
    r = pv["stone_diameter"] / 2
    best, best_clear = 0.0, -np.inf
    for deg in np.arange(-90.0, 90.0, 5.0):
        yaw = pv["board_yaw"] + math.radians(45.0 + deg)
        opening = np.array([-math.sin(yaw), math.cos(yaw)])
        across = np.array([math.cos(yaw), math.sin(yaw)])
        pads = np.array([c + s * PAD_RADIAL_M * opening + w * across
                         for c in pts for s in (-1, 1) for w in (-PAD_HALF_WIDTH_M, 0.0, PAD_HALF_WIDTH_M)])
        clear = float(np.min(np.linalg.norm(others[None] - pads[:, None], axis=2))) - r
        if clear > best_clear + 1e-4:
            best, best_clear = yaw, clear
    return best
