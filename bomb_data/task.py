"""The placement task: stone layouts, the target, and the success check with failure reasons.

Success means the stone was *placed*: grasped and lifted from the tray, released at the board
(its lowest point at most ``RELEASE_MAX_HEIGHT_M`` above the board top, or touching the board or
a stone) and slowly (at most ``RELEASE_MAX_SPEED_M_S``), then lying flat on the board within
``success_tolerance_cells`` x spacing of the target, at rest for ``REST_HOLD_S``, no other stone
moved more than ``displaced_tolerance_m``, and every finger at least ``CLEAR_M`` from it. Every
other final state gets exactly one failure reason: the first row of the decision table
(``FAILURE_REASONS``, in order; docs/scene.md) that holds.
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

#: A release is a placement when the stone's lowest point is at most this high above the board top
#: (or it touches the board or another stone) at the moment the grasp ends...
RELEASE_MAX_HEIGHT_M = 0.003
#: ...and the stone moves at most this fast then.
RELEASE_MAX_SPEED_M_S = 0.1
#: At rest: centre speed below REST_LIN_M_S and angular speed below REST_ANG_RAD_S (a rim speed of
#: about 2 mm/s) at every control step for at least REST_HOLD_S, and moved at most
#: REST_LIN_M_S x REST_HOLD_S over that time.
REST_LIN_M_S = 0.002
REST_ANG_RAD_S = 0.1
REST_HOLD_S = 0.3
#: Success needs every finger at least this far from the stone (surface to surface) at the end.
CLEAR_M = 0.03
#: Flat: tilted less than ``max_tilt_deg`` and its centre at most this above lying flat on the board.
FLAT_RAISE_M = 0.002
#: Lifted: grasped (both fingers touch it) and raised this far above where it lay in the tray.
LIFT_M = 0.01

#: Failure reasons in decision-table order: the first that holds is the reason (docs/scene.md).
FAILURE_REASONS = ("missed_grasp", "timeout", "not_released", "dropped", "off_board", "not_at_rest", "not_flat",
                   "displaced_stones", "wrong_intersection", "between_intersections", "not_clear")


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
class Release:
    """The stone at the moment a grasp ended (both fingers no longer touching it)."""

    time_s: float
    height_m: float  # lowest point of the stone above the board top
    speed_m_s: float
    touching: bool  # touching the board or a stone (not only the fingers)

    @property
    def placed(self) -> bool:
        return (self.height_m <= RELEASE_MAX_HEIGHT_M or self.touching) and self.speed_m_s <= RELEASE_MAX_SPEED_M_S


@dataclass
class Placement:
    """Result of the success check at one instant."""

    success: bool
    reason: str | None
    error_m: float
    chosen: tuple[int, int]
    released: bool  # no finger touches the stone
    at_rest: bool
    flat: bool
    on_board: bool
    max_displacement_m: float
    tilt_deg: float
    finger_distance_m: float | None  # nearest finger surface to the stone (capped at 2 x CLEAR_M); None: not needed
    release: Release | None  # the last release, if any


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
    """Evaluates the placement against the target on a live MjData.

    Stateful: ``check`` is called once per control step and ``track`` after every physics substep
    while the stone is held (``holding``), so the release is seen at the substep it happens.
    """

    def __init__(self, sc: Scene, cfg: SimConfig, p_scene, target: tuple[int, int], target_world: NDArray,
                 initial_board_stones: NDArray, d: mujoco.MjData):
        self.sc, self.cfg, self.p = sc, cfg, p_scene
        self.target = target
        self.target_world = target_world
        self.initial = initial_board_stones  # (k, 3)
        m = sc.model
        self.finger_geoms = [i for i in sc.ids["finger_geoms"] if m.geom_contype[i] or m.geom_conaffinity[i]]  # type: ignore[union-attr]
        self.active_geom = sc.stone_geoms[0]
        self.body = sc.stone_bodies[0]
        self.start_z = float(d.xpos[self.body][2])
        self.lifted = False
        self.holding = False
        self.release: Release | None = None
        self._held: tuple | None = None  # (time, z, xmat zz, vx, vy, vz, touching) at the last substep held
        self._s_left, self._s_right, self._s_any = (sc.ids[k] for k in ("touch_left", "touch_right", "touch_any"))
        self.vadr = int(m.jnt_dofadr[m.body_jntadr[self.body]])  # its free joint: linear velocity first
        self._rest_since: tuple[float, NDArray] | None = None
        self._vel = np.zeros(6)

    # -- measurements ----------------------------------------------------------------------------
    def _touches(self, d: mujoco.MjData) -> tuple[int, int, int]:
        """Contacts of the stone with the left finger, the right finger, and anything."""
        ids = self.sc.ids
        sd = d.sensordata
        return int(sd[ids["touch_left"]]), int(sd[ids["touch_right"]]), int(sd[ids["touch_any"]])

    def _tilt_cos(self, d: mujoco.MjData) -> float:
        return min(1.0, abs(float(d.xmat[self.body][8])))  # |z axis . world z|; upside down is flat

    def _lowest_above(self, z: float, zz: float) -> float:
        """Lowest point of the stone above the board top, from its centre height and the world-z
        component of its axis (the cylinder's rim when tilted)."""
        g = self.sc.geom
        c = min(1.0, abs(zz))
        rim = g.stone_diameter / 2 * math.sqrt(max(0.0, 1.0 - c * c)) + g.stone_thickness / 2 * c
        return z - rim - BOARD_THICKNESS_M

    def _lowest_above_board(self, d: mujoco.MjData) -> float:
        return self._lowest_above(float(d.xpos[self.body][2]), float(d.xmat[self.body][8]))

    def _speeds(self, d: mujoco.MjData) -> tuple[float, float]:
        """Linear speed of the centre and angular speed."""
        mujoco.mj_objectVelocity(self.sc.model, d, mujoco.mjtObj.mjOBJ_BODY, self.body, self._vel, 0)
        w = self._vel
        return math.sqrt(w[3] * w[3] + w[4] * w[4] + w[5] * w[5]), math.sqrt(w[0] * w[0] + w[1] * w[1] + w[2] * w[2])

    def _finger_distance(self, d: mujoco.MjData) -> float:
        cap = 2 * CLEAR_M
        return min((mujoco.mj_geomDistance(self.sc.model, d, f, self.active_geom, cap, None)
                    for f in self.finger_geoms), default=cap)

    # -- tracking --------------------------------------------------------------------------------
    def track(self, d: mujoco.MjData) -> None:
        """After a physics substep while ``holding``: note the held stone, or record the release
        (the stone as it was at the last substep both fingers touched it) when the grasp ended.
        Runs 25 times per control step while the stone is held, so it only copies a few floats."""
        sd, b, v = d.sensordata, self.body, self.vadr
        left, right = sd[self._s_left], sd[self._s_right]
        if left and right:
            # contacts and xpos are of the step's start; qvel is after the step's (grasping) forces
            qv = d.qvel
            self._held = (d.time, d.xpos[b, 2], d.xmat[b, 8], qv[v], qv[v + 1], qv[v + 2],
                          sd[self._s_any] > left + right)
            return
        self.holding = False
        if self._held is not None:
            t, z, cz, vx, vy, vz, touching = self._held
            self.release = Release(float(t), self._lowest_above(float(z), float(cz)),
                                   math.sqrt(vx * vx + vy * vy + vz * vz), bool(touching))

    def check(self, d: mujoco.MjData) -> Placement:
        """The placement now (call once per control step, after the step)."""
        sc, g, cfg = self.sc, self.sc.geom, self.cfg
        pos = d.xpos[self.body]
        left, right, anything = self._touches(d)
        grasped = bool(left and right)
        if self.holding and not grasped:
            self.track(d)
        if grasped:
            if not self.holding:
                self.holding = True
                self.track(d)
            if pos[2] > self.start_z + LIFT_M:
                self.lifted = True
        lin, ang = self._speeds(d)
        if lin < REST_LIN_M_S and ang < REST_ANG_RAD_S:
            if self._rest_since is None or np.linalg.norm(pos - self._rest_since[1]) > REST_LIN_M_S * REST_HOLD_S:
                self._rest_since = (float(d.time), pos.copy())
        else:
            self._rest_since = None
        at_rest = self._rest_since is not None and d.time - self._rest_since[0] >= REST_HOLD_S - 1e-9
        cos_t = self._tilt_cos(d)
        tilt = math.degrees(math.acos(cos_t))
        raised = float(pos[2]) - (BOARD_THICKNESS_M + g.stone_thickness / 2)
        flat = tilt < cfg.max_tilt_deg and raised <= FLAT_RAISE_M
        chosen, local = nearest_intersection(sc, self.p, pos)
        on_board = bool(np.all(np.abs(local) <= g.half_extent))
        touched = left + right > 0
        err = math.hypot(pos[0] - self.target_world[0], pos[1] - self.target_world[1])
        near = g.local_xy(*chosen)
        spacing_err = math.hypot(local[0] - near[0], local[1] - near[1])  # to the nearest intersection
        others = np.array([d.xpos[b] for b in sc.stone_bodies[1:]]).reshape(-1, 3)
        disp = float(np.max(np.linalg.norm(others - self.initial, axis=1))) if len(others) else 0.0
        tol = cfg.success_tolerance_cells * g.spacing
        supported = anything > left + right
        # The decision table (docs/scene.md): the first row that holds is the reason.
        fdist = None
        if not self.lifted:
            reason = "missed_grasp"
        elif touched and not (supported or (on_board and self._lowest_above_board(d) <= RELEASE_MAX_HEIGHT_M)):
            reason = "timeout"  # still carried
        elif touched:
            reason = "not_released"
        elif self.release is None or not self.release.placed:
            reason = "dropped"
        elif not on_board:
            reason = "off_board"
        elif not at_rest:
            reason = "not_at_rest"
        elif not flat:
            reason = "not_flat"
        elif disp >= cfg.displaced_tolerance_m:
            reason = "displaced_stones"
        elif err >= tol and spacing_err < tol:
            reason = "wrong_intersection"
        elif err >= tol:
            reason = "between_intersections"
        else:
            fdist = self._finger_distance(d)
            reason = "not_clear" if fdist < CLEAR_M else None
        return Placement(reason is None, reason, err, chosen, not touched, at_rest, flat, on_board, disp, tilt,
                         fdist, self.release)


