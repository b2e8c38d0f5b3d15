"""Gymnasium environment ``bomb_data/GoSequence-v0``: play K moves of a Go game, removing captures.

A game position (the stones on the board at reset) and a sequence of K moves, from seeded legal play
or an SGF record (``bomb_data.sequence.rules``). Each move is a ``place`` subtask (a stone of the
named colour from its bowl onto the named intersection), followed by one ``remove`` subtask per stone
it captures (that stone off the board into the captures lid). The scene is the single task's with two
bowls and a lid instead of the tray (``sim.scene.SequenceSupply``).

A subtask succeeds by the single task's check (``bomb_data.task.SuccessChecker`` on the subtask's
stone: released, at rest, flat, within the tolerance of its intersection, no other board stone moved
more than ``sim.displaced_tolerance_m`` since the subtask began), or for a remove by the same
conditions with "inside the lid" for "on the intersection". On success the next subtask begins (its
instruction replaces the observation's), until the last one ends the episode (``terminated``); a
subtask that has not succeeded within ``sim.max_steps`` steps ends it (``truncated``) with that
subtask's failure reason. Observations and actions are those of ``bomb_data/GoPlace-v0``; the
instruction is the current subtask's, or the whole plan in plan mode.

``info`` adds ``subtask_index``, ``subtask_instruction``, ``subtask_kind``, ``n_subtasks``,
``subtasks_completed``, ``plan`` (all subtasks) and, at the end, ``failed_subtask``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from pydantic import ValidationError

from ..config import BombConfig, SimConfig, format_validation_error
from ..env import SETTLE_S, GoPlaceEnv, episode_generators
from ..errors import ConfigError
from ..params import EpisodeParams
from ..schema import CAMERAS
from ..sim.panda import HOME_QPOS
from ..sim.scene import BOARD_THICKNESS_M, SequenceSupply, apply_appearance, intersection_world
from ..task import Placement, SuccessChecker
from .language import plan_instruction, subtask_instruction
from .params import SequenceParams
from .rules import GoSequence, Subtask, generate_sequence, sequence_from_sgf, sgf_files

ENV_ID = "bomb_data/GoSequence-v0"
LID_SLOTS = ((-0.055, -0.026), (0.0, -0.026), (0.055, -0.026), (-0.055, 0.026), (0.0, 0.026), (0.055, 0.026))


def register_envs() -> None:
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point="bomb_data.sequence.env:GoSequenceEnv", max_episode_steps=None)


def draw_sequence(sp: SequenceParams, board_size: int, rng: np.random.Generator) -> GoSequence:
    """The episode's sequence: generated from ``rng``, or from the SGF file ``rng`` picks.

    Raises:
        ConfigError: one line (bad SGF, other board size, illegal move, game too short, no legal move).
    """
    if sp.source == "sgf":
        if not sp.sgf:
            raise ConfigError("sequence.sgf: expected an .sgf file or a directory for source: sgf, given none")
        files = sgf_files(sp.sgf)
        return sequence_from_sgf(files[int(rng.integers(len(files)))], board_size, sp.move_number, sp.length,
                                 sp.rule_instruction)
    return generate_sequence(rng, board_size, sp.move_number, sp.length, sp.capture_bias, sp.rule_instruction)


class _LidCheck:
    """The remove subtask's check: the stone released, at rest, flat and inside the lid, no other board
    stone moved. Failure reasons as the placement's, with ``not_in_lid`` for ``wrong_intersection``."""

    def __init__(self, env: GoSequenceEnv, body: int, geom: int, others: list[int]):
        self.env, self.body, self.geom, self.others = env, body, geom, others
        d = env.data
        self.initial = np.array([d.xpos[b] for b in others]).reshape(-1, 3)
        self.lifted = False

    def check(self, d: mujoco.MjData) -> Placement:
        env, sc = self.env, self.env.scene
        g = sc.geom
        pos = d.xpos[self.body]
        if pos[2] > BOARD_THICKNESS_M + g.stone_thickness * 1.5 + 0.01:
            self.lifted = True
        vel = np.zeros(6)
        mujoco.mj_objectVelocity(sc.model, d, mujoco.mjtObj.mjOBJ_BODY, self.body, vel, 0)
        at_rest = bool(np.linalg.norm(vel[3:]) < 0.01 and np.linalg.norm(vel[:3]) < 0.5)
        zaxis = d.xmat[self.body].reshape(3, 3)[:, 2]
        flat = math.degrees(math.acos(min(1.0, abs(float(zaxis[2]))))) < env.cfg.max_tilt_deg
        fingers = set(sc.ids["finger_geoms"])  # type: ignore[arg-type]
        released = not any(self.geom in (c.geom1, c.geom2) and (c.geom1 in fingers or c.geom2 in fingers)
                           for c in d.contact[: d.ncon])
        rel = np.abs(pos[:2] - sc.lid_center[:2])
        in_lid = bool(np.all(rel <= sc.lid_half) and pos[2] < sc.lid_center[2] + 2.5 * g.stone_thickness)
        others = np.array([d.xpos[b] for b in self.others]).reshape(-1, 3)
        disp = float(np.max(np.linalg.norm(others - self.initial, axis=1))) if len(others) else 0.0
        err = float(np.linalg.norm(pos[:2] - env.target_world[:2]))
        ok = released and at_rest and flat and in_lid and disp < env.cfg.displaced_tolerance_m
        reason = None
        if not ok:
            reason = ("missed_grasp" if not self.lifted else "not_released" if not released
                      else "not_in_lid" if not in_lid else "not_flat" if not flat
                      else "displaced_stones" if disp >= env.cfg.displaced_tolerance_m else "not_at_rest")
        tilt = math.degrees(math.acos(min(1.0, abs(float(zaxis[2])))))
        return Placement(ok, reason, err, (-1, -1), released, at_rest, flat, False, disp, tilt, None, None)


class GoSequenceEnv(GoPlaceEnv):
    """Play a sequence of Go moves with the Panda: place stones from the bowls, remove captures into the lid.

    Args:
        config, params, render_images, render_mode: as ``GoPlaceEnv`` (``params.scene.n_board_stones``
            and ``stone_color`` are decided by the sequence, not used; ``sequence.board_size``, when
            set, replaces ``params.scene.board_size``).
        sequence: default ``SequenceParams``; ``reset(options={"sequence": ...})`` overrides them for one
            episode, as does ``options["params"].sequence`` (a sequence grid cell's) when no ``sequence``
            option is given; ``options={"game": GoSequence}`` gives the sequence itself. The episode's
            ``params.sequence`` is the ``SequenceParams`` it used.
    """

    def __init__(self, config: BombConfig | SimConfig | None = None, params: EpisodeParams | None = None,
                 render_images: bool = True, masks: bool = False, render_mode: str | None = None,
                 sequence: SequenceParams | dict | None = None):
        if masks:
            raise ConfigError("masks: not available for bomb_data/GoSequence-v0 (GoPlace-v0 only)")
        super().__init__(config, params, render_images, False, render_mode)
        self.default_sequence = _sequence_params(sequence)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start an episode: draw the sequence, build its scene, set stones on the board and in the bowls."""
        gym.Env.reset(self, seed=seed)
        options = options or {}
        p = self._episode_params(options)
        sp = _sequence_params(options.get("sequence") or p.sequence or self.default_sequence)
        rng = episode_generators(self.np_random)
        p = p.model_copy(update={"sequence": sp})  # what the episode plays, recorded with its parameters
        if sp.board_size is not None:
            p = p.model_copy(update={"scene": p.scene.model_copy(update={"board_size": sp.board_size})})
        n = p.scene.board_size
        game: GoSequence = options.get("game") or draw_sequence(sp, n, rng.target)
        if game.board_size != n:
            raise ConfigError(f"game: a {game.board_size}x{game.board_size} sequence on a {n}x{n} board")
        stones = sorted(game.initial.items())
        p = p.model_copy(update={"scene": p.scene.model_copy(update={"n_board_stones": len(stones)})})
        self.params, self.sequence_params, self.game = p, sp, game
        supply = SequenceSupply(game.placements("black"), game.placements("white"))
        self._img_rng = rng.image
        self._use_scene(p, supply)
        sc, m, d = self.scene, self.model, self.data
        assert sc is not None and m is not None and d is not None and sc.bowl_slots is not None
        ps = p.scene
        colors = [c for _, c in stones] + ["black"] * supply.n_black + ["white"] * supply.n_white
        apply_appearance(sc, ps, rng.scene, colors, self.cfg.image_width / self.cfg.image_height)
        for gid, col in zip(sc.stone_vis_geoms, colors):  # no active stone in this scene: every colour here
            m.geom_matid[gid] = sc.ids["mat_black"] if col == "black" else sc.ids["mat_white"]
        mujoco.mj_resetData(m, d)
        q0 = (HOME_QPOS + rng.robot.normal(0, ps.robot_init_noise_rad, size=7) if ps.robot_init_noise_rad > 0
              else HOME_QPOS)
        self.ctrl.reset(q0, gripper=-1.0)
        g = sc.geom
        zc = BOARD_THICKNESS_M + g.stone_thickness / 2 + 1e-4
        where = [np.array([*intersection_world(sc, ps, r, c)[:2], zc]) for (r, c), _ in stones]
        where += list(sc.bowl_slots["black"][: supply.n_black]) + list(sc.bowl_slots["white"][: supply.n_white])
        for k, w in enumerate(where):
            adr = sc.stone_qpos_adr[k]
            yaw = rng.layout.uniform(-math.pi, math.pi)
            d.qpos[adr: adr + 3] = w
            d.qpos[adr + 3: adr + 7] = [math.cos(yaw / 2), 0, 0, math.sin(yaw / 2)]
        mujoco.mj_forward(m, d)
        for _ in range(int(SETTLE_S / m.opt.timestep)):
            mujoco.mj_step(m, d)
        mujoco.mj_forward(m, d)  # as after every step: derived quantities of the state itself
        # which stone each subtask moves: bowl stones in slot order, captured stones by their point
        on_board = {pt: k for k, (pt, _) in enumerate(stones)}
        next_bowl = {"black": len(stones), "white": len(stones) + supply.n_black}
        self.subtasks: list[Subtask] = game.subtasks()
        self.stone_of: list[int] = []
        self.board_before: list[list[int]] = []  # stones on the board when each subtask begins
        lid_i = 0
        self.drop_points: list[np.ndarray | None] = []
        for st in self.subtasks:
            self.board_before.append(sorted(on_board.values()))
            if st.kind == "place":
                k = next_bowl[st.color]
                next_bowl[st.color] += 1
                on_board[st.point] = k
                self.drop_points.append(None)
            else:
                k = on_board.pop(st.point)
                dx, dy = LID_SLOTS[lid_i % len(LID_SLOTS)]
                lid_i += 1
                self.drop_points.append(np.array([sc.lid_center[0] + dx, sc.lid_center[1] + dy, BOARD_THICKNESS_M]))
            self.stone_of.append(k)
        lp = p.language
        self.subtask_texts = [subtask_instruction(st, n, lp, rng.language) for st in self.subtasks]
        self.plan_text = plan_instruction(self.subtasks, n, lp, rng.language) if sp.plan_mode else None
        self.convention = lp.convention
        self.completed = 0
        self.results: list[Placement | None] = [None] * len(self.subtasks)
        self.subtask_steps = [0] * len(self.subtasks)
        self._steps = 0
        self._failed: int | None = None
        self._begin(0)
        obs = self._observe()
        self.reset_view = self._reset_view()  # what the picture shows of the board, as for GoPlace
        return obs, {**self._info(final=False), **self.reset_view}

    def _line_spacing(self) -> tuple[float, float]:
        """Measured with this scene's own camera, which frames the bowls and the lid too (GoPlace's is
        computed from its framing without the scene); the rest of the view at reset is GoPlace's, with
        the first subtask's point as the target."""
        from ..sim.framing import line_spacing_px

        sc, ps = self.scene, self.params.scene
        n = sc.geom.size
        r, c = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        return line_spacing_px(self.project("agentview", intersection_world(sc, ps, r, c), inside_only=False))

    def _begin(self, i: int) -> None:
        """Start subtask ``i``: its checker (positions of the other board stones now) and instruction."""
        sc, d, ps = self.scene, self.data, self.params.scene
        st = self.subtasks[i]
        self.index = i
        k = self.stone_of[i]
        others = [b for b in self.board_before[i] if b != k]
        if st.kind == "place":
            self.target = st.point
            self.target_world = intersection_world(sc, ps, *st.point)
            # the checker sees this subtask's stone as the active one, with its contact sensors
            ids = {**sc.ids, **{t: sc.ids[f"{t}@{k}"] for t in ("touch_left", "touch_right", "touch_any")}}
            view = dataclasses.replace(sc, stone_bodies=[sc.stone_bodies[k]] + [sc.stone_bodies[b] for b in others],
                                       stone_geoms=[sc.stone_geoms[k]] + [sc.stone_geoms[b] for b in others], ids=ids)
            initial = np.array([d.xpos[sc.stone_bodies[b]] for b in others]).reshape(-1, 3)
            self.checker = SuccessChecker(view, self.cfg, ps, st.point, self.target_world, initial, d)
        else:
            self.target = st.point
            self.target_world = self.drop_points[i]
            self.checker = _LidCheck(self, sc.stone_bodies[k], sc.stone_geoms[k], [sc.stone_bodies[b] for b in others])
        self.instruction = self.plan_text or self.subtask_texts[i]
        self._placement = self.checker.check(d)

    def step(self, action):
        """One control step, as ``GoPlaceEnv.step``; a subtask's success starts the next one (reward 1.0),
        the last one's ends the episode (terminated), a subtask past ``sim.max_steps`` truncates it."""
        self._advance(action)
        i = self.index
        self.subtask_steps[i] += 1
        pl = self._placement
        reward = 0.0
        terminated = truncated = False
        if pl.success:
            self.results[i] = pl
            self.completed += 1
            reward = 1.0
            if i + 1 == len(self.subtasks):
                terminated = True
            else:
                self._begin(i + 1)
        elif self.subtask_steps[i] >= self.cfg.max_steps:
            self.results[i] = pl
            self._failed = i
            truncated = True
        obs = self._observe()
        info = self._info(final=terminated or truncated)
        return obs, reward, terminated, truncated, info

    def _info(self, final: bool) -> dict[str, Any]:
        sc, d = self.scene, self.data
        pl = self._placement
        k = self.stone_of[self.index]
        b = sc.stone_bodies[k]
        st = self.subtasks[self.index]
        board = [d.xpos[sc.stone_bodies[j]].copy() for j in self.board_before[self.index] if j != k]
        info: dict[str, Any] = {
            "target": self.target,
            "instruction": self.instruction,
            "convention": self.convention,
            "target_px": {cam: self._target_px(cam) for cam in CAMERAS},
            "subtask_index": self.index,
            "subtask_instruction": self.subtask_texts[self.index],
            "subtask_kind": st.kind,
            "n_subtasks": len(self.subtasks),
            "subtasks_completed": self.completed,
            "plan": [(s.kind, s.color, s.point) for s in self.subtasks],
            "success": self.completed == len(self.subtasks),
            "subtask_success": pl.success,
            "placement_error_m": pl.error_m,
            "chosen_intersection": pl.chosen,
            "privileged": {**self._privileged(b, self.target_world, board),
                           "subtask_kind": st.kind, "subtask_index": self.index},
        }
        if final:
            info["failure_reason"] = None if info["success"] else pl.reason
            info["failed_subtask"] = self._failed
        return info

    def masks(self, camera: str):  # pragma: no cover - refused in __init__
        raise ConfigError("masks: not available for bomb_data/GoSequence-v0")


def _sequence_params(sp: SequenceParams | dict | None) -> SequenceParams:
    if sp is None:
        return SequenceParams()
    if isinstance(sp, SequenceParams):
        return sp
    try:
        return SequenceParams.model_validate(sp)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "sequence")) from None


register_envs()
