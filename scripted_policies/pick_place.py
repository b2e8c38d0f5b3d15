"""Waypoint pick-and-place expert: approach, descend, grasp, lift, transport, lower,
settle, release, retreat.

The retreat lifts the open hand straight up until the fingertips are ``RETREAT_CLEAR_M`` (5 cm)
above the stone's top; then the expert holds still with the gripper open.

It reads only ``info["privileged"]`` (positions of stones, target, gripper) and returns canonical
actions (delta end-effector, gripper -1 open / +1 closed). Each segment follows a minimum-jerk
profile, so motion is smooth. Per-episode variation (speed, clearance height, a sub-millimetre
grasp offset, hold durations) is drawn from the episode's generator. While carrying the stone, the
place waypoint is corrected by the measured offset of the stone in the hand (privileged), so the
stone, not the hand, lands on the target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bomb_data.config import ExpertConfig
from bomb_data.rotations import quat_error, quat_mul
from bomb_data.schema import MAX_DPOS_M, MAX_DROT_RAD

GRASP_ABOVE_BOTTOM_M = 0.012  # grasp site height above the stone's bottom face
RELEASE_GAP_M = 0.0005  # stone bottom above the board when the fingers open
SETTLE_TOL_M = 0.0015  # the fingers open only once the stone's bottom is this close to the board...
SETTLE_EXTRA_STEPS = 8  # ...waiting at most this many steps beyond the settle (task.py allows 3 mm)
RETREAT_CLEAR_M = 0.05  # after the release the fingertips rise at least this far above the stone's top
FINGERTIP_BELOW_SITE_M = 0.011  # the pads' lower face below the grasp site (bomb_data/sim/panda.py)


def top_down_quat(yaw: float) -> NDArray[np.float64]:
    """Gripper pointing down (site z = world -z), fingers opening along the direction yaw + 90 deg."""
    qz = np.array([math.cos(yaw / 2), 0, 0, math.sin(yaw / 2)])
    return quat_mul(qz, np.array([0.0, 1.0, 0.0, 0.0]))


def _min_jerk(s: float) -> float:
    s = min(max(s, 0.0), 1.0)
    return s * s * s * (10 - 15 * s + 6 * s * s)


@dataclass
class _Segment:
    kind: str  # "move" | "hold"
    end: NDArray[np.float64] | None
    steps: int
    gripper: float
    name: str


class PickPlaceExpert:
    """The scripted expert. ``reset(info, rng)`` plans; ``act(obs, info)`` returns one action (7,)."""

    name = "expert"

    def __init__(self, config: ExpertConfig | None = None, control_hz: float = 10.0):
        self.cfg = config or ExpertConfig()
        self.dt = 1.0 / control_hz

    def reset(self, info: dict[str, Any], rng: np.random.Generator) -> None:
        pv = info["privileged"]
        c = self.cfg
        self.speed = float(rng.uniform(*c.speed_m_s))
        self.clear = float(pv["board_top_z"] + rng.uniform(*c.clearance_m))
        self.jitter = rng.uniform(-c.xy_jitter_m, c.xy_jitter_m, size=2)
        self.hold = int(rng.integers(3, 6))
        self.yaw = self._choose_yaw(pv)
        self.quat = top_down_quat(self.yaw)
        stone = np.asarray(pv["stone_pos"], float)
        bottom = stone[2] - pv["stone_thickness"] / 2
        above = np.array([stone[0] + self.jitter[0], stone[1] + self.jitter[1], self.clear])
        grasp = np.array([above[0], above[1], bottom + GRASP_ABOVE_BOTTOM_M])
        self.segments: list[_Segment] = [
            _Segment("move", above, self._steps(pv["eef_pos"], above), -1.0, "approach"),
            _Segment("move", grasp, self._steps(above, grasp, slow=True), -1.0, "descend"),
            _Segment("hold", None, self.hold, 1.0, "grasp"),
            _Segment("move", above.copy(), self._steps(grasp, above, slow=True), 1.0, "lift"),
            _Segment("move", None, 0, 1.0, "transport"),  # planned after the lift (needs the in-hand offset)
            _Segment("move", None, 0, 1.0, "lower"),
            _Segment("hold", None, 2, 1.0, "settle"),  # let the hand stop before opening: a slow release
            _Segment("hold", None, self.hold, -1.0, "release"),
            _Segment("move", None, 0, -1.0, "retreat"),
        ]
        self.i = 0
        self.k = 0
        self.start: NDArray[np.float64] | None = None
        self.q_start: NDArray[np.float64] | None = None
        self.hold_pos: NDArray[np.float64] | None = None
        self.done = False

    # -- planning helpers ------------------------------------------------------------------------
    def _steps(self, a: NDArray, b: NDArray, slow: bool = False) -> int:
        dist = float(np.linalg.norm(np.asarray(b) - np.asarray(a)))
        v = self.speed * (0.4 if slow else 1.0)
        return max(4, int(math.ceil(dist / v / self.dt * 1.1)))

    def _choose_yaw(self, pv: dict[str, Any]) -> float:
        """Finger direction with the most room between the target's neighbouring stones."""
        t = np.asarray(pv["target_pos"], float)[:2]
        others = np.array([np.asarray(s, float)[:2] for s in pv["board_stones"]]).reshape(-1, 2)
        reach = pv["stone_diameter"] / 2 + 0.012
        best, best_clear = 0.0, -1.0
        for deg in (0.0, 45.0, -45.0, 90.0):
            yaw = pv["board_yaw"] + math.radians(deg)
            opening = np.array([-math.sin(yaw), math.cos(yaw)])  # site y axis direction
            pads = np.stack([t + opening * reach, t - opening * reach])
            clear = float(np.min(np.linalg.norm(others[None] - pads[:, None], axis=2))) if len(others) else 1.0
            if clear > best_clear + 1e-4:
                best, best_clear = yaw, clear
        return best

    def _plan_after_lift(self, pv: dict[str, Any]) -> None:
        eef = np.asarray(pv["eef_pos"], float)
        stone = np.asarray(pv["stone_pos"], float)
        t = np.asarray(pv["target_pos"], float)
        offset = stone - eef  # stone relative to the grasp site, measured in hand
        bottom_below_site = -(offset[2] - pv["stone_thickness"] / 2)
        above_t = np.array([t[0] - offset[0], t[1] - offset[1], self.clear])
        place = np.array([above_t[0], above_t[1], pv["board_top_z"] + RELEASE_GAP_M + bottom_below_site])
        seg = self.segments
        seg[4].end, seg[4].steps = above_t, self._steps(eef, above_t)
        seg[5].end, seg[5].steps = place, self._steps(above_t, place, slow=True)
        # Retreat straight up until the fingertips are RETREAT_CLEAR_M above the stone's top (the
        # success check wants every finger task.CLEAR_M = 3 cm from the stone; the episode ends
        # there, once the stone has also rested for task.REST_HOLD_S).
        top = pv["board_top_z"] + pv["stone_thickness"]
        retreat = np.array([place[0], place[1], max(self.clear, top + RETREAT_CLEAR_M + FINGERTIP_BELOW_SITE_M)])
        seg[8].end, seg[8].steps = retreat, self._steps(place, retreat, slow=True)

    @staticmethod
    def _bottom_above_board(pv: dict[str, Any]) -> float:
        return float(pv["stone_pos"][2] - pv["stone_thickness"] / 2 - pv["board_top_z"])

    def _replan_lower(self, pv: dict[str, Any]) -> None:
        """The place height from the stone's offset in the hand now: a stone that slid in the grasp
        during transport (small stones on big boards) would otherwise be released too high."""
        eef = np.asarray(pv["eef_pos"], float)
        seg = self.segments[5]
        seg.end = seg.end.copy()
        seg.end[2] = eef[2] - self._bottom_above_board(pv) + RELEASE_GAP_M

    def _settle_down(self, pv: dict[str, Any]) -> None:
        """While settling, lower the hold point by what still separates the stone from the board
        beyond RELEASE_GAP_M (closed loop: the release must happen at the board)."""
        excess = self._bottom_above_board(pv) - RELEASE_GAP_M
        if excess > SETTLE_TOL_M / 2 and self.start is not None:
            self.start = self.start.copy()
            self.start[2] -= min(excess, 0.005)

    # -- acting ----------------------------------------------------------------------------------
    def act(self, obs: Any, info: dict[str, Any]) -> NDArray[np.float32]:
        pv = info["privileged"]
        eef = np.asarray(pv["eef_pos"], float)
        quat = np.asarray(pv["eef_quat"], float)
        if self.i >= len(self.segments):
            self.done = True
            return self._action(eef, quat, self.hold_pos if self.hold_pos is not None else eef, -1.0)
        seg = self.segments[self.i]
        if self.k == 0:
            if seg.name == "transport":
                self._plan_after_lift(pv)
            elif seg.name == "lower":
                self._replan_lower(pv)
            self.start = (self.hold_pos if self.hold_pos is not None else eef).copy()
        self.k += 1
        if seg.kind == "hold":
            if seg.name == "settle":
                self._settle_down(pv)
            des = self.start
        else:
            s = _min_jerk(self.k / seg.steps)
            des = self.start + s * (seg.end - self.start)
        a = self._action(eef, quat, des, seg.gripper)
        if seg.name == "settle" and self.k >= seg.steps and self.k < seg.steps + SETTLE_EXTRA_STEPS and (
                self._bottom_above_board(pv) > SETTLE_TOL_M):
            return a  # the stone is not down yet (it slid in the grasp): wait before opening
        if self.k >= seg.steps:
            self.hold_pos = des.copy()
            self.i += 1
            self.k = 0
        return a

    def _action(self, eef: NDArray, quat: NDArray, des: NDArray, gripper: float) -> NDArray[np.float32]:
        dpos = np.clip(des - eef, -MAX_DPOS_M, MAX_DPOS_M)
        drot = quat_error(self.quat, quat)
        n = np.linalg.norm(drot)
        lim = min(MAX_DROT_RAD, 0.25)
        if n > lim:
            drot *= lim / n
        return np.concatenate([dpos, drot, [gripper]]).astype(np.float32)
