"""Gymnasium environment ``bomb_data/GoPlace-v0``: place the named stone on the named intersection.

Observations (dict): ``agentview`` and ``wrist`` uint8 (H, W, 3) upright RGB; ``state`` float32 (8)
= eef position (3) + eef axis-angle (3, robosuite/LIBERO convention, bomb_data/rotations.py) + finger positions (2);
``eef_pos`` (3), ``eef_quat`` (4,
w-x-y-z), ``gripper_qpos`` (2), ``joint_pos`` (7), ``joint_vel`` (7); ``instruction`` (text).
Actions: the canonical 7-D delta end-effector action (docs/conventions.md).

``info`` carries the privileged state the scripted expert uses (``info["privileged"]``), the ground
truth for grounding studies (``target``, ``target_px`` per camera, and segmentation masks when the
env was made with ``masks=True``), and at the end ``success`` and ``failure_reason``. The info of
``reset`` also says what the agentview picture shows of the board (``env.reset_view``, recorded with
every episode): ``board_visible_fraction``, ``target_visible`` and ``hidden_intersections`` (None
when the env renders no images) and ``line_spacing_px`` / ``line_spacing_px_min`` (pixels between
neighbouring board lines, median and smallest).
Nothing that marks the target is ever drawn into an observation image.
"""

from __future__ import annotations

import logging
import math
import os
import string
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from numpy.typing import NDArray
from pydantic import ValidationError

from ._gl import renderer  # (importing _gl sets MUJOCO_GL before mujoco)
from .config import BombConfig, SimConfig, format_validation_error
from .errors import ConfigError
from .params import EpisodeParams, check_room
from .perturb.image import perturb_frame
from .perturb.language import write_instruction_spans
from .rotations import state8
from .schema import CAMERAS, ENV_ID, MAX_DPOS_M, MAX_DROT_RAD  # (CAMERAS, ENV_ID are importable from here too)
from .seeds import EpisodeGenerators, episode_generators  # noqa: F401  (importable from here as before)
from .sim.controller import DeltaEEFController
from .sim.panda import HOME_QPOS
from .sim.scene import (
    BOARD_THICKNESS_M,
    Scene,
    Structure,
    agentview_line_spacing_px,
    apply_appearance,
    board_corners_world,
    build_scene,
    intersection_world,
)
from .sim.visibility import CLEAR_RADIUS_SPACINGS, board_visibility
from .task import SuccessChecker, draw_board

log = logging.getLogger(__name__)
SETTLE_S = 0.3
_GL_LOGGED = False


def register_envs() -> None:
    """Register ``bomb_data/GoPlace-v0`` with Gymnasium (done when this module is imported)."""
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point="bomb_data.env:GoPlaceEnv", max_episode_steps=None)


def _log_gl_renderer_once() -> None:
    global _GL_LOGGED
    if not _GL_LOGGED:
        _GL_LOGGED = True
        log.info("GL renderer: %s (MUJOCO_GL=%s)", renderer() or "unknown", os.environ.get("MUJOCO_GL"))


class GoPlaceEnv(gym.Env):
    """Pick the active Go stone from the tray and place it on the intersection the instruction names.

    Args:
        config: a ``BombConfig`` or ``SimConfig`` (defaults if None).
        params: default episode parameters (nominal if None); ``reset(options={"params": ...})``
            overrides them for one episode.
        render_images: render the two cameras (False gives a fast state-only environment).
        masks: add segmentation masks (board, target, active stone) per camera to ``info``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, config: BombConfig | SimConfig | None = None, params: EpisodeParams | None = None,
                 render_images: bool = True, masks: bool = False, render_mode: str | None = None):
        cfg = config.sim if isinstance(config, BombConfig) else (config or SimConfig())
        self.cfg = cfg
        self.default_params = params or EpisodeParams()
        self.render_images = render_images
        self.want_masks = masks
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": cfg.control_hz}
        H, W = cfg.image_height, cfg.image_width
        img = gym.spaces.Box(0, 255, (H, W, 3), np.uint8)
        f32 = lambda n: gym.spaces.Box(-np.inf, np.inf, (n,), np.float32)  # noqa: E731
        spaces: dict[str, gym.Space] = {
            "state": f32(8), "eef_pos": f32(3), "eef_quat": f32(4), "gripper_qpos": f32(2),
            "joint_pos": f32(7), "joint_vel": f32(7),
            "instruction": gym.spaces.Text(max_length=512, charset=string.printable),
        }
        if render_images:
            spaces["agentview"] = img
            spaces["wrist"] = img
        self.observation_space = gym.spaces.Dict(spaces)
        hi = np.array([MAX_DPOS_M] * 3 + [MAX_DROT_RAD] * 3 + [1.0], dtype=np.float32)
        self.action_space = gym.spaces.Box(-hi, hi, dtype=np.float32)
        self._scenes: dict[Structure, Scene] = {}
        self.scene: Scene | None = None
        self.model: mujoco.MjModel | None = None
        self.data: mujoco.MjData | None = None
        self._renderer: mujoco.Renderer | None = None
        # camera -> (latest perturbed frame, its JPEG file or None): see frame_jpeg
        self._frame_jpeg: dict[str, tuple[Any, bytes | None]] = {}
        self._seg_renderer: mujoco.Renderer | None = None
        self.params = self.default_params
        self._steps = 0
        self._last_obs: dict[str, Any] | None = None
        self.reset_view: dict[str, Any] = {}

    # ------------------------------------------------------------------------------ scene and reset
    def _use_scene(self, p: EpisodeParams, supply: Any = None) -> None:
        # supply: a sim.scene.SequenceSupply for the GoSequence scene (bowls and lid), None for the tray
        st = Structure.of(p.scene, supply)
        sc = self._scenes.get(st)
        if sc is None:
            sc = build_scene(self.cfg, p.scene, supply)
            if len(self._scenes) >= 8:  # bounded cache of compiled models
                self._scenes.pop(next(iter(self._scenes)))
            self._scenes[st] = sc
        if sc is not self.scene:
            self.scene, self.model = sc, sc.model
            self.data = mujoco.MjData(sc.model)
            for r in (self._renderer, self._seg_renderer):
                if r is not None:
                    r.close()
            self._renderer = self._seg_renderer = None
            if self.render_images:
                _log_gl_renderer_once()
                self._renderer = mujoco.Renderer(sc.model, self.cfg.image_height, self.cfg.image_width)
            open_w = min(0.04, sc.geom.stone_diameter / 2 + 0.006)
            self.ctrl = DeltaEEFController(sc.model, self.data, sc.ids["grasp_site"], open_w, 1.0 / self.cfg.control_hz)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start an episode. ``options``: ``params`` (EpisodeParams), ``target`` ((row, col), 0-based).

        The scene (board stones, their colours and yaws, appearance, robot start, image noise and
        the instruction's template choices) is drawn from the seed alone; the target is then drawn
        uniformly among the empty intersections (``board_cells`` holds the occupied ones), or given.

        Raises:
            ConfigError: invalid params, more board stones than ``sim.min_empty_points`` allows,
                or a given target off the board or on a board stone.
        """
        super().reset(seed=seed)
        options = options or {}
        p = self.params = self._episode_params(options)
        ps = p.scene
        n = ps.board_size
        check_room(n, ps.n_board_stones, self.cfg.min_empty_points)
        rng = episode_generators(self.np_random)
        self._img_rng = rng.image
        self._use_scene(p)
        sc, m, d = self.scene, self.model, self.data
        assert sc is not None and m is not None and d is not None
        # The scene first (from generators the target never touches), then the target among the
        # empty points: the same seed with any two targets gives the same scene (docs/conventions.md).
        cells, self.target = draw_board(rng.layout, rng.target, n, ps.n_board_stones, ps.layout,
                                        options.get("target"))
        tr, tc = self.target
        self.board_cells = cells
        colors = [("black", "white")[int(b)] for b in rng.colors.integers(0, 2, size=len(cells))]
        apply_appearance(sc, ps, rng.scene, colors, self.cfg.image_width / self.cfg.image_height)
        mujoco.mj_resetData(m, d)
        sd = ps.robot_init_noise_rad  # Gaussian noise truncated at 2 std, so the arm stays out of the board's view
        q0 = HOME_QPOS + np.clip(rng.robot.normal(0, sd, size=7), -2 * sd, 2 * sd) if sd > 0 else HOME_QPOS
        self.ctrl.reset(q0, gripper=-1.0)
        g = sc.geom
        zc = BOARD_THICKNESS_M + g.stone_thickness / 2 + 1e-4
        for k, (r, c) in enumerate(cells, start=1):
            w = intersection_world(sc, ps, r, c)
            adr = sc.stone_qpos_adr[k]
            d.qpos[adr : adr + 3] = [w[0], w[1], zc]
            yaw = rng.layout.uniform(-math.pi, math.pi)
            d.qpos[adr + 3 : adr + 7] = [math.cos(yaw / 2), 0, 0, math.sin(yaw / 2)]
        adr = sc.stone_qpos_adr[0]
        off = np.clip(np.asarray(ps.active_stone_offset_m), -0.02, 0.02)
        d.qpos[adr : adr + 3] = [sc.tray_center[0] + off[0], sc.tray_center[1] + off[1],
                                 sc.tray_center[2] + g.stone_thickness / 2 + 1e-4]
        d.qpos[adr + 3 : adr + 7] = [1, 0, 0, 0]
        mujoco.mj_forward(m, d)
        for _ in range(int(SETTLE_S / m.opt.timestep)):
            mujoco.mj_step(m, d)
        mujoco.mj_forward(m, d)  # as after every step: derived quantities of the state itself
        self.target_world = intersection_world(sc, ps, tr, tc)
        initial = np.array([d.xpos[b] for b in sc.stone_bodies[1:]]).reshape(-1, 3)
        self.checker = SuccessChecker(sc, self.cfg, ps, self.target, self.target_world, initial, d)
        # spans: where the colour, coordinate, row, column, ... are in the text (bomb_data.explain)
        self.instruction, self.convention, self.instruction_spans = write_instruction_spans(
            tr, tc, n, ps.stone_color, p.language, rng.language)
        self._steps = 0
        self._placement = self.checker.check(d)
        obs = self._observe()
        self.reset_view = self._reset_view()
        return obs, {**self._info(final=False), **self.reset_view}

    def _episode_params(self, options: dict[str, Any]) -> EpisodeParams:
        """``options["params"]`` (an EpisodeParams or its dict) validated, or the env's defaults."""
        p = options.get("params") or self.default_params
        if isinstance(p, EpisodeParams):
            return p
        try:
            return EpisodeParams.model_validate(p)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, "params")) from None

    # ------------------------------------------------------------------------------------- stepping
    def step(self, action: NDArray):
        """Apply one control step of the canonical action and observe.

        Args:
            action: (7,) ``[dx, dy, dz, drx, dry, drz, gripper]``: end-effector translation (m) and
                axis-angle rotation (rad) for this step in the base frame, gripper -1 open / +1
                closed (docs/conventions.md); finite, clipped to ``action_space``.

        Returns:
            ``(obs, reward, terminated, truncated, info)``: reward 1.0 on the step that ends in a
            success; ``terminated`` on success (placed, at rest for ``task.REST_HOLD_S``, fingers
            ``task.CLEAR_M`` clear); ``truncated`` at ``sim.max_steps`` otherwise. ``info`` as the
            module docstring says, with ``failure_reason`` (one of ``task.FAILURE_REASONS``, from
            the decision table in docs/scene.md) on the last step.

        Raises:
            RuntimeError: before ``reset``. ValueError: not 7 finite floats.
        """
        pl = self._advance(action)
        terminated = bool(pl.success)
        truncated = bool(not terminated and self._steps >= self.cfg.max_steps)
        obs = self._observe()
        info = self._info(final=terminated or truncated)
        return obs, float(terminated), terminated, truncated, info

    def _advance(self, action: NDArray):
        """Check and apply ``action`` (physics substeps, the release tracked at the substep it happens),
        count the step and return the success check's result (also kept as ``placement``)."""
        if self.data is None:
            raise RuntimeError("call reset() before step()")
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (7,) or not np.all(np.isfinite(a)):
            raise ValueError(f"action: expected 7 finite floats, found shape {a.shape} {a[:7]}")
        m, d, chk = self.model, self.data, self.checker

        def substep() -> None:
            mujoco.mj_step(m, d)
            if getattr(chk, "holding", False):  # the release is judged at the substep it happens
                chk.track(d)

        self.ctrl.apply(a, substep)
        # positions of the state after the step (mj_step leaves those of its start): observations,
        # the success check and the frames then agree exactly with the recorded mj_state
        mujoco.mj_forward(m, d)
        self._steps += 1
        self._placement = chk.check(d)
        return self._placement

    @property
    def placement(self):
        """The success check's result after the last reset or step (``bomb_data.task.Placement``)."""
        return self._placement

    # ---------------------------------------------------------------------------------- observation
    def _render(self, camera: str) -> NDArray[np.uint8]:
        r = self._renderer
        assert r is not None
        r.update_scene(self.data, camera=camera)
        img = r.render()
        out, jpeg = perturb_frame(img, self.params.image, self._img_rng)
        self._frame_jpeg[camera] = (out, jpeg)
        return out

    def frame_jpeg(self, camera: str, frame: NDArray[np.uint8]) -> bytes | None:
        """The JPEG file that decodes exactly to ``frame``, when ``frame`` is the latest rendered
        observation of ``camera`` and the image perturbation ended in a JPEG round trip; else None."""
        last, jpeg = self._frame_jpeg.get(camera, (None, None))
        return jpeg if last is frame else None

    def _observe(self) -> dict[str, Any]:
        c = self.ctrl
        pos, quat = c.eef_pose()
        fingers = c.finger_pos()
        obs: dict[str, Any] = {
            "state": state8(pos, quat, fingers),
            "eef_pos": pos.astype(np.float32),
            "eef_quat": quat.astype(np.float32),
            "gripper_qpos": fingers.astype(np.float32),
            "joint_pos": c.joint_pos().astype(np.float32),
            "joint_vel": c.joint_vel().astype(np.float32),
            "instruction": self.instruction,
        }
        if self.render_images:
            for cam in CAMERAS:
                obs[cam] = self._render(cam)
        self._last_obs = obs
        return obs

    def project(self, camera: str, points: NDArray, inside_only: bool = True) -> NDArray[np.float32]:
        """Pixel coordinates (u = column, v = row; origin top-left) of world points (…, 3) in ``camera``;
        NaN for points behind the camera or (``inside_only``) outside the picture."""
        m, d = self.model, self.data
        cid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_CAMERA, camera)
        H, W = self.cfg.image_height, self.cfg.image_width
        R = d.cam_xmat[cid].reshape(3, 3)
        pc = (np.asarray(points, float) - d.cam_xpos[cid]) @ R
        f = (H / 2) / math.tan(math.radians(m.cam_fovy[cid]) / 2)
        depth = -pc[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = W / 2 + f * pc[..., 0] / depth
            v = H / 2 - f * pc[..., 1] / depth
        uv = np.stack([u, v], -1).astype(np.float32)
        bad = (depth <= 0) | (inside_only & ((u < 0) | (u >= W) | (v < 0) | (v >= H)))
        uv[bad] = np.nan
        return uv

    def _segmentation(self, camera: str) -> tuple[NDArray, NDArray[np.bool_]]:
        """(object id per pixel, True where that object is a geom) in ``camera`` now."""
        if self._seg_renderer is None:
            self._seg_renderer = mujoco.Renderer(self.model, self.cfg.image_height, self.cfg.image_width)
            self._seg_renderer.enable_segmentation_rendering()
        r = self._seg_renderer
        r.update_scene(self.data, camera=camera)
        seg = r.render()
        return seg[..., 0], seg[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM)

    def board_view(self, camera: str = "agentview") -> tuple[float, NDArray[np.bool_]]:
        """How much of the board the robot hides in ``camera`` now: (visible fraction of the board's
        top face, (n, n) bool: intersection visible), as ``bomb_data.sim.visibility`` defines them."""
        sc, ps = self.scene, self.params.scene
        ids, is_geom = self._segmentation(camera)
        robot = is_geom & np.isin(ids, sc.robot_geoms)
        n = sc.geom.size
        r, c = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        pts = intersection_world(sc, ps, r, c)
        grid = self.project(camera, pts, inside_only=False)
        rad = CLEAR_RADIUS_SPACINGS * sc.geom.spacing
        radius = np.maximum(*(np.linalg.norm(self.project(camera, pts + d, inside_only=False) - grid, axis=-1)
                              for d in ([rad, 0, 0], [0, rad, 0])))
        corners = self.project(camera, board_corners_world(sc, ps), inside_only=False)
        return board_visibility(robot, corners, grid, radius)

    def _line_spacing(self) -> tuple[float, float]:
        """(smallest, median) px between neighbouring board lines in the agentview picture at reset."""
        return agentview_line_spacing_px(self.cfg, self.params.scene)

    def _reset_view(self) -> dict[str, Any]:
        """What the agentview picture shows of the board at reset (recorded with every episode)."""
        lo, med = self._line_spacing()
        view: dict[str, Any] = {"board_visible_fraction": None, "target_visible": None, "hidden_intersections": None,
                                "line_spacing_px": round(med, 2), "line_spacing_px_min": round(lo, 2)}
        if self.render_images:
            frac, vis = self.board_view("agentview")
            view.update(board_visible_fraction=round(frac, 4) if math.isfinite(frac) else None,
                        target_visible=bool(vis[self.target]),
                        hidden_intersections=int((~vis).sum()))
        return view

    def masks(self, camera: str) -> dict[str, NDArray[np.bool_]]:
        """Segmentation masks in ``camera``: ``board`` (board and its lines), ``stone`` (active stone),
        ``target`` (a stone-sized disc on the target intersection, drawn by projection)."""
        from PIL import Image, ImageDraw

        sc = self.scene
        ids, is_geom = self._segmentation(camera)
        board = is_geom & np.isin(ids, sc.board_geoms)
        stone = is_geom & (ids == sc.stone_vis_geoms[0])
        ang = np.linspace(0, 2 * math.pi, 32, endpoint=False)
        rad = sc.geom.stone_diameter / 2
        ring = self.target_world + np.stack([rad * np.cos(ang), rad * np.sin(ang), np.zeros_like(ang)], -1)
        uv = self.project(camera, ring)
        img = Image.new("L", (self.cfg.image_width, self.cfg.image_height), 0)
        if not np.isnan(uv).any():
            ImageDraw.Draw(img).polygon([tuple(x) for x in uv.tolist()], fill=1)
        return {"board": board, "stone": stone, "target": np.asarray(img, dtype=bool)}

    def _target_px(self, camera: str) -> NDArray[np.float32] | None:
        uv = self.project(camera, self.target_world)
        return None if np.isnan(uv).any() else uv

    def mj_state(self) -> NDArray[np.float64]:
        """The MuJoCo state (mjSTATE_INTEGRATION) now, to restore with ``set_mj_state``."""
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        s = np.empty(mujoco.mj_stateSize(self.model, spec))
        mujoco.mj_getState(self.model, self.data, s, spec)
        return s

    def set_mj_state(self, state: NDArray[np.float64]) -> None:
        """Restore a state saved by ``mj_state`` (same scene structure) and recompute derived quantities."""
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        mujoco.mj_setState(self.model, self.data, np.asarray(state, float), spec)
        mujoco.mj_forward(self.model, self.data)
        self.ctrl.q_target = self.data.ctrl[self.ctrl.act_arm].copy()

    def _privileged(self, stone_body: int, target_world: NDArray, board_stones: list[NDArray]) -> dict[str, Any]:
        """The privileged state the scripted experts act from (``info["privileged"]``), for the stone
        body being moved, its target point and the positions of the stones that must stay put."""
        sc, d = self.scene, self.data
        pos, quat = self.ctrl.eef_pose()
        return {
            "stone_pos": d.xpos[stone_body].copy(),
            "stone_quat": d.xquat[stone_body].copy(),
            "target_pos": np.array(target_world, float),
            "board_stones": board_stones,
            "eef_pos": pos,
            "eef_quat": quat,
            "gripper_qpos": self.ctrl.finger_pos(),
            "stone_diameter": sc.geom.stone_diameter,
            "stone_thickness": sc.geom.stone_thickness,
            "grid_spacing": sc.geom.spacing,
            "board_top_z": BOARD_THICKNESS_M,
            "board_yaw": math.radians(self.params.scene.board_yaw_deg),
            "tray_center": sc.tray_center.copy(),
            "target_eef_pos": self.ctrl.target_pos.copy(),
            "target_eef_quat": self.ctrl.target_quat.copy(),
            "target_joint_pos": self.ctrl.q_target.copy(),
        }

    def _info(self, final: bool) -> dict[str, Any]:
        sc = self.scene
        d = self.data
        pl = self._placement
        b = sc.stone_bodies[0]
        info: dict[str, Any] = {
            "target": self.target,
            "instruction": self.instruction,
            "convention": self.convention,
            # (u, v) pixel of the target intersection per camera, None when out of the picture
            "target_px": {cam: self._target_px(cam) for cam in CAMERAS},
            "success": pl.success,
            "placement_error_m": pl.error_m,
            "chosen_intersection": pl.chosen,
            "privileged": self._privileged(b, self.target_world, [d.xpos[x].copy() for x in sc.stone_bodies[1:]]),
        }
        if final:
            info["failure_reason"] = pl.reason
        if self.want_masks and self.render_images:
            info["masks"] = {cam: self.masks(cam) for cam in CAMERAS}
        return info

    def render(self) -> NDArray[np.uint8] | None:
        if self._last_obs is None or not self.render_images:
            return None
        return self._last_obs["agentview"]

    def close(self) -> None:
        for r in (self._renderer, self._seg_renderer):
            if r is not None:
                r.close()
        self._renderer = self._seg_renderer = None


register_envs()  # importing this module registers bomb_data/GoPlace-v0 (gymnasium >= 1.0 reads no entry points)
