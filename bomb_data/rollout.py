"""One expert episode in the environment → an ``EpisodeRecord`` for the store."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .config import BombConfig
from .env import CAMERAS, GoPlaceEnv
from .params import EpisodeParams
from .store.images import encode_jpeg
from .store.record import EpisodeRecord

_NAN2 = np.full(2, np.nan, np.float32)
_VEC_KEYS = ("eef_pos", "eef_quat", "gripper_qpos", "joint_pos", "joint_vel")


def episode_seed(root_seed: int, episode_index: int, attempt: int) -> int:
    """The seed of attempt ``attempt`` of episode ``episode_index``: depends on nothing else."""
    return int(np.random.SeedSequence([root_seed, episode_index, attempt]).generate_state(1, np.uint64)[0] >> 1)


def expert_rngs(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """The expert's generators for an episode seed: (plan variation, executed-action noise).

    Generation and the evaluator's ``expert`` policy both use this, so the evaluator replays the
    expert exactly as it generated the data.
    """
    return tuple(np.random.default_rng(s) for s in np.random.SeedSequence([seed, 1]).spawn(2))  # type: ignore[return-value]


def rollout_expert(env: GoPlaceEnv, cfg: BombConfig, params: EpisodeParams, seed: int,
                   jpeg_quality: int = 95) -> tuple[EpisodeRecord, dict[str, Any]]:
    """Run the scripted expert for one episode and record every step.

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
    terminated = truncated = False
    while not (terminated or truncated):
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
        action = expert.act(obs, info)
        executed = action
        if noise > 0:  # DART-style: execute a perturbed action, keep the clean label
            executed = action + np.concatenate([r_noise.normal(0, noise, 3), np.zeros(4)]).astype(np.float32)
        obs, reward, terminated, truncated, info = env.step(executed)
        pv = info["privileged"]
        rows["action"].append(action)
        rows["target_eef_pos"].append(pv["target_eef_pos"])
        rows["target_eef_quat"].append(pv["target_eef_quat"])
        rows["target_joint_pos"].append(pv["target_joint_pos"])
        rows["reward"].append(reward)
    steps = {k: np.asarray(v, dtype=np.float32) for k, v in rows.items()}
    p = env.params
    meta = {
        "seed": int(seed),
        "params": p.model_dump(mode="json"),
        "instruction": info["instruction"],
        "convention": info["convention"],
        "target": list(info["target"]),
        "stone_color": p.scene.stone_color,
        "board_size": p.scene.board_size,
        "success": bool(info["success"]),
        "failure_reason": info.get("failure_reason"),
        "placement_error_m": float(info["placement_error_m"]),
        "chosen_intersection": list(info["chosen_intersection"]),
        **env.reset_view,  # what the agentview picture showed of the board at reset
    }
    rec = EpisodeRecord(steps=steps, mj_state=np.asarray(states, dtype=np.float64), jpeg=jpeg, meta=meta)
    return rec, {"success": meta["success"], "steps": len(states), "seconds": time.perf_counter() - t0}
