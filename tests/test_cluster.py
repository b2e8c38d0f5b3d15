"""`--scheduler`: generate and eval on a cluster started the way docs/generation.md says (a plain
`dask scheduler` and `dask worker --nthreads 1` on 127.0.0.1, separate processes), against the same
work done locally. The workers are other processes with their own MUJOCO_GL, as on a real cluster."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bomb_data.evaluate.runner import evaluate, read_results
from bomb_data.generate import generate
from bomb_data.store import EpisodeStore

from .test_generate import assert_same_stores, small_cfg

DASK = Path(sys.executable).with_name("dask")
WORKERS = 3  # more than this machine's cores: the cluster's size, not the client's, must count


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Address of a running scheduler with WORKERS single-threaded worker processes."""
    from dask.distributed import Client

    if not DASK.exists():
        pytest.fail(f"the dask command is missing next to {sys.executable}")
    host, port = "127.0.0.1", str(_free_port())
    addr = f"tcp://{host}:{port}"
    logs = tmp_path_factory.mktemp("cluster")
    env = {**os.environ, "MUJOCO_GL": "egl", "LP_NUM_THREADS": "1"}
    procs: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> None:
        with open(logs / f"{name}.log", "w") as log:  # the child keeps its own copy of the descriptor
            procs.append(subprocess.Popen([str(DASK), name, *args, "--no-dashboard"], stdout=subprocess.DEVNULL,
                                          stderr=log, env=env, cwd=str(logs), start_new_session=True))

    try:
        start("scheduler", "--host", host, "--port", port)
        start("worker", addr, "--nworkers", str(WORKERS), "--nthreads", "1", "--host", host)
        deadline = time.time() + 120
        while True:
            try:
                with Client(addr, timeout="5s") as c:
                    c.wait_for_workers(WORKERS, timeout=max(1.0, deadline - time.time()))
                break
            except (OSError, TimeoutError) as exc:
                if time.time() > deadline or any(p.poll() is not None for p in procs):
                    log = "\n".join((logs / f).read_text()[-2000:] for f in ("scheduler.log", "worker.log"))
                    pytest.fail(f"the test cluster did not start ({exc}):\n{log}")
                time.sleep(0.5)
        yield addr
    finally:
        for p in reversed(procs):
            _stop(p)
        shutil.rmtree(logs / "dask-scratch-space", ignore_errors=True)


def _prefixes_run(scheduler: str) -> set[str]:
    """Task-name prefixes the scheduler has seen: proof that the work went through it."""
    from dask.distributed import Client

    with Client(scheduler, timeout="10s") as c:
        return set(c.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.task_prefixes)))


def test_generate_on_a_scheduler_equals_a_local_run(scheduler: str, tmp_path: Path) -> None:
    cfg = small_cfg(4)
    s = generate(cfg, tmp_path / "remote", scheduler=scheduler, mode="create")
    assert s["successful_in_store"] == 4 and "episode" in _prefixes_run(scheduler)
    generate(cfg, tmp_path / "local", workers=1, mode="create")
    remote, local = EpisodeStore(tmp_path / "remote"), EpisodeStore(tmp_path / "local")
    assert_same_stores(remote, local)
    # the cluster's workers wrote the shards the client committed: nothing is left behind
    assert not any((tmp_path / "remote" / "shards").iterdir())
    # resuming on the cluster to a larger n keeps the first four and adds the next ones
    cfg6 = small_cfg(6)
    generate(cfg6, tmp_path / "remote", scheduler=scheduler, mode="resume")
    generate(cfg6, tmp_path / "local", workers=1, mode="resume")
    assert_same_stores(EpisodeStore(tmp_path / "remote"), EpisodeStore(tmp_path / "local"))


def _max_processing(transitions: list[tuple[str, str, str, float]]) -> int:
    """Most tasks assigned to workers (``processing``) at the same moment: what the client handed the
    cluster at once. (How many then computed at the same instant depends on the machine's load.)"""
    now = most = 0
    for _key, start, finish, _t in transitions:
        now += (finish == "processing") - (start == "processing")
        most = max(most, now)
    return most


def test_eval_on_a_scheduler_equals_a_local_run(scheduler: str, tmp_path: Path) -> None:
    from dask.distributed import Client

    cfg = small_cfg(4)
    kw = {"grid": "nominal", "episodes_per_cell": WORKERS, "videos_per_cell": 0}

    def transitions(dask_scheduler, prefix: str, since: float) -> list[tuple[str, str, str, float]]:
        # (key, from, to, time) of the scheduler's task transitions of keys prefix... since ``since``
        # (defined here: the scheduler process unpickles it by value, it cannot import the tests)
        return [(str(t.key), t.start, t.finish, t.timestamp) for t in dask_scheduler.transition_log
                if str(t.key).startswith(prefix) and t.timestamp >= since]

    with Client(scheduler, timeout="10s") as c:
        t0 = c.run_on_scheduler(time.time)
        # --workers counts local processes; on a cluster every worker is given an episode at once
        s = evaluate(cfg, "expert", tmp_path / "remote", scheduler=scheduler, workers=1, **kw)
        moves = c.run_on_scheduler(transitions, prefix="eval-", since=t0)
    assert len({k for k, *_ in moves}) == WORKERS and _max_processing(moves) == WORKERS, moves
    evaluate(cfg, "expert", tmp_path / "local", workers=1, **kw)
    assert s["complete"] and s["overall"]["n"] == WORKERS and s["overall"]["n_error"] == 0

    def outcome(out: Path) -> list[tuple]:
        return sorted((r["episode_id"], r["success"], r["steps"], r["placement_error_mm"], r["chosen_intersection"])
                      for r in read_results(out / "results.jsonl"))

    assert outcome(tmp_path / "remote") == outcome(tmp_path / "local")
