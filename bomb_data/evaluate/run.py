"""``bomb-data eval``: closed-loop episodes of a policy across a perturbation grid, run in this
process or on Dask workers, their result rows written as they finish.

The parts: ``plan`` (which episodes, with their cells and seeds), ``episode`` (the closed loop of
one), ``video`` (its MP4), ``results`` (the evaluation directory, resuming, the summary). This
module checks the policy and the scheduler before anything is written, then runs the plan.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import _gl  # noqa: F401  (MUJOCO_GL before mujoco)
from .._cpus import default_workers
from ..config import BombConfig
from ..errors import ConfigError, PolicyError
from ..provenance import versions
from ..runtime import check_dashboard, check_scheduler, dask_client, task_result, worker_cached, worker_env
from .adapt import AdapterConfig
from .episode import run_episode
from .gate import FirstCallFailure, discard_run, first_call_failure
from .lock import EvalLock
from .plan import EpisodeSpec, plan_evaluation
from .policies import make_policy, parse_policy_spec, plan_adapter, served_adapter
from .results import RESULTS, RUN_FILE, ResultsWriter, finalize, prior_results, write_run_file
from .states import STATES_DIR
from .video import safe_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSettings:
    """Everything a worker needs to run episodes (picklable)."""

    cfg: BombConfig
    policy: str
    adapter: AdapterConfig
    out_dir: str
    unnorm_key: str | None = None
    timeout_s: float = 60.0
    retries: int = 3
    backoff_s: float = 0.5
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalProgress:
    """What the progress callback receives after each finished episode."""

    done: int
    total: int
    successes: int
    errors: int


# ------------------------------------------------------------------------------------ worker side
def _worker_policy(run: RunSettings) -> Any:
    """One policy per worker process, reused across episodes, remade when the run's policy changes."""
    key = (run.policy, run.adapter.model_dump_json(), run.unnorm_key)
    return worker_cached("policy", key, lambda: make_policy(
        parse_policy_spec(run.policy), run.cfg, unnorm_key=run.unnorm_key, timeout_s=run.timeout_s,
        retries=run.retries, backoff_s=run.backoff_s))


def run_episode_task(ep: EpisodeSpec, run: RunSettings) -> dict[str, Any]:
    """Dask task: one episode on this worker's cached environment and policy."""
    env = worker_env(run.cfg)
    try:
        policy = _worker_policy(run)
    except PolicyError as exc:  # e.g. the server went away before this worker connected
        kind = getattr(exc, "kind", "unreachable")
        return {"episode_id": ep.episode_id, "cell_id": ep.cell_id, "j": ep.j, "seed": ep.seed, "axis": ep.axis,
                "level": ep.level, "levels": [list(x) for x in ep.levels], "heldout": ep.heldout,
                "status": "error", "success": False, "failure_reason": "policy_error", "error": str(exc),
                "error_kind": kind, "steps": 0, "grid_levels": dict(ep.grid_levels) or None, "params": ep.params}
    return run_episode(env, policy, run.adapter, ep, Path(run.out_dir), fps=run.cfg.sim.control_hz)


# ---------------------------------------------------------------------------------------- client
def evaluate(cfg: BombConfig, policy: str, out: Path, *, grid: str = "nominal", episodes_per_cell: int = 10,
             seed: int = 0, workers: int | None = None, concurrency: int = 2, scheduler: str | None = None,
             adapter: dict[str, Any] | None = None, unnorm_key: str | None = None, videos_per_cell: int = 1,
             timeout_s: float = 60.0, retries: int = 3, backoff_s: float = 0.5, overwrite: bool = False,
             progress: Callable[[EvalProgress], None] | None = None, dashboard: str | None = None) -> dict[str, Any]:
    """Evaluate ``policy`` in closed loop and write ``results.jsonl``, ``summary.json``, ``report.html``.

    Args:
        cfg: configuration (sim settings; the expert's settings for ``expert``).
        policy: policy spec (see ``bomb_data.evaluate.policies``).
        out: output directory.
        grid: perturbation grid name or YAML path (ignored for ``replay:``).
        episodes_per_cell: K episodes per cell.
        seed: root seed.
        workers: local worker processes for in-process policies (default: one per usable core); 1 runs in
            this process.
        concurrency: for remote policies, the number of concurrent clients (worker processes).
        scheduler: address of an existing Dask scheduler.
        adapter: overrides of the adapter preset (``AdapterConfig`` fields).
        unnorm_key: OpenVLA's action un-normalisation key.
        videos_per_cell: MP4s of the first N episodes of each cell.
        timeout_s, retries, backoff_s: remote policy calls.
        overwrite: discard earlier results in ``out`` instead of resuming.
        progress: called after every finished episode.
        dashboard: HOST:PORT where a local cluster serves Dask's dashboard (default: none; nothing
            listens beyond 127.0.0.1).

    Returns:
        The summary (also written to ``summary.json``).

    Raises:
        PolicyError: unknown spec or unreachable server (before anything runs).
        ConfigError: unknown grid, invalid adapter option, ``out`` holding another run's results.
    """
    from pydantic import ValidationError

    from ..config import format_validation_error

    t0 = time.perf_counter()
    spec = parse_policy_spec(policy)
    try:
        # refuses privileged state for undeclared policies, and what a checkpoint was not trained on
        acfg, privileged = plan_adapter(spec, cfg.sim.image_height, **(adapter or {}))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "adapter")) from None
    plan = plan_evaluation(cfg, policy, spec, grid, episodes_per_cell, seed, videos_per_cell)
    cfg, episodes, grid_desc = plan.cfg, plan.episodes, plan.grid
    if adapter and adapter.get("settle_steps"):
        cfg = cfg.model_copy(update={"sim": cfg.sim.model_copy(
            update={"max_steps": cfg.sim.max_steps + acfg.settle_steps})})
    # Check the policy and the Dask scheduler before starting anything (and before --overwrite empties
    # --out): unreachable servers and bad modules fail here.
    check_dashboard(dashboard, scheduler)
    check_scheduler(scheduler)
    probe = None
    if spec.kind != "python" or (workers or 1) == 1:
        probe = make_policy(spec, cfg, unnorm_key=unnorm_key, timeout_s=timeout_s, retries=0, backoff_s=backoff_s)
        policy_desc = probe.describe()
        try:  # a server that says what it expects (bomb-data serve): its keys and sizes, checked
            acfg = served_adapter(spec, probe, acfg, adapter or {}, cfg.sim.image_height)
        except BaseException:
            probe.close()
            raise
    else:
        import importlib

        mod, fac = spec.target.split(":")
        try:
            if not callable(getattr(importlib.import_module(mod), fac, None)):
                raise PolicyError(f"policy {policy}: {mod} has no callable {fac!r}")
        except ImportError as exc:
            raise PolicyError(f"policy {policy}: cannot import {mod!r} ({exc})") from None
        policy_desc = {"kind": "python", "target": spec.target}
    run_key = {"policy": policy, "adapter": acfg.model_dump(mode="json"), "unnorm_key": unnorm_key,
               "grid": grid_desc, "seed": seed, "config_hash": cfg.content_hash()}
    out = Path(out)
    run_path, res_path = out / RUN_FILE, out / RESULTS
    sim_meta = {"image_size": [cfg.sim.image_height, cfg.sim.image_width], "max_steps": cfg.sim.max_steps,
                "control_hz": cfg.sim.control_hz}
    created = not out.exists()
    lock = take_eval_lock(out, probe)  # one evaluation per --out at a time (lock.py)
    try:
        prev_rows, prev_meta = prior_results(out, run_key, sim_meta, overwrite)
    except BaseException:
        lock.release()
        if probe is not None:
            probe.close()
        raise
    # Rows of episodes outside this plan (a smaller --episodes-per-cell than before) stay in
    # results.jsonl, unreported: results are only ever appended, never deleted without --overwrite.
    wanted = {e.episode_id for e in episodes}
    done_ids = {r["episode_id"] for r in prev_rows}
    keep = [r for r in prev_rows if r["episode_id"] in wanted]
    todo = [e for e in episodes if e.episode_id not in done_ids]
    meta = {"key": run_key, "policy_description": policy_desc, "versions": versions(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "episodes_per_cell": episodes_per_cell, "episodes_planned": len(episodes),
            "privileged": privileged, **plan.grid_meta, **sim_meta,
            # the whole configuration (its hash is in "key"): masks and ground restore the scene from it
            "config": cfg.model_dump(mode="json")}
    try:
        write_run_file(run_path, meta, prev_meta)
        writer = ResultsWriter(res_path)
    except BaseException:
        lock.release()
        raise
    run = RunSettings(cfg, policy, acfg, str(out), unnorm_key, timeout_s, retries, backoff_s)
    log.info("eval %s on %s: %d episodes to run, %d already done", policy, grid_desc["name"], len(todo), len(keep))
    counts = {"done": len(keep), "succ": sum(1 for r in keep if r.get("success")),
              "err": sum(1 for r in keep if r.get("status") == "error")}

    def finished(row: dict[str, Any]) -> None:
        if counts["done"] == len(keep) and (why := first_call_failure(row)):  # the first row of this run
            raise FirstCallFailure(f"policy {policy}: {why}")
        writer.write(row)
        counts["done"] += 1
        counts["succ"] += int(bool(row.get("success")))
        counts["err"] += int(row.get("status") == "error")
        if progress is not None:
            progress(EvalProgress(counts["done"], len(episodes), counts["succ"], counts["err"]))

    n_proc = workers or default_workers()
    if spec.remote:
        n_proc = max(1, min(n_proc, concurrency))
    interrupted = False
    try:
        if n_proc == 1 and scheduler is None:
            _run_local(run, todo, probe, finished)
        else:
            if probe is not None:
                probe.close()
                probe = None
            _run_dask(run, todo, n_proc, scheduler, finished,
                      max_running=concurrency if spec.remote else None, dashboard=dashboard)
    except KeyboardInterrupt:
        interrupted = True
        raise
    except FirstCallFailure:
        lock.release()
        discard_run(out, [res_path, run_path, out / STATES_DIR], keep=bool(keep), created=created)  # nothing counted
        raise
    finally:
        writer.close()
        if probe is not None:
            probe.close()
        try:
            if out.is_dir() and run_path.exists():
                summary = finalize(out, complete=not interrupted and counts["done"] >= len(episodes),
                                   seconds=time.perf_counter() - t0, episode_ids=wanted)
        finally:
            lock.release()
    return summary


def take_eval_lock(out: Path, probe: Any) -> EvalLock | _NoLock:
    """The lock of ``out`` (created if missing); when another evaluation holds it, close ``probe`` and
    raise its one-line ``ConfigError`` before anything is written."""
    try:
        if not out.exists():
            out.mkdir(parents=True)
        return EvalLock(out) if out.is_dir() else _NoLock()
    except BaseException:
        if probe is not None:
            probe.close()
        raise


class _NoLock:
    """--out is not a directory: prior_results refuses it; nothing to lock."""

    def release(self) -> None:
        pass


def _run_local(run: RunSettings, todo: list[EpisodeSpec], policy: Any,
               finished: Callable[[dict[str, Any]], None]) -> None:
    from .sequence import make_env

    if policy is None:
        policy = make_policy(parse_policy_spec(run.policy), run.cfg, unnorm_key=run.unnorm_key,
                             timeout_s=run.timeout_s, retries=run.retries, backoff_s=run.backoff_s)
    _set_retries(policy, run.retries)
    env = make_env(run.cfg)
    try:
        for ep in todo:
            finished(run_episode(env, policy, run.adapter, ep, Path(run.out_dir), fps=run.cfg.sim.control_hz))
    finally:
        env.close()


def _set_retries(policy: Any, retries: int) -> None:
    c = getattr(policy, "client", None)
    if c is not None and hasattr(c, "retries"):
        c.retries = retries  # the probe connected with retries=0 to fail fast


def _run_dask(run: RunSettings, todo: list[EpisodeSpec], n_proc: int, scheduler: str | None,
              finished: Callable[[dict[str, Any]], None], max_running: int | None = None,
              dashboard: str | None = None) -> None:
    """Run ``todo`` on Dask, with a bounded number of episodes in flight so an interrupt loses little:
    two per worker thread; on a local cluster of ``n_proc`` workers that is ``2 * n_proc``, on
    ``scheduler`` it is read from the cluster after every episode (so it follows a cluster that
    scales), capped at ``max_running`` there (each task in flight can run at once on a cluster)."""
    from dask.distributed import as_completed

    if not todo:
        return
    with dask_client(n_proc, scheduler, dashboard) as client:

        def limit() -> int:
            if scheduler is None:
                return 2 * n_proc
            slots = 2 * max(1, sum(client.nthreads().values()))
            return min(slots, max_running) if max_running else slots

        run_f = client.scatter(run, broadcast=True)
        it = enumerate(todo)
        ac = as_completed()
        in_flight = 0

        def fill() -> None:
            nonlocal in_flight
            cap = limit()
            while in_flight < cap:
                nxt = next(it, None)
                if nxt is None:
                    return
                i, ep = nxt
                key = f"eval-{i}-{safe_name(ep.episode_id)}"
                ac.add(client.submit(run_episode_task, ep, run_f, key=key, pure=False))
                in_flight += 1

        fill()
        for fut in ac:
            in_flight -= 1
            finished(task_result(fut, "evaluation"))
            fill()
