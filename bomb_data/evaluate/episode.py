"""One closed-loop evaluation episode: reset the environment to the episode's seed and parameters,
settle, then query the policy and step its action chunks until the episode ends; measure.

The environment, perturbations and success check are the ones generation uses
(``bomb_data.env.GoPlaceEnv``, or ``GoSequenceEnv`` with CALVIN's chain protocol:
``bomb_data.evaluate.sequence``); this module only drives the loop and measures.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EpisodeError
from .adapt import AdapterConfig, adapt_observation, to_action_chunk
from .plan import EpisodeSpec
from .policies import NOOP_ACTION
from .protocol import EpisodeStart, PolicyFailure, policy_seed
from .sequence import chain_tracker
from .states import StateRecorder, states_path
from .video import outcome_caption, video_frame, write_episode_video

log = logging.getLogger(__name__)


def run_episode(env: Any, policy: Any, adapter: AdapterConfig, ep: EpisodeSpec, out_dir: Path | None,
                fps: float = 10.0) -> dict[str, Any]:
    """Run one closed-loop episode and return its result row (JSON-serialisable).

    Policy failures (``PolicyFailure``) end the episode with ``status: error`` and the reason;
    the environment's success check decides success for completed episodes.
    """
    from ..params import EpisodeParams

    t_start = time.perf_counter()
    row: dict[str, Any] = {
        "episode_id": ep.episode_id, "cell_id": ep.cell_id, "j": ep.j, "seed": ep.seed, "axis": ep.axis,
        "level": ep.level, "levels": [list(x) for x in ep.levels], "heldout": ep.heldout,
        "status": "ok", "success": False, "failure_reason": None, "error": None, "error_kind": None,
        "grid_levels": dict(ep.grid_levels) or None, "params": ep.params,
    }
    if ep.source_index is not None:
        row["source_index"], row["source_success"] = ep.source_index, ep.source_success
    opts: dict[str, Any] = {"params": EpisodeParams.model_validate(ep.params)}
    if ep.target is not None and getattr(env, "subtasks", None) is None:  # (a sequence's game sets its targets)
        opts["target"] = ep.target
    try:
        obs, info = env.reset(seed=ep.seed, options=opts)
    except EpisodeError as exc:
        row.update(status="error", failure_reason="episode_error", error=str(exc), error_kind="episode_setup")
        return row
    n_board = env.params.scene.board_size
    spacing = float(info["privileged"]["grid_spacing"])
    row.update(target=list(info["target"]), board_size=n_board, instruction=info["instruction"],
               convention=info["convention"])
    row.update(env.reset_view)  # what the agentview picture showed of the board at reset (docs/perturbations.md)
    chain = chain_tracker(env)  # a GoSequence episode: CALVIN's chain protocol (evaluate/sequence.py)
    states = StateRecorder(env) if out_dir is not None else None  # per-frame ground truth (states.py)
    frames: list[np.ndarray] = []
    seen: list[np.ndarray] = []  # the images of the policy's last query, for the video
    seen_names: list[str] = []
    latencies: list[float] = []
    t_env = 0.0
    steps = 0
    done = False
    for _ in range(adapter.settle_steps):  # like LIBERO's num_steps_wait; counted in the env's step limit
        obs, _, term, trunc, info = env.step(NOOP_ACTION)
        if term or trunc:
            done = True
            break
    queue: deque[np.ndarray] = deque()
    t_loop = time.perf_counter()
    try:
        policy.reset(EpisodeStart(ep.episode_id, policy_seed(ep.seed), info["instruction"], ep.source_index))
        while not done:
            if not queue:
                pobs = adapt_observation(obs, adapter,
                                         privileged=info["privileged"] if adapter.send_privileged else None,
                                         seed=ep.seed, step=steps)
                t0 = time.perf_counter()
                raw = policy.act(pobs)
                latencies.append((time.perf_counter() - t0) * 1000)
                queue.extend(to_action_chunk(raw, adapter))
                if ep.record_video:
                    seen_names = [k for k in adapter.image_keys.values() if k in pobs]
                    seen = [np.asarray(pobs[k]) for k in seen_names]
            if ep.record_video:
                frames.append(video_frame(obs, seen, seen_names, f"step {steps}   {info['instruction']}"))
            a = queue.popleft()
            if states is not None:
                states.frame(info, a)
            t0 = time.perf_counter()
            obs, _, term, trunc, info = env.step(a)
            t_env += time.perf_counter() - t0
            steps += 1
            done = term or trunc
            if chain is not None and chain.step(info):
                queue.clear()  # a subtask succeeded: the next instruction, so a new query
    except PolicyFailure as exc:
        row.update(status="error", failure_reason="policy_error", error=str(exc), error_kind=exc.kind)
        log.warning("episode %s: policy error %s", ep.episode_id, exc)
    loop_s = time.perf_counter() - t_loop
    if states is not None:
        states.frame(info)  # the final frame
    pol_s = sum(latencies) / 1000
    if row["status"] == "ok":
        row.update(success=bool(info["success"]),
                   failure_reason=None if info["success"] else info.get("failure_reason"))
    err_m = float(info["placement_error_m"])
    row.update(
        placement_error_mm=round(err_m * 1000, 3),
        placement_error_cells=round(err_m / spacing, 4),
        chosen_intersection=[int(x) for x in info["chosen_intersection"]],
        steps=steps,
        policy_calls=len(latencies),
        latency_ms=[round(x, 3) for x in latencies],
        latency_ms_mean=round(float(np.mean(latencies)), 3) if latencies else None,
        latency_ms_p95=round(float(np.percentile(latencies, 95)), 3) if latencies else None,
        control_hz=round(steps / loop_s, 3) if steps and loop_s > 0 else None,
        env_ms_per_step=round(t_env * 1000 / steps, 3) if steps else None,
        overhead_ms_per_step=round((loop_s - pol_s) * 1000 / steps, 3) if steps else None,
        seconds=round(time.perf_counter() - t_start, 3),
        video=None,
    )
    if chain is not None:
        row.update(chain.row_fields(info, spacing))
    if states is not None and out_dir is not None:
        row["states"] = states.write(out_dir, states_path(ep.cell_id, ep.j))
        row["states_ms_per_step"] = states.ms_per_step()
    if ep.record_video and frames and out_dir is not None:
        footer, color = outcome_caption(row)
        row["video"] = write_episode_video(out_dir, ep, frames, video_frame(obs, seen, seen_names, footer, color), fps)
    log.info("episode %s seed %d: %s in %d steps", ep.episode_id, ep.seed,
             "success" if row["success"] else (row["failure_reason"] or row["error"]), steps)
    return row


