"""The placement task: stone layouts, the target, and the success check with failure reasons.

Success (all must hold): the active stone is released (no finger contact), at rest, flat on the
board, its centre within ``success_tolerance_cells`` x grid spacing of the target intersection,
and no other stone moved more than ``displaced_tolerance_m`` from where it started.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mujoco
import numpy as np
from numpy.typing import NDArray

from .config import SimConfig
from .errors import ConfigError
from .sim.scene import BOARD_THICKNESS_M, Scene, board_pose

REST_LIN_M_S = 0.01
REST_ANG_RAD_S = 0.5

FAILURE_REASONS = ("missed_grasp", "not_released", "dropped", "not_flat", "displaced_stones",
                   "wrong_intersection", "not_at_rest", "timeout")


def sample_layout(rng: np.random.Generator, n: int, k: int, layout: str) -> list[tuple[int, int]]:
    """``k`` distinct intersections of an n x n board, drawn without knowing the target.

    Layouts: ``random`` (uniform), ``clustered`` (nearest to a random centre, with jitter),
    ``line`` (along a random row, column or diagonal, continuing elsewhere when it is full).
    The target is drawn afterwards among the points left empty (``sample_target``), so the
    stones carry no information about it.
    """
    if not 0 <= k <= n * n - 1:
        raise ConfigError(f"scene.n_board_stones: expected 0..{n * n - 1} on a {n}x{n} board, given {k}")
    cells = [(r, c) for r in range(n) for c in range(n)]
    if k == 0:
        return []
    if layout == "random":
        idx = rng.choice(len(cells), size=k, replace=False)
        return [cells[i] for i in sorted(idx)]
    arr = np.array(cells, dtype=float)
    if layout == "clustered":
        center = rng.uniform(0, n - 1, size=2)
        d = np.linalg.norm(arr - center, axis=1) + rng.uniform(0, 0.8, size=len(cells))
    elif layout == "line":
        kind = rng.integers(0, 3)
        j = rng.integers(0, n)
        if kind == 0:
            d = np.abs(arr[:, 0] - j) * n + arr[:, 1]
        elif kind == 1:
            d = np.abs(arr[:, 1] - j) * n + arr[:, 0]
        else:
            d = np.abs(arr[:, 0] - arr[:, 1]) * n + arr[:, 0]
        d = d + rng.uniform(0, 0.01, size=len(cells))
    else:
        raise ConfigError(f"scene.layout: expected random, clustered or line, given {layout!r}")
    order = np.argsort(d)[:k]
    return [cells[i] for i in sorted(order)]


def empty_points(n: int, occupied: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The intersections of an n x n board without a stone, in row-major order."""
    occ = set(occupied)
    return [(r, c) for r in range(n) for c in range(n) if (r, c) not in occ]


def sample_target(rng: np.random.Generator, n: int, occupied: list[tuple[int, int]]) -> tuple[int, int]:
    """The target: uniform among the empty intersections (one draw from ``rng``)."""
    empty = empty_points(n, occupied)
    if not empty:
        raise ConfigError(f"scene.n_board_stones: no empty intersection left on the {n}x{n} board")
    return empty[int(rng.integers(len(empty)))]


def draw_board(r_layout: np.random.Generator, r_target: np.random.Generator, n: int, k: int, layout: str,
               target: tuple[int, int] | None = None) -> tuple[list[tuple[int, int]], tuple[int, int]]:
    """The board stones, then the target: what ``GoPlaceEnv.reset`` draws, in its order.

    The layout uses only ``r_layout``; the target (unless given) is drawn from ``r_target`` among
    the points the layout left empty. The same generators with any two targets give the same stones.

    Raises:
        ConfigError: a given target off the board or on a stone.
    """
    cells = sample_layout(r_layout, n, k, layout)
    if target is None:
        return cells, sample_target(r_target, n, cells)
    tr, tc = (int(v) for v in target)
    if not (0 <= tr < n and 0 <= tc < n):
        raise ConfigError(f"target: expected row and column in 0..{n - 1}, given {(tr, tc)}")
    if (tr, tc) in cells:
        raise ConfigError(f"target: expected an empty intersection, given {(tr, tc)}, which holds a board stone "
                          f"for this seed")
    return cells, (tr, tc)


@dataclass
class Placement:
    """Result of the success check at one instant."""

    success: bool
    reason: str | None
    error_m: float
    chosen: tuple[int, int]
    released: bool
    at_rest: bool
    flat: bool
    on_board: bool
    max_displacement_m: float


def nearest_intersection(sc: Scene, p_scene, xy: NDArray) -> tuple[tuple[int, int], NDArray]:
    """Nearest intersection (row, col) to a world (x, y), and the board-frame offset to it."""
    c, yaw = board_pose(p_scene)
    d = np.asarray(xy[:2]) - c[:2]
    cy, sy = math.cos(yaw), math.sin(yaw)
    local = np.array([cy * d[0] + sy * d[1], -sy * d[0] + cy * d[1]])
    n, s = sc.geom.size, sc.geom.spacing
    mid = (n - 1) / 2
    row = int(np.clip(round(mid - local[0] / s), 0, n - 1))
    col = int(np.clip(round(mid - local[1] / s), 0, n - 1))
    return (row, col), local


class SuccessChecker:
    """Evaluates the placement against the target on a live MjData."""

    def __init__(self, sc: Scene, cfg: SimConfig, p_scene, target: tuple[int, int], target_world: NDArray,
                 initial_board_stones: NDArray):
        self.sc, self.cfg, self.p = sc, cfg, p_scene
        self.target = target
        self.target_world = target_world
        self.initial = initial_board_stones  # (k, 3)
        self.finger_geoms = set(sc.ids["finger_geoms"])  # type: ignore[arg-type]
        self.active_geom = sc.stone_geoms[0]
        self.lifted = False
        self.tray_z = float(sc.tray_center[2])

    def _finger_contact(self, d: mujoco.MjData) -> bool:
        for i in range(d.ncon):
            c = d.contact[i]
            pair = (c.geom1, c.geom2)
            if self.active_geom in pair and (pair[0] in self.finger_geoms or pair[1] in self.finger_geoms):
                return True
        return False

    def check(self, d: mujoco.MjData) -> Placement:
        sc, g = self.sc, self.sc.geom
        body = sc.stone_bodies[0]
        pos = d.xpos[body]
        if pos[2] > BOARD_THICKNESS_M + g.stone_thickness * 1.5 + 0.01:
            self.lifted = True
        vel = np.zeros(6)
        mujoco.mj_objectVelocity(sc.model, d, mujoco.mjtObj.mjOBJ_BODY, body, vel, 0)
        at_rest = np.linalg.norm(vel[3:]) < REST_LIN_M_S and np.linalg.norm(vel[:3]) < REST_ANG_RAD_S
        zaxis = d.xmat[body].reshape(3, 3)[:, 2]
        flat = math.degrees(math.acos(min(1.0, abs(float(zaxis[2]))))) < self.cfg.max_tilt_deg
        on_board_z = abs(pos[2] - (BOARD_THICKNESS_M + g.stone_thickness / 2)) < 0.004
        chosen, local = nearest_intersection(sc, self.p, pos)
        on_board = bool(on_board_z and np.all(np.abs(local) <= g.half_extent))
        released = not self._finger_contact(d)
        err = float(np.linalg.norm(pos[:2] - self.target_world[:2]))
        others = np.array([d.xpos[b] for b in sc.stone_bodies[1:]]).reshape(-1, 3)
        disp = float(np.max(np.linalg.norm(others - self.initial, axis=1))) if len(others) else 0.0
        ok = (released and at_rest and flat and on_board and err < self.cfg.success_tolerance_cells * g.spacing
              and disp < self.cfg.displaced_tolerance_m)
        reason = None if ok else self._reason(released, at_rest, flat, on_board, err, disp)
        return Placement(ok, reason, err, chosen, released, at_rest, flat, on_board, disp)

    def _reason(self, released: bool, at_rest: bool, flat: bool, on_board: bool, err: float, disp: float) -> str:
        g = self.sc.geom
        if not self.lifted:
            return "missed_grasp"
        if not released:
            return "not_released"
        if not on_board:
            return "dropped"
        if not flat:
            return "not_flat"
        if disp >= self.cfg.displaced_tolerance_m:
            return "displaced_stones"
        if err >= self.cfg.success_tolerance_cells * g.spacing:
            return "wrong_intersection"
        if not at_rest:
            return "not_at_rest"
        return "timeout"
