"""One GoSequence expert episode → an ``EpisodeRecord`` (with the per-step ``subtask_index``)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..config import BombConfig
from ..errors import ConfigError
from ..params import EpisodeParams
from ..rollout import _VEC_KEYS, _outcome, expert_rngs, record_observation
from ..schema import CAMERAS
from ..store.record import EpisodeRecord


def rollout_sequence_expert(env: Any, cfg: BombConfig, params: EpisodeParams, seed: int,
                            jpeg_quality: int = 95) -> tuple[EpisodeRecord, dict[str, Any]]:
    """Run ``SequenceExpert`` in a ``GoSequenceEnv`` for one episode and record every step, as
    ``bomb_data.rollout.rollout_expert`` does for the single task, plus ``subtask_index`` per step and
    the sequence's metadata (``schema.SEQUENCE_EPISODE_FIELDS``). ``reward`` is 1.0 on the last step
    of a successful sequence; subtask boundaries are in ``subtask_index`` and ``subtask_ends``.

    Raises:
        ConfigError: ``generate.fixed_horizon`` is set (not available for sequences yet).
    """
    from scripted_policies.sequence import SequenceExpert

    if cfg.generate.fixed_horizon is not None:
        raise ConfigError("generate.fixed_horizon: not available with task: sequence (episodes end when the "
                          "sequence does)")
    t0 = time.perf_counter()
    expert = SequenceExpert(cfg.expert, control_hz=cfg.sim.control_hz)
    # a sequence grid's cell carries the sequence; a place grid's cells use the configuration's
    sp = params.sequence or cfg.sequence
    obs, info = env.reset(seed=seed, options={"params": params, "sequence": sp})
    r_expert, r_noise = expert_rngs(seed)
    expert.reset(info, r_expert)
    noise = cfg.expert.action_noise_std
    rows: dict[str, list[Any]] = {k: [] for k in (*_VEC_KEYS, "action", "target_eef_pos", "target_eef_quat",
                                                   "target_joint_pos", "reward", "stone_pos", "subtask_index",
                                                   "target_px_agentview", "target_px_wrist")}
    states, jpeg = [], {c: [] for c in CAMERAS}
    ends: list[int] = []
    first = info
    while True:
        record_observation(env, obs, info, rows, states, jpeg, jpeg_quality)
        rows["subtask_index"].append(info["subtask_index"])
        action = expert.act(obs, info)
        executed = action
        if noise > 0:
            executed = action + np.concatenate([r_noise.normal(0, noise, 3), np.zeros(4)]).astype(np.float32)
        before = info["subtask_index"]
        obs, _, terminated, truncated, info = env.step(executed)
        pv = info["privileged"]
        rows["action"].append(action)
        rows["target_eef_pos"].append(pv["target_eef_pos"])
        rows["target_eef_quat"].append(pv["target_eef_quat"])
        rows["target_joint_pos"].append(pv["target_joint_pos"])
        rows["reward"].append(0.0)
        if info["subtask_index"] != before or terminated or truncated:
            ends.append(len(states))
        if terminated or truncated:
            break
    success, reason = _outcome(info, info, env.placement.reason)
    steps = {k: np.asarray(v, dtype=np.int32 if k == "subtask_index" else np.float32) for k, v in rows.items()}
    steps["reward"][-1] = float(success)
    p = env.params
    game = env.game
    sp = env.sequence_params
    meta = {
        "seed": int(seed),
        "params": p.model_dump(mode="json"),
        "instruction": first["instruction"],
        "convention": info["convention"],
        "target": list(first["target"]),
        "stone_color": env.subtasks[0].color,
        "board_size": p.scene.board_size,
        "success": success,
        "failure_reason": reason,
        "placement_error_m": float(info["placement_error_m"]),
        "chosen_intersection": list(info["chosen_intersection"]),
        **env.reset_view,  # what the agentview picture showed of the board at reset
        "task": "sequence",
        "subtasks": [[s.kind, s.color, s.point[0], s.point[1]] for s in env.subtasks],
        "subtask_instructions": list(env.subtask_texts),
        "subtask_ends": ends,
        "subtasks_completed": int(info["subtasks_completed"]),
        "failed_subtask": info.get("failed_subtask"),
        "plan_mode": bool(sp.plan_mode),
        "sequence": {"source": sp.source, "sgf": game.source if sp.source == "sgf" else None,
                     "move_number": game.move_number, "length": len(game.moves), "capture_bias": sp.capture_bias,
                     "rule_instruction": sp.rule_instruction,
                     # the rule-derived first move as the rules resolved it (its place subtask targets it)
                     "rule": None if game.rule is None else {
                         "kind": game.rule.kind, "color": game.rule.color, "target_color": game.rule.target_color,
                         "stones": [list(q) for q in game.rule.stones], "point": list(game.rule.point)}},
        "initial_position": [[r, c, col] for (r, c), col in sorted(game.initial.items())],
        "final_position": [[r, c, col] for (r, c), col in sorted(game.final.items())],
    }
    rec = EpisodeRecord(steps=steps, mj_state=np.asarray(states, dtype=np.float64), jpeg=jpeg, meta=meta)
    return rec, {"success": success, "steps": len(states), "seconds": time.perf_counter() - t0}
