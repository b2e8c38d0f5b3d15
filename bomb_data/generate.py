"""``bomb-data generate``: expert rollouts on Dask workers, committed in episode order to one store.

Episode k's content depends only on (root seed, k, configuration, grid): its parameters come from
``grid.episode_params(seed, k)``, attempt a of it uses ``episode_seed(seed, k, a)``, and attempts
are tried in order until one succeeds (at most ``max_attempts``). Workers write each finished
attempt as a shard file under ``STORE/shards/`` (big arrays never pass through the scheduler);
the client commits shards in increasing k, so the store's order is the same for any worker count.
A killed run leaves committed episodes intact; rerunning the same command continues, reusing
valid shards and redoing truncated ones.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ._cpus import default_workers
from ._fault import fault_point
from .config import BombConfig
from .errors import ConfigError, StoreError
from .provenance import store_config_hash, versions
from .runtime import check_dashboard, check_scheduler, dask_client, task_result, worker_env
from .store.format import atomic_write_text
from .store.record import read_shard, write_shard
from .store.writer import StoreWriter

log = logging.getLogger(__name__)
EXHAUSTED_FILE = "meta/exhausted.json"


def split_of(root_seed: int, k: int, heldout: bool, val_fraction: float) -> str:
    """Deterministic split of episode k: ``heldout`` for held-out cells, else train/val by a hash."""
    if heldout:
        return "heldout"
    u = np.random.SeedSequence([root_seed, k, 0x5B1]).generate_state(1)[0] / 2**32
    return "val" if u < val_fraction else "train"


#: A run in which this many attempts failed and none succeeded stops with an error instead of
#: replacing failed episodes forever (an impossible configuration, e.g. too few steps).
GIVE_UP_AFTER_FAILED_ATTEMPTS = 100


def mj_state_dim(cfg: BombConfig, max_board_stones: int) -> int:
    """Width of the MuJoCo state vector for the largest scene the grid can make."""
    import mujoco

    from .params import SceneParams
    from .sim.scene import build_scene

    sp = mujoco.mjtState.mjSTATE_INTEGRATION
    small = build_scene(cfg.sim, SceneParams(n_board_stones=0)).model
    one = build_scene(cfg.sim, SceneParams(n_board_stones=1)).model
    base, per = mujoco.mj_stateSize(small, sp), mujoco.mj_stateSize(one, sp) - mujoco.mj_stateSize(small, sp)
    return int(base + per * max_board_stones)


# ------------------------------------------------------------------------------------------ worker
def shard_name(k: int, attempt: int) -> str:
    """File name of the shard of episode k's attempt (under STORE/shards/)."""
    return f"ep{k:07d}-a{attempt:02d}.npz"


def run_episode(k: int, cfg: BombConfig, grid: Any, shard_dir: str, root_seed: int,
                in_memory: bool = False) -> dict[str, Any]:
    """Worker task: attempts of episode k until success; writes kept attempts as shards.

    Returns a small summary (no arrays): index, attempts, shard names, success, steps, seconds.
    With ``in_memory`` (the in-process single-worker path) kept records are returned under
    ``records`` instead of being written as shards: the client commits them at once.
    """
    from .rollout import episode_seed, rollout_expert

    t0 = time.perf_counter()
    cell, params = grid.episode_params(root_seed, k)
    gen = cfg.generate
    out: dict[str, Any] = {"k": k, "attempts": 0, "shards": [], "records": [], "success": False, "steps": 0,
                           "reasons": [], "pid": os.getpid()}
    env = None
    for attempt in range(gen.max_attempts):
        shard = Path(shard_dir) / shard_name(k, attempt)
        rec = None
        if shard.exists():  # left by an interrupted run: reuse it if it is whole
            try:
                rec = read_shard(shard)
            except ValueError as exc:
                log.warning("redoing episode %d attempt %d: %s", k, attempt, exc)
                shard.unlink(missing_ok=True)
        if rec is None:
            env = env or worker_env(cfg)
            roll = rollout_expert
            if cfg.task == "sequence":
                from .sequence.rollout import rollout_sequence_expert as roll
            rec, _ = roll(env, cfg, params, episode_seed(root_seed, k, attempt), gen.jpeg_quality)
            rec.meta.update(episode_index=k, attempt=attempt, cell_id=cell.id,
                            split=split_of(root_seed, k, cell.heldout, gen.val_fraction))
            if (rec.meta["success"] or gen.keep_failures) and not in_memory:
                write_shard(rec, shard)
        log.info("episode %d attempt %d: cell %s seed %d -> %s (%d steps)", k, attempt, cell.id, rec.meta["seed"],
                 "success" if rec.meta["success"] else rec.meta["failure_reason"], rec.length)
        out["attempts"] += 1
        out["steps"] += rec.length
        if rec.meta["success"] or gen.keep_failures:
            if in_memory:
                out["records"].append(rec)
            else:
                out["shards"].append(shard.name)
        if rec.meta["success"]:
            out["success"] = True
            break
        out["reasons"].append(rec.meta["failure_reason"])
    out["seconds"] = time.perf_counter() - t0
    out["peak_rss_bytes"] = _peak_rss()
    return out


def _peak_rss() -> int:
    """Peak resident memory of this process so far (bytes)."""
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


# ------------------------------------------------------------------------------------------ client
@dataclass
class Progress:
    """What the progress callback receives after each finished episode task.

    ``successes`` counts successful episodes committed to the store, which happens in index order,
    so a finished episode may wait for an earlier one; ``successful_attempts`` counts the finished
    attempts that succeeded, so ``successful_attempts / attempts`` is the expert's success rate so far.
    """

    needed: int
    attempts: int
    successes: int
    steps: int
    successful_attempts: int


def generate(cfg: BombConfig, out: Path, *, workers: int | None = None, scheduler: str | None = None,
             mode: str = "resume", progress: Callable[[Progress], None] | None = None,
             dashboard: str | None = None) -> dict[str, Any]:
    """Generate ``cfg.generate.n`` successful expert episodes into the store at ``out``.

    Args:
        cfg: the configuration (generate.n, seed, grid, ...).
        out: store directory.
        workers: local worker processes (default: one per usable core); ignored with ``scheduler``.
        scheduler: address of an existing Dask scheduler to use instead of a local cluster.
        mode: ``resume`` (continue a store of the same configuration), ``overwrite`` or ``create``.
        progress: called after every finished episode task.
        dashboard: HOST:PORT where the local cluster serves Dask's dashboard (default: none, and
            nothing listens beyond 127.0.0.1).

    Returns:
        A JSON-serialisable summary (episodes, attempts, success rate, steps, size, seconds).
    """
    from .perturb.grid import load_grid

    t0 = time.perf_counter()
    gen = cfg.generate
    grid = load_grid(gen.grid)
    if cfg.task == "sequence" or grid.task == "sequence":  # a sequence grid makes a sequence run
        from .sequence.check import sequence_run

        # bad sequence input: one line, before the store is touched; the board bounds the stones
        cfg, max_stones = sequence_run(cfg, grid)
    else:
        grid.require_empty_points(cfg.sim.min_empty_points)
        max_stones = grid.max_board_stones
    desc = {
        "config": cfg.model_dump(mode="json"),
        "config_hash": store_config_hash(cfg, grid),
        "grid": {"name": grid.name, "hash": grid.hash, "task": grid.task},
        "versions": versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "image_height": cfg.sim.image_height,
        "image_width": cfg.sim.image_width,
        "control_hz": cfg.sim.control_hz,
        "cameras": ["agentview", "wrist"],
        "image_codec": {"format": "jpeg", "quality": gen.jpeg_quality},
        "mj_state_dim": mj_state_dim(cfg, max_stones),
        "mj_state_spec": "mjSTATE_INTEGRATION",
    }
    check_dashboard(dashboard, scheduler)
    if cfg.task == "sequence":  # additive: a sequence store also holds schema.SEQUENCE_STEP_FEATURES
        desc["task"] = "sequence"
    check_scheduler(scheduler)  # an unreachable scheduler must fail before --overwrite empties the store
    writer = StoreWriter.open(out, desc, mode=mode)
    try:
        return _run(cfg, grid, writer, workers or default_workers(), scheduler, progress, t0, dashboard)
    finally:
        writer.close()


def _run(cfg: BombConfig, grid: Any, writer: StoreWriter, workers: int, scheduler: str | None,
         progress: Callable[[Progress], None] | None, t0: float, dashboard: str | None = None) -> dict[str, Any]:
    from dask.distributed import as_completed

    gen = cfg.generate
    root = writer.root
    committed = writer.committed_keys
    done = {e["episode_index"] for e in writer.episodes if e["success"]}
    ex_path = root / EXHAUSTED_FILE
    exhausted: set[int] = set(json.loads(ex_path.read_text())) if ex_path.exists() else set()
    needed = gen.n - len(done)
    if needed <= 0:
        log.info("store %s already holds %d successful episodes", root, len(done))
        return _summary(writer, 0, 0, 0, t0)
    _check_room(writer, needed)
    shard_dir = writer.shard_dir
    shard_dir.mkdir(exist_ok=True)
    for stale in shard_dir.glob(".*.tmp-*"):  # partial shard writes of a killed run
        stale.unlink(missing_ok=True)
    attempts = successes = steps = successful_attempts = 0
    failed_reasons: Counter[str] = Counter()  # of the episodes that exhausted their attempts in this run
    peak_rss: dict[int, int] = {}
    results: dict[int, dict[str, Any]] = {}
    # Episodes are issued lazily in increasing k (skipping committed and exhausted ones), at most
    # ``window`` at a time, and committed in the order issued: memory does not grow with --n.
    # ``to_issue`` counts the episodes still to start: each one that exhausts its attempts adds one.
    order: deque[int] = deque()  # issued, not yet committed, in issue order
    to_issue = needed
    next_k = 0

    def issue() -> int:
        nonlocal to_issue, next_k
        while next_k in done or next_k in exhausted:
            next_k += 1
        k = next_k
        next_k += 1
        to_issue -= 1
        order.append(k)
        return k

    def handle(r: dict[str, Any]) -> None:
        nonlocal attempts, successes, steps, successful_attempts, to_issue
        attempts += r["attempts"]
        successful_attempts += bool(r["success"])
        steps += r["steps"]
        peak_rss[r["pid"]] = max(peak_rss.get(r["pid"], 0), r["peak_rss_bytes"])
        results[r["k"]] = r
        if not r["success"]:
            log.warning("episode %d: no success in %d attempts (%s); replacing it with another episode",
                        r["k"], r["attempts"], ", ".join(map(str, r["reasons"])))
            exhausted.add(r["k"])
            atomic_write_text(ex_path, json.dumps(sorted(exhausted)))
            failed_reasons.update(map(str, r["reasons"]))
            if not successful_attempts and sum(failed_reasons.values()) >= GIVE_UP_AFTER_FAILED_ATTEMPTS:
                # nothing has succeeded at all: replacing episodes forever would never finish
                top = ", ".join(f"{k} x{v}" for k, v in failed_reasons.most_common(3))
                raise ConfigError(f"no episode succeeded in {attempts} attempts ({top}): this configuration "
                                  "cannot make demonstrations (e.g. sim.max_steps too small); episodes already "
                                  "stored are kept")
            to_issue += 1
        # Commit every finished episode that is next in issue order.
        while order and order[0] in results:
            rr = results.pop(order.popleft())
            for rec in [*rr["records"], *(read_shard(shard_dir / name) for name in rr["shards"])]:
                key = (rec.meta["episode_index"], rec.meta["attempt"])
                if key not in committed:
                    writer.append(rec)
                    committed.add(key)
            fault_point("committed")  # before the shards are removed
            # (the in-process path may have reused shards a killed run with worker processes left)
            reused = {shard_name(r.meta["episode_index"], r.meta["attempt"]) for r in rr["records"]}
            for name in {*rr["shards"], *reused}:
                (shard_dir / name).unlink(missing_ok=True)
            if rr["success"]:
                successes += 1
        if progress is not None:
            progress(Progress(needed=needed, attempts=attempts, successes=successes, steps=steps,
                              successful_attempts=successful_attempts))

    if workers == 1 and scheduler is None:
        # One worker: run in this process (no cluster start-up); same task function, same commits.
        while to_issue > 0:
            handle(run_episode(issue(), cfg, grid, str(shard_dir), gen.seed, in_memory=True))
    else:
        with dask_client(workers, scheduler, dashboard) as client:
            cfg_f = client.scatter(cfg, broadcast=True)
            grid_f = client.scatter(grid, broadcast=True)
            # two episodes in flight per worker thread keep every worker busy; more only costs memory
            threads = sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values())
            window = 2 * max(threads, workers if scheduler is None else 1, 1)

            def submit() -> Any:
                kk = issue()
                return client.submit(run_episode, kk, cfg_f, grid_f, str(shard_dir), gen.seed,
                                     key=f"episode-{kk}", pure=False)

            ac = as_completed([submit() for _ in range(min(window, to_issue))])
            for fut in ac:
                handle(task_result(fut, "episode"))
                while to_issue > 0 and ac.count() < window:
                    ac.add(submit())
    if successes < needed:
        raise StoreError(f"only {successes} of {needed} episodes were committed")
    out = _summary(writer, attempts, successes, steps, t0)
    out["workers_used"] = len(peak_rss)
    out["peak_rss_bytes_per_worker"] = max(peak_rss.values()) if peak_rss else 0
    return out


def _check_room(writer: StoreWriter, needed: int) -> None:
    """Refuse a run that cannot fit on the store's disk, judged by the episodes already stored (a new
    store has none to judge by: it runs until the disk is full, committed episodes kept)."""
    import shutil

    eps = len(writer.episodes)
    if not eps:
        return
    per_episode = sum(p.stat().st_size for p in (writer.root / "data").rglob("*") if p.is_file()) / eps
    need, free = needed * per_episode, shutil.disk_usage(writer.root).free
    if need > free:
        raise StoreError(f"{needed} more episodes need about {_gb(need)} at {_gb(per_episode)} each (the size of "
                         f"those stored), but only {_gb(free)} are free on the disk of {writer.root}; "
                         "ask for fewer with --n or make room")


def _gb(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def _summary(writer: StoreWriter, attempts: int, successes: int, steps: int, t0: float) -> dict[str, Any]:
    secs = time.perf_counter() - t0
    eps = writer.episodes
    size = sum(p.stat().st_size for p in writer.root.rglob("*") if p.is_file())
    frames = sum(e["length"] for e in eps)
    s = {
        "store": str(writer.root),
        "episodes_in_store": len(eps),
        "successful_in_store": sum(1 for e in eps if e["success"]),
        "generated_this_run": successes,
        "attempts_this_run": attempts,
        "retries_this_run": attempts - successes,
        "attempt_success_rate": round(successes / attempts, 4) if attempts else None,
        "env_steps_this_run": steps,
        "seconds": round(secs, 1),
        "episodes_per_minute": round(successes / secs * 60, 2) if successes else 0.0,
        "env_steps_per_second": round(steps / secs, 1) if steps else 0.0,
        "size_bytes": size,
        "bytes_per_frame_per_camera": round(size / max(1, frames) / 2),
    }
    writer.update_description(last_run=s)
    return s
