"""One expert episode in the environment → an ``EpisodeRecord`` for the store."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .config import BombConfig
from .env import GoPlaceEnv
from .params import EpisodeParams
from .schema import CAMERAS
from .seeds import episode_seed, expert_rngs  # noqa: F401  (episode_seed: importable from here as before)
from .store.images import encode_jpeg
from .store.record import EpisodeRecord

_NAN2 = np.full(2, np.nan, np.float32)
_VEC_KEYS = ("eef_pos", "eef_quat", "gripper_qpos", "joint_pos", "joint_vel")


def rollout_expert(env: GoPlaceEnv, cfg: BombConfig, params: EpisodeParams, seed: int,
                   jpeg_quality: int = 95) -> tuple[EpisodeRecord, dict[str, Any]]:
    """Run the scripted expert for one episode and record every step.

    With ``cfg.generate.fixed_horizon`` = H every episode is recorded for exactly H steps: once the
    task has ended (the environment terminated or truncated it) the environment keeps stepping with
    the hold-still action ``[0, 0, 0, 0, 0, 0, last gripper command]`` until step H, so every frame
    is a simulated frame; an episode whose task has not ended by step H, or whose placement no longer
    holds at step H, fails with the decision table's reason for its state at step H (docs/scene.md:
    e.g. ``timeout`` while the stone is still carried). The task's own steps
    are the same as without a horizon; the reward of a success moves to the last step; the
    metadata records ``fixed_horizon`` and ``task_steps``.

    Returns the record (metadata without the run-level fields episode_index/attempt/split/cell_id)
    and a small summary (success, steps, seconds).
    """
    from scripted_policies import PickPlaceExpert

    t0 = time.perf_counter()
    expert = PickPlaceExpert(cfg.expert, control_hz=cfg.sim.control_hz)
    obs, info = env.reset(seed=seed, options={"params": params})
    r_expert, r_noise = expert_rngs(seed)
    expert.reset(info, r_expert)
    noise = cfg.expert.action_noise_std
    rows: dict[str, list[Any]] = {k: [] for k in (*_VEC_KEYS, "action", "target_eef_pos", "target_eef_quat",
                                                   "target_joint_pos", "reward", "stone_pos",
                                                   "target_px_agentview", "target_px_wrist")}
    states, jpeg = [], {c: [] for c in CAMERAS}
    horizon = cfg.generate.fixed_horizon
    hold: NDArray[np.float32] | None = None  # the hold-still action, once the task has ended
    end_info: dict[str, Any] | None = None  # info of the step that ended the task
    task_steps = 0
    while True:
        record_observation(env, obs, info, rows, states, jpeg, jpeg_quality)
        if hold is None:
            action = expert.act(obs, info)
            executed = action
            if noise > 0:  # DART-style: execute a perturbed action, keep the clean label
                executed = action + np.concatenate([r_noise.normal(0, noise, 3), np.zeros(4)]).astype(np.float32)
        else:
            action = executed = hold
        obs, reward, terminated, truncated, info = env.step(executed)
        pv = info["privileged"]
        rows["action"].append(action)
        rows["target_eef_pos"].append(pv["target_eef_pos"])
        rows["target_eef_quat"].append(pv["target_eef_quat"])
        rows["target_joint_pos"].append(pv["target_joint_pos"])
        rows["reward"].append(reward)
        if end_info is None:
            task_steps = len(states)
            if terminated or truncated:
                end_info = info
                hold = np.array([0, 0, 0, 0, 0, 0, action[6]], dtype=np.float32)
        if len(states) == horizon or (horizon is None and end_info is not None):
            break
    success, reason = _outcome(end_info, info, env.placement.reason)
    steps = {k: np.asarray(v, dtype=np.float32) for k, v in rows.items()}
    if horizon is not None:  # 1.0 on the last recorded step of a success, as without a horizon
        steps["reward"][:] = 0.0
        steps["reward"][-1] = float(success)
    p = env.params
    meta = {
        "seed": int(seed),
        "params": p.model_dump(mode="json"),
        "instruction": info["instruction"],
        "convention": info["convention"],
        "target": list(info["target"]),
        "stone_color": p.scene.stone_color,
        "board_size": p.scene.board_size,
        "success": success,
        "failure_reason": reason,
        "placement_error_m": float(info["placement_error_m"]),
        "chosen_intersection": list(info["chosen_intersection"]),
        **env.reset_view,  # what the agentview picture showed of the board at reset
    }
    if horizon is not None:
        meta["fixed_horizon"] = int(horizon)
        meta["task_steps"] = task_steps
    rec = EpisodeRecord(steps=steps, mj_state=np.asarray(states, dtype=np.float64), jpeg=jpeg, meta=meta)
    return rec, {"success": meta["success"], "steps": len(states), "seconds": time.perf_counter() - t0}


def record_observation(env: GoPlaceEnv, obs: dict[str, Any], info: dict[str, Any], rows: dict[str, list[Any]],
                       states: list[Any], jpeg: dict[str, list[bytes]], jpeg_quality: int) -> None:
    """Append what a store keeps of the current step's observation (GoPlace and GoSequence rollouts):
    the MuJoCo state, each camera's JPEG, the proprioception, the stone position and the target's
    pixel in each camera (NaN when out of view)."""
    states.append(env.mj_state())
    for c in CAMERAS:
        # a frame that already is a JPEG (jpeg_quality perturbation) is stored as that file
        jpeg[c].append(env.frame_jpeg(c, obs[c]) or encode_jpeg(obs[c], jpeg_quality))
    for k in _VEC_KEYS:
        rows[k].append(obs[k])
    rows["stone_pos"].append(info["privileged"]["stone_pos"])
    for c in CAMERAS:
        px = info["target_px"][c]
        rows[f"target_px_{c}"].append(_NAN2 if px is None else px)


def _outcome(end_info: dict[str, Any] | None, last_info: dict[str, Any],
             reason_now: str | None) -> tuple[bool, str | None]:
    """(success, failure reason) of an episode from the info of the step that ended the task (None: it
    had not ended by the fixed horizon), the info of the last recorded step and the decision table's
    reason for the state at that step (``GoPlaceEnv.placement.reason``). An episode that did not end
    as a success, or whose success no longer holds at the last step, fails with one reason of the
    table, as any final state does."""
    if end_info is None:
        return False, reason_now or "timeout"
    if not end_info["success"]:
        return False, end_info.get("failure_reason")
    if last_info is not end_info and not last_info["success"]:
        return False, reason_now
    return True, None
