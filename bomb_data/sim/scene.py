"""The BOMB scene: table, Go board, stones, supply tray, Panda, lights, cameras.

The model is built programmatically with MjSpec from (SimConfig, structural parameters). Parameters
that only change appearance or placement (colours, reflectivity, lights, camera pose, board pose,
distractor positions, stone colours) are written into the compiled model at reset by
``apply_appearance``, so a perturbation that changes them needs no recompile.

Frames: world = robot base frame, x forward (toward the board), y left, z up, table top at z = 0.
Board coordinates: (row, col), row 0 farthest from the robot (top of the agentview picture),
col 0 on the robot's left (left of the agentview picture).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import SimpleNamespace

import mujoco
import numpy as np
from numpy.typing import NDArray

from .. import _gl  # noqa: F401
from ..config import SimConfig
from ..params import SceneParams
from .framing import frame_agentview, line_spacing_px, matrix_to_quat, pixel_coords
from .panda import add_panda
from .textures import board_grid_texture, table_texture

# Collision bits: environment objects collide with everything; robot parts with the environment only.
ENV_CONTYPE, ENV_CONAFFINITY = 1, 3
ROBOT_CONTYPE, ROBOT_CONAFFINITY = 2, 1

BOARD_CENTER_XY = (0.50, 0.0)
BOARD_THICKNESS_M = 0.02
TRAY_CENTER_XY_OFFSET = 0.11  # tray centre this far beyond the board's right edge (-y)
TRAY_HALF_M = 0.05
TRAY_PLATE_M = 0.004
STONE_BLACK = (0.06, 0.06, 0.07, 1.0)
STONE_WHITE = (0.76, 0.76, 0.74, 1.0)  # lit to near white; at 0.93 the stone saturated flat (see below)
BOARD_WOOD = (0.86, 0.68, 0.40, 1.0)
#: Grey the board's material multiplies its wood-and-grid texture by. MuJoCo's renderer clamps the
#: lit colour (ambient + diffuse + specular) to 1 before it multiplies the texture, and the nominal
#: lights sum to about 1.23: with a white material the board top is saturated, so specular,
#: shininess and any brighter light leave it unchanged. At 0.75 the nominal board is ~8% darker
#: than the saturated texture and every board reflectivity and light level shows.
BOARD_MATERIAL_GREY = 0.75

# Contacts of stones with the board and with each other (docs/scene.md, "Contacts": what these are
# estimates of, and the drop and toss behaviour they give). MuJoCo mixes two geoms' friction by the
# maximum and their solref/solimp by the mean, so stones and board carry the same values; the
# finger pads win by priority (their own high friction and stiff, damped contact: a firm grasp).
#: Sliding friction of a stone on the board and on another stone (torsional, rolling after it).
STONE_FRICTION = (0.3, 0.01, 0.001)
#: solref (time constant s, damping ratio) of stone contacts: a damped spring whose restitution is
#: exp(-pi z / sqrt(1 - z^2)) = 0.40 for z = 0.28. The 25 ms time constant is what the 4 ms physics
#: step resolves: at 10 ms a 15 cm drop gained energy and bounced back 28 cm.
STONE_SOLREF = (0.025, 0.3)
STONE_SOLIMP = (0.8, 0.99, 0.002, 0.5, 2)


@dataclass(frozen=True)
class Structure:
    """Parameters that change the compiled model (a new model is built when they change)."""

    board_size: int
    n_board_stones: int
    table_texture: str
    n_distractors: int
    n_lights: int
    supply: SequenceSupply | None = None  # None: the supply tray with the active stone (GoPlace)

    @classmethod
    def of(cls, p: SceneParams, supply: SequenceSupply | None = None) -> Structure:
        return cls(p.board_size, p.n_board_stones, p.table_texture, p.n_distractors, p.n_lights, supply)


@dataclass(frozen=True)
class SequenceSupply:
    """The GoSequence task's supply instead of the tray: a black and a white bowl holding ``n_black``
    and ``n_white`` stones (flat, in a grid of slots), and a captures lid on the other side of the board.
    In this scene there is no active stone: stones 0..n_board_stones-1 start on the board, then the
    black bowl's stones, then the white bowl's."""

    n_black: int
    n_white: int


@dataclass
class BoardGeometry:
    """Dimensions of board and stones for a board size (m)."""

    size: int
    spacing: float
    stone_diameter: float
    stone_thickness: float
    half_extent: float

    @classmethod
    def of(cls, n: int, cfg: SimConfig) -> BoardGeometry:
        s = cfg.grid_spacing_m or min(cfg.max_spacing_m, cfg.max_grid_extent_m / (n - 1))
        d = cfg.stone_diameter_ratio * s
        return cls(n, s, d, cfg.stone_thickness_ratio * d, (n - 1) / 2 * s + 0.7 * s + 0.012)

    def local_xy(self, row: int | NDArray, col: int | NDArray) -> NDArray[np.float64]:
        """Intersection position in the board frame (origin at the centre), (…, 2)."""
        c = (self.size - 1) / 2
        return np.stack([(c - np.asarray(row, float)) * self.spacing, (c - np.asarray(col, float)) * self.spacing], -1)


@dataclass
class Scene:
    """A compiled model plus the names and ids the environment needs."""

    model: mujoco.MjModel
    structure: Structure
    geom: BoardGeometry
    ids: dict[str, int] = field(default_factory=dict)
    stone_bodies: list[int] = field(default_factory=list)  # [active, board stones...]
    stone_geoms: list[int] = field(default_factory=list)  # collision geoms, same order
    stone_vis_geoms: list[int] = field(default_factory=list)
    stone_qpos_adr: list[int] = field(default_factory=list)
    distractor_geoms: list[int] = field(default_factory=list)
    light_ids: list[int] = field(default_factory=list)
    board_geoms: list[int] = field(default_factory=list)  # board body + lines + star points
    robot_geoms: list[int] = field(default_factory=list)  # every geom of the arm, hand and fingers
    tray_center: NDArray[np.float64] = field(default_factory=lambda: np.zeros(3))
    # GoSequence scene only (None in the GoPlace scene): bowl slot positions per colour, the lid
    bowl_slots: dict[str, NDArray[np.float64]] | None = None  # colour -> (n, 3), stone centres at rest
    lid_center: NDArray[np.float64] | None = None  # top of the lid plate
    lid_half: NDArray[np.float64] | None = None  # inner half extents (x, y)
    view_points: NDArray[np.float64] | None = None  # extra points agentview_pose keeps in the picture


def star_points(n: int) -> list[tuple[int, int]]:
    """Hoshi of an n x n board (0-based)."""
    if n < 7:
        return [(n // 2, n // 2)] if n % 2 == 1 else []
    e = 2 if n < 13 else 3
    pts = [(e, e), (e, n - 1 - e), (n - 1 - e, e), (n - 1 - e, n - 1 - e)]
    if n % 2 == 1:
        pts.append((n // 2, n // 2))
        if n >= 15:
            m = n // 2
            pts += [(e, m), (m, e), (m, n - 1 - e), (n - 1 - e, m)]
    return pts


def build_scene(cfg: SimConfig, p: SceneParams, supply: SequenceSupply | None = None) -> Scene:
    """Build and compile the scene for the structural parameters of ``p`` (and the GoSequence supply:
    bowls and lid instead of the tray, when given)."""
    st = Structure.of(p, supply)
    g = BoardGeometry.of(st.board_size, cfg)
    spec = mujoco.MjSpec()
    spec.modelname = "bomb_go"
    spec.compiler.degree = False
    o = spec.option
    o.timestep = cfg.physics_dt
    o.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    o.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    o.impratio = 5
    o.noslip_iterations = 3
    spec.visual.quality.shadowsize = cfg.shadow_size
    spec.visual.quality.offsamples = cfg.msaa_samples
    spec.visual.global_.offwidth = max(640, cfg.image_width)
    spec.visual.global_.offheight = max(480, cfg.image_height)
    spec.visual.headlight.ambient = [0.25, 0.25, 0.25]
    spec.visual.headlight.diffuse = [0.25, 0.25, 0.25]
    spec.visual.headlight.specular = [0.3, 0.3, 0.3]  # makes shininess levels visible from the camera
    spec.visual.map.znear = 0.01
    spec.stat.extent = 1.5
    spec.stat.center = [0.4, 0, 0.2]

    # Materials (appearance values are overwritten per episode by apply_appearance).
    tex = table_texture(st.table_texture, (1.0, 1.0, 1.0))
    t = spec.add_texture(name="table_tex", type=mujoco.mjtTexture.mjTEXTURE_2D, width=tex.shape[1],
                         height=tex.shape[0], nchannel=3)
    t.data = tex.tobytes()
    m = spec.add_material(name="table", rgba=(0.55, 0.42, 0.30, 1), specular=0.1, shininess=0.1)
    m.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = "table_tex"
    m.texrepeat = [3, 3]
    spec.add_material(name="stone_black", rgba=STONE_BLACK, specular=0.3, shininess=0.5)
    spec.add_material(name="stone_white", rgba=STONE_WHITE, specular=0.3, shininess=0.5)
    spec.add_material(name="tray", rgba=(0.35, 0.22, 0.12, 1), specular=0.2, shininess=0.3)
    spec.add_material(name="floor", rgba=(0.30, 0.31, 0.33, 1), specular=0.0, shininess=0.0)

    wb = spec.worldbody
    # Floor: a box, not a plane (planes are drawn as many small quads, which costs render time).
    wb.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_BOX, size=[3, 3, 0.01], pos=[0, 0, -0.76],
                material="floor", contype=0, conaffinity=0)
    wb.add_geom(name="table", type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.75, 0.75, 0.05], pos=[0.45, 0, -0.05],
                material="table", contype=ENV_CONTYPE, conaffinity=ENV_CONAFFINITY, friction=[0.8, 0.01, 0.001])
    # Table legs (visual only).
    for sx in (-1, 1):
        for sy in (-1, 1):
            wb.add_geom(type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.03, 0.03, 0.35], material="tray",
                        pos=[0.45 + sx * 0.68, sy * 0.68, -0.45], contype=0, conaffinity=0)
    # Lights: directions are set per episode.
    light_ids = []
    for i in range(st.n_lights):
        lt = wb.add_light(name=f"light{i}", pos=[0.5, 0, 1.5], dir=[0, 0, -1], castshadow=(i == 0),
                          diffuse=[0.7, 0.7, 0.7], specular=[0.2, 0.2, 0.2])
        lt.type = mujoco.mjtLightType.mjLIGHT_DIRECTIONAL
        light_ids.append(i)

    # Board: a static body (its pose is set per episode), grid lines and star points as visual geoms.
    board = wb.add_body(name="board", pos=[*BOARD_CENTER_XY, 0])
    h = g.half_extent
    board.add_geom(name="board", type=mujoco.mjtGeom.mjGEOM_BOX, size=[h, h, BOARD_THICKNESS_M / 2],
                   pos=[0, 0, BOARD_THICKNESS_M / 2], material="board_grid", contype=ENV_CONTYPE,
                   conaffinity=ENV_CONAFFINITY, friction=STONE_FRICTION, condim=4, solref=STONE_SOLREF,
                   solimp=STONE_SOLIMP)
    # Grid lines and star points are baked into a texture on one quad just above the top face:
    # one draw call instead of 2N + stars (draw calls dominate software rendering time).
    gtex = board_grid_texture(st.board_size, g.spacing, h, star_points(st.board_size), BOARD_WOOD[:3])
    t = spec.add_texture(name="board_grid", type=mujoco.mjtTexture.mjTEXTURE_2D, width=gtex.shape[1],
                         height=gtex.shape[0], nchannel=3)
    t.data = gtex.tobytes()
    k = BOARD_MATERIAL_GREY
    gm = spec.add_material(name="board_grid", rgba=(k, k, k, 1), specular=0.1, shininess=0.1)
    gm.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = "board_grid"

    # Supply tray beside the board (on the robot's right).
    tray_xy = tray_center_of(g)[:2]
    tray = wb.add_body(name="tray", pos=[tray_xy[0], tray_xy[1], 0])
    tray.add_geom(name="tray_plate", type=mujoco.mjtGeom.mjGEOM_BOX, size=[TRAY_HALF_M, TRAY_HALF_M, TRAY_PLATE_M / 2],
                  pos=[0, 0, TRAY_PLATE_M / 2], material="tray", contype=ENV_CONTYPE, conaffinity=ENV_CONAFFINITY,
                  friction=[0.6, 0.01, 0.001], condim=4)
    for k, (dx, dy, sx, sy) in enumerate(((1, 0, 0.003, TRAY_HALF_M), (-1, 0, 0.003, TRAY_HALF_M),
                                          (0, 1, TRAY_HALF_M, 0.003), (0, -1, TRAY_HALF_M, 0.003))):
        tray.add_geom(name=f"tray_wall{k}", type=mujoco.mjtGeom.mjGEOM_BOX, size=[sx, sy, 0.005],
                      pos=[dx * TRAY_HALF_M, dy * TRAY_HALF_M, 0.005], material="tray",
                      contype=ENV_CONTYPE, conaffinity=ENV_CONAFFINITY)
    if supply is not None:  # the GoSequence scene: bowls and a captures lid instead of the tray
        spec.delete(tray)
        bowls = _add_bowls_and_lid(spec, g, supply)
        tray_xy = bowls["black"][0][:2]

    # Stones: index 0 is the active stone, then the stones already on the board.
    r, ht = g.stone_diameter / 2, g.stone_thickness / 2
    mass = 2300 * math.pi * r * r * 2 * ht  # glass-like density
    names = (["stone_active"] + [f"stone{k}" for k in range(1, 1 + st.n_board_stones)] if supply is None
             else [f"stone{k}" for k in range(1, 1 + st.n_board_stones + supply.n_black + supply.n_white)])
    for k, name in enumerate(names):
        b = wb.add_body(name=name, pos=[0, 0, -1 - 0.1 * k])
        b.add_freejoint(name=name)
        b.add_geom(name=f"{name}_col", type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[r, ht, 0], mass=mass,
                   contype=ENV_CONTYPE, conaffinity=ENV_CONAFFINITY, condim=4, friction=STONE_FRICTION,
                   solref=STONE_SOLREF, solimp=STONE_SOLIMP, group=3, rgba=[1, 0, 0, 0.0])
        b.add_geom(name=f"{name}_vis", type=mujoco.mjtGeom.mjGEOM_ELLIPSOID, size=[r, r, ht], material="stone_black",
                   contype=0, conaffinity=0, mass=0, group=1)

    # Distractor objects (static, visual + collision), positions set per episode.
    shapes = (mujoco.mjtGeom.mjGEOM_BOX, mujoco.mjtGeom.mjGEOM_CYLINDER, mujoco.mjtGeom.mjGEOM_SPHERE)
    colors = ((0.8, 0.1, 0.1, 1), (0.1, 0.5, 0.9, 1), (0.1, 0.7, 0.2, 1), (0.9, 0.8, 0.1, 1))
    for k in range(st.n_distractors):
        wb.add_geom(name=f"distractor{k}", type=shapes[k % 3], size=[0.022, 0.022, 0.022],
                    rgba=colors[k % 4], pos=[0.3, 0.6 + 0.06 * k, 0.022], contype=ENV_CONTYPE,
                    conaffinity=ENV_CONAFFINITY)

    add_panda(spec, ROBOT_CONTYPE, ROBOT_CONAFFINITY)
    for side in ("left", "right"):  # the pads' own contact parameters hold the stone, not the stone's
        spec.geom(f"pad_{side}").priority = 1
    # Contact sensors (counts of contacts, computed in every physics step): each finger with the
    # active stone, and the active stone with anything. The success check reads them per substep.
    # The GoSequence scene has no single active stone: every stone gets its sensors, named
    # "<sensor>@<index in Scene.stone_bodies>", and each subtask's checker reads its stone's.
    for suffix, body in _sensed_stones(names, supply):
        for name, other in (("touch_left", "finger_left"), ("touch_right", "finger_right"), ("touch_any", None)):
            sen = spec.add_sensor(name=name + suffix, type=mujoco.mjtSensor.mjSENS_CONTACT,
                                  objtype=mujoco.mjtObj.mjOBJ_BODY, objname=body, intprm=[1, 0, 1])
            if other is not None:
                sen.reftype, sen.refname = mujoco.mjtObj.mjOBJ_BODY, other
    wb.add_camera(name="agentview", pos=[-0.2, 0, 1.0], xyaxes=[0, -1, 0, 0.7, 0, 0.7], fovy=45)

    spec.option.enableflags |= mujoco.mjtEnableBit.mjENBL_SLEEP
    model = spec.compile()

    sc = Scene(model=model, structure=st, geom=g, light_ids=light_ids)
    gid = lambda n: mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, n)  # noqa: E731
    sc.ids = {
        "board_body": mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "board"),
        "board_geom": gid("board"),
        "table_geom": gid("table"),
        "grasp_site": mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "grasp"),
        "hand_body": mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "hand"),
        "agentview_cam": mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, "agentview"),
        "wrist_cam": mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, "wrist"),
        "mat_table": mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_MATERIAL, "table"),
        "mat_board_grid": mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_MATERIAL, "board_grid"),
        "mat_black": mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_MATERIAL, "stone_black"),
        "mat_white": mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_MATERIAL, "stone_white"),
        "pad_left": gid("pad_left"),
        "pad_right": gid("pad_right"),
    }
    for suffix, _ in _sensed_stones(names, supply):
        for name in ("touch_left", "touch_right", "touch_any"):
            sc.ids[name + suffix] = int(model.sensor_adr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SENSOR,
                                                                            name + suffix)])
    sc.board_geoms = [i for i in range(model.ngeom) if model.geom_bodyid[i] == sc.ids["board_body"]]
    robot_root = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "link0")
    sc.robot_geoms = [i for i in range(model.ngeom) if model.body_rootid[model.geom_bodyid[i]] == robot_root]
    finger_bodies = {mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, f"finger_{s}") for s in ("left", "right")}
    sc.ids["finger_geoms"] = [i for i in range(model.ngeom) if model.geom_bodyid[i] in finger_bodies]  # type: ignore[assignment]
    for name in names:
        bid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, name)
        sc.stone_bodies.append(bid)
        sc.stone_geoms.append(gid(f"{name}_col"))
        sc.stone_vis_geoms.append(gid(f"{name}_vis"))
        jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
        sc.stone_qpos_adr.append(int(model.jnt_qposadr[jid]))
    sc.distractor_geoms = [gid(f"distractor{k}") for k in range(st.n_distractors)]
    sc.tray_center = np.array([tray_xy[0], tray_xy[1], TRAY_PLATE_M])
    if supply is not None:
        sc.bowl_slots = {c: bowls[c][1] for c in ("black", "white")}
        sc.lid_center, sc.lid_half = bowls["lid"]
        sc.view_points = bowls["view"]
    return sc


def _sensed_stones(names: list[str], supply: SequenceSupply | None) -> list[tuple[str, str]]:
    """(sensor-name suffix, stone body name) of the stones with contact sensors: the active stone of
    GoPlace (no suffix), or every stone of a GoSequence scene (suffix ``@<index>``)."""
    return [("", "stone_active")] if supply is None else [(f"@{j}", n) for j, n in enumerate(names)]


def tray_center_of(g: BoardGeometry) -> NDArray[np.float64]:
    """Centre of the supply tray's plate top (beside the board, on the robot's right)."""
    return np.array([BOARD_CENTER_XY[0] - 0.05, -(g.half_extent + TRAY_CENTER_XY_OFFSET), TRAY_PLATE_M])


BOWL_WALL_M = 0.012  # height of bowl and lid walls


def _bowl_pitch(g: BoardGeometry) -> float:
    """Distance between stone slots in a bowl: room for the open fingers between neighbours."""
    return g.stone_diameter + 0.032


def _add_bowls_and_lid(spec: mujoco.MjSpec, g: BoardGeometry, supply: SequenceSupply) -> dict:
    """The black bowl (nearer the robot) and the white bowl on the robot's right of the board, the
    captures lid on its left: open boxes with low walls, stones in two columns of slots."""
    wb = spec.worldbody
    spec.add_material(name="bowl_black", rgba=(0.22, 0.13, 0.07, 1), specular=0.2, shininess=0.3)
    spec.add_material(name="bowl_white", rgba=(0.62, 0.48, 0.30, 1), specular=0.2, shininess=0.3)
    spec.add_material(name="lid", rgba=(0.45, 0.30, 0.16, 1), specular=0.2, shininess=0.3)
    h, pitch, r = g.half_extent, _bowl_pitch(g), g.stone_diameter / 2
    margin = r + 0.03  # slot centre to the inner wall: the open fingers clear the walls in any direction
    rows = max(1, math.ceil(max(supply.n_black, supply.n_white, 1) / 2))
    half = np.array([(rows - 1) * pitch / 2 + margin, pitch / 2 + margin])
    cy = -(h + 0.02 + half[1])
    out: dict = {}
    view = []

    def box(name: str, center: NDArray, half_xy: NDArray, material: str) -> None:
        body = wb.add_body(name=name, pos=[center[0], center[1], 0])
        body.add_geom(name=f"{name}_plate", type=mujoco.mjtGeom.mjGEOM_BOX, size=[*half_xy, TRAY_PLATE_M / 2],
                      pos=[0, 0, TRAY_PLATE_M / 2], material=material, contype=ENV_CONTYPE,
                      conaffinity=ENV_CONAFFINITY, friction=[0.6, 0.01, 0.001], condim=4)
        t = 0.003
        for k, (dx, dy, sx, sy) in enumerate(((1, 0, t, half_xy[1] + t), (-1, 0, t, half_xy[1] + t),
                                              (0, 1, half_xy[0], t), (0, -1, half_xy[0], t))):
            body.add_geom(name=f"{name}_wall{k}", type=mujoco.mjtGeom.mjGEOM_BOX, size=[sx, sy, BOWL_WALL_M / 2],
                          pos=[dx * (half_xy[0] + t), dy * (half_xy[1] + t), BOWL_WALL_M / 2], material=material,
                          contype=ENV_CONTYPE, conaffinity=ENV_CONAFFINITY)
        for sx in (-1, 1):
            for sy in (-1, 1):
                view.append([center[0] + sx * half_xy[0], center[1] + sy * half_xy[1], 0.0])

    for color, sign in (("black", -1), ("white", 1)):
        c = np.array([BOARD_CENTER_XY[0] + sign * (half[0] + 0.008), cy])
        box(f"bowl_{color}", c, half, f"bowl_{color}")
        slots = [[c[0] + (i // 2 - (rows - 1) / 2) * pitch, c[1] + (i % 2 - 0.5) * pitch,
                  TRAY_PLATE_M + g.stone_thickness / 2 + 1e-4] for i in range(2 * rows)]
        out[color] = (np.array([c[0], c[1], TRAY_PLATE_M]), np.array(slots))
    lid_half = np.array([0.09, 0.055])
    lc = np.array([BOARD_CENTER_XY[0], h + 0.02 + lid_half[1] + 0.006])
    box("lid", lc, lid_half, "lid")
    out["lid"] = (np.array([lc[0], lc[1], TRAY_PLATE_M]), lid_half)
    out["view"] = np.array(view)
    return out


def _yaw_quat(yaw: float) -> NDArray[np.float64]:
    return np.array([math.cos(yaw / 2), 0, 0, math.sin(yaw / 2)])


def board_pose(p: SceneParams) -> tuple[NDArray[np.float64], float]:
    """Board centre (x, y, 0) in the world and its yaw (rad)."""
    return (np.array([BOARD_CENTER_XY[0] + p.board_offset_m[0], BOARD_CENTER_XY[1] + p.board_offset_m[1], 0.0]),
            math.radians(p.board_yaw_deg))


def intersection_world(sc: Scene, p: SceneParams, row: int | NDArray, col: int | NDArray) -> NDArray[np.float64]:
    """World position of intersection(s) on the board's top surface, (…, 3)."""
    c, yaw = board_pose(p)
    xy = sc.geom.local_xy(row, col)
    cy, sy = math.cos(yaw), math.sin(yaw)
    wx = c[0] + cy * xy[..., 0] - sy * xy[..., 1]
    wy = c[1] + sy * xy[..., 0] + cy * xy[..., 1]
    return np.stack([wx, wy, np.full_like(wx, BOARD_THICKNESS_M)], -1)


def board_corners_world(sc: Scene, p: SceneParams) -> NDArray[np.float64]:
    """The 4 top corners of the board, (4, 3)."""
    c, yaw = board_pose(p)
    h = sc.geom.half_extent
    loc = np.array([[h, h], [h, -h], [-h, -h], [-h, h]])
    cy, sy = math.cos(yaw), math.sin(yaw)
    w = np.stack([c[0] + cy * loc[:, 0] - sy * loc[:, 1], c[1] + sy * loc[:, 0] + cy * loc[:, 1]], -1)
    return np.concatenate([w, np.full((4, 1), BOARD_THICKNESS_M)], 1)


def tray_corners_world(sc: Scene) -> NDArray[np.float64]:
    """The 4 top corners of the supply tray's walls, (4, 3)."""
    h = TRAY_HALF_M
    return sc.tray_center + np.array([[h, h, 0.01 - TRAY_PLATE_M], [h, -h, 0.01 - TRAY_PLATE_M],
                                      [-h, -h, 0.01 - TRAY_PLATE_M], [-h, h, 0.01 - TRAY_PLATE_M]])


def agentview_pose(sc: Scene, p: SceneParams, fovy_deg: float, aspect: float) -> tuple[NDArray, NDArray]:
    """Camera position and quaternion: on a sphere around the board at the perturbed angles, at the
    distance that gives the board the same share of the picture at every size with the tray in view
    (``bomb_data.sim.framing``), scaled by ``camera_distance_scale``."""
    keep = tray_corners_world(sc)
    if sc.view_points is not None:  # the GoSequence bowls and lid
        keep = np.concatenate([keep, sc.view_points])
    pos, R = frame_agentview(board_corners_world(sc, p), keep, p.camera_elevation_deg,
                             p.camera_azimuth_deg, fovy_deg, aspect, p.camera_distance_scale)
    return pos, matrix_to_quat(R)


def agentview_line_spacing_px(cfg: SimConfig, p: SceneParams, width: int | None = None,
                              height: int | None = None) -> tuple[float, float]:
    """(smallest, median) pixels between neighbouring lines of the board in the agentview picture at
    reset (the far rows are the smallest under perspective), without building the scene; the picture
    size defaults to the configuration's."""
    width, height = width or cfg.image_width, height or cfg.image_height
    g = BoardGeometry.of(p.board_size, cfg)
    sc = SimpleNamespace(geom=g, tray_center=tray_center_of(g))  # what the geometry functions read
    pos, R = frame_agentview(board_corners_world(sc, p), tray_corners_world(sc), p.camera_elevation_deg,
                             p.camera_azimuth_deg, p.camera_fovy_deg, width / height, p.camera_distance_scale)
    n = sc.geom.size
    r, c = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return line_spacing_px(pixel_coords(intersection_world(sc, p, r, c), pos, R, p.camera_fovy_deg, width, height))


def apply_appearance(sc: Scene, p: SceneParams, rng: np.random.Generator, board_colors: list[str],
                     aspect: float) -> None:
    """Write per-episode appearance and placement into the compiled model (no recompile)."""
    m = sc.model
    ids = sc.ids
    m.mat_rgba[ids["mat_table"]] = [*p.table_rgb, 1.0]
    mb = ids["mat_board_grid"]
    m.mat_specular[mb], m.mat_shininess[mb], m.mat_reflectance[mb] = (
        p.board_specular, p.board_shininess, p.board_reflectance)
    for mid in (ids["mat_black"], ids["mat_white"]):
        m.mat_specular[mid], m.mat_shininess[mid], m.mat_reflectance[mid] = (
            p.stone_specular, p.stone_shininess, p.stone_reflectance)
    colors = [p.stone_color, *board_colors]
    for g, col in zip(sc.stone_vis_geoms, colors):
        m.geom_matid[g] = ids["mat_black"] if col == "black" else ids["mat_white"]
    c, yaw = board_pose(p)
    m.body_pos[ids["board_body"]] = c
    m.body_quat[ids["board_body"]] = _yaw_quat(yaw)
    # Lights: spread evenly in azimuth from the nominal direction; intensity shared.
    for i, lid in enumerate(sc.light_ids):
        az = math.radians(p.light_azimuth_deg + 360.0 * i / len(sc.light_ids))
        el = math.radians(p.light_elevation_deg)
        d = -np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
        m.light_dir[lid] = d
        m.light_pos[lid] = np.array([0.5, 0, 0]) - d * 1.5
        k = p.light_intensity / len(sc.light_ids) ** 0.5
        m.light_diffuse[lid] = [k, k, k]
        m.light_castshadow[lid] = bool(p.shadows and i == 0)
    cid = ids["agentview_cam"]
    m.cam_fovy[cid] = p.camera_fovy_deg
    pos, quat = agentview_pose(sc, p, p.camera_fovy_deg, aspect)
    m.cam_pos[cid], m.cam_quat[cid] = pos, quat
    # Distractors: on the table beside the board's left and far edges, where the agentview camera
    # sees them (checked by projection), clear of the board, the tray and each other.
    R = np.zeros(9)
    mujoco.mju_quat2Mat(R, quat)
    R = R.reshape(3, 3)
    tan_v = math.tan(math.radians(p.camera_fovy_deg) / 2)
    h = sc.geom.half_extent
    placed: list[NDArray] = []
    for g in sc.distractor_geoms:
        half_h = m.geom_size[g][1] if m.geom_type[g] == mujoco.mjtGeom.mjGEOM_CYLINDER else m.geom_size[g][0]
        xy = np.array([c[0], c[1] + h + 0.06])
        for _ in range(200):
            if rng.random() < 0.6:  # left band
                cand = np.array([c[0] + rng.uniform(-h, h), c[1] + h + rng.uniform(0.035, 0.09)])
            else:  # far band
                cand = np.array([c[0] + h + rng.uniform(0.035, 0.07), c[1] + rng.uniform(-h, h)])
            pc = (np.array([cand[0], cand[1], half_h]) - pos) @ R
            depth = -pc[2]
            inside = depth > 0 and abs(pc[0] / depth) < 0.85 * tan_v * aspect and abs(pc[1] / depth) < 0.85 * tan_v
            clear = all(np.linalg.norm(cand - q) > 0.06 for q in placed)
            if inside and clear:
                xy = cand
                break
        placed.append(xy)
        m.geom_pos[g] = [xy[0], xy[1], half_h]
