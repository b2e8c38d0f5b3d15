"""What generation and evaluation share to run work on Dask: the client (on a local cluster or an
existing scheduler), the scheduler check, each worker process's cached objects (the environment,
a policy), and the result of a task.

Nothing here knows what an episode is: ``generate`` and ``evaluate`` submit their own task
functions. Importing this module imports neither Dask nor MuJoCo (they load when first used).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ._cpus import default_workers
from .errors import BombDataError, ConfigError

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ worker-process cache
_WORKER: dict[str, tuple[Any, Any]] = {}  # name -> (key, object)


def worker_cached(name: str, key: Any, make: Callable[[], Any]) -> Any:
    """The object this worker process keeps under ``name``, made by ``make()`` when there is none or
    it was made for another ``key`` (the one it replaces is closed first, if it has ``close``)."""
    have = _WORKER.get(name)
    if have is not None and have[0] == key:
        return have[1]
    if have is not None and hasattr(have[1], "close"):
        have[1].close()
        del _WORKER[name]
    obj = make()
    _WORKER[name] = (key, obj)
    return obj


def worker_env(cfg: Any) -> Any:
    """One environment per worker process, reused across episodes (``GoSequenceEnv`` for
    ``task: sequence``, else ``GoPlaceEnv``), remade when the configuration changes."""
    from . import _gl  # noqa: F401  (MUJOCO_GL before mujoco)

    def make() -> Any:
        if cfg.task == "sequence":
            from .sequence.env import GoSequenceEnv

            env = GoSequenceEnv(cfg, sequence=cfg.sequence)
        else:
            from .env import GoPlaceEnv

            env = GoPlaceEnv(cfg)
        # OpenCV's own thread pool (the image perturbations) only adds overhead on small frames and
        # competes with the renderer and the other workers: run its kernels in the calling thread.
        # Set here, in the task runner, not in the library functions a user may call in their process.
        import cv2

        cv2.setNumThreads(1)
        log.info("worker %d: environment ready (MUJOCO_GL=%s)", os.getpid(), os.environ.get("MUJOCO_GL"))
        return env

    return worker_cached("env", cfg.content_hash(), make)


# ------------------------------------------------------------------------------------ Dask client
def _cancelled_task_warning(record: logging.LogRecord) -> bool:
    return "ended with CancelledError" not in record.getMessage()


def _not_a_lost_scheduler(record: logging.LogRecord) -> bool:
    """False for a record about the connection to the scheduler being closed (with its traceback)."""
    from distributed.comm.core import CommClosedError

    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, (CommClosedError, OSError)):
        return False
    msg = record.getMessage()
    return not ("CommClosedError" in msg or "Stream is closed" in msg
                or msg.startswith(("Failed to communicate with scheduler", "Connection to scheduler broken")))


def _quiet_cancelled_tasks() -> None:
    """In a local worker: drop the warning Dask logs for a task that closing the cluster cancels,
    and the tracebacks of a connection to the scheduler that closing the cluster cuts.

    An interrupted run closes the cluster while an episode is running; that cancellation is expected.
    A local worker's only scheduler lives in the process that started it, which reports what went
    wrong itself; a worker's heartbeat failing as it closes printed a CommClosedError traceback
    before the ``interrupted:`` line.
    """
    logging.getLogger("distributed.worker.state_machine").addFilter(_cancelled_task_warning)
    for name in ("distributed", ""):  # Dask's own handler, and the root's (distributed 2026 logs through both)
        for h in logging.getLogger(name).handlers:
            h.addFilter(_not_a_lost_scheduler)


def _not_sync_cancel_before_start(record: logging.LogRecord) -> bool:
    """False for the NameError tornado logs when Ctrl-C lands in ``distributed.utils.sync`` before its
    coroutine has created the future that the cancel callback reads (a race in distributed itself:
    ``cancel`` reads ``future``, which is only assigned a step later). Nothing was started, so there is
    nothing to cancel; the interrupt itself is reported by the ``interrupted:`` line."""
    exc = record.exc_info[1] if record.exc_info else None
    if not isinstance(exc, NameError) or "future" not in str(exc):
        return True
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code if tb is not None else None
    return not (code is not None and code.co_name == "cancel" and code.co_filename.endswith(
        os.path.join("distributed", "utils.py")))


def quiet_sync_cancel_race() -> None:
    """Drop the record of :func:`_not_sync_cancel_before_start` (idempotent)."""
    tlog = logging.getLogger("tornado.application")
    if _not_sync_cancel_before_start not in tlog.filters:
        tlog.addFilter(_not_sync_cancel_before_start)


def check_dashboard(address: str | None, scheduler: str | None = None) -> str | None:
    """``--dashboard HOST:PORT`` checked (``[::1]:8787`` for IPv6; port 0 picks a free one).

    Raises:
        ConfigError: not HOST:PORT, or given with ``scheduler`` (whose cluster has its own).
    """
    if address is None:
        return None
    if scheduler:
        raise ConfigError("--dashboard: the cluster at --scheduler serves its own dashboard (dask scheduler "
                          "--dashboard-address); --dashboard is for the local cluster")
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535 or any(c.isspace() for c in host):
        raise ConfigError(f"--dashboard: expected HOST:PORT (e.g. 127.0.0.1:8787), given {address!r}")
    return address


@contextmanager
def dask_client(workers: int, scheduler: str | None, dashboard: str | None = None) -> Iterator[Any]:
    """A Dask client on ``scheduler``, or on a local cluster of ``workers`` single-threaded worker
    processes made for the block; closed (client, then the local cluster) when the block ends.

    The local cluster listens on 127.0.0.1 only: its scheduler, workers and the scheduler's HTTP
    endpoints (logs, call stacks, event stream: no authentication) are unreachable from the network.
    ``dashboard`` (HOST:PORT) opts in to serving the HTTP endpoints and the dashboard there instead.

    Dask's own INFO lines (cluster start and stop, one per worker) are held back for the block unless
    logging is at DEBUG: distributed 2026 logs through the root handlers, which its ``silence_logs``
    does not reach, so they would fill the terminal around the progress bar.
    """
    from dask.distributed import Client, LocalCluster

    quiet_sync_cancel_race()
    dlog = logging.getLogger("distributed")
    old_level = dlog.level
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        dlog.setLevel(logging.WARNING)
    cluster = client = None
    try:
        if scheduler:
            try:
                client = Client(scheduler, timeout="20s")
            except (OSError, ValueError, TypeError) as exc:
                raise BombDataError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        else:
            os.environ.setdefault("MUJOCO_GL", "egl")
            # llvmpipe renders with a thread per core; with a worker per core, one thread each is faster.
            if workers >= default_workers():
                os.environ.setdefault("LP_NUM_THREADS", "1")
            # Everything on loopback (Dask's HTTP endpoints are unauthenticated). No dashboard unless asked:
            # the scheduler's plain HTTP server starts anyway, on a free port of 127.0.0.1, so that two
            # runs on one machine do not warn "Port 8787 is already in use".
            # Ctrl-C reaches every process of the terminal's group. Worker processes start with SIGINT
            # ignored (kept across exec; Python then installs no KeyboardInterrupt handler), so only this
            # process handles it, closing the cluster, instead of each worker printing a traceback.
            main_thread = threading.current_thread() is threading.main_thread()
            old_sigint = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None
            try:
                cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=dashboard or "127.0.0.1:0",
                                       scheduler_kwargs={"dashboard": dashboard is not None},
                                       silence_logs=logging.WARNING)
            finally:
                if old_sigint is not None:
                    signal.signal(signal.SIGINT, old_sigint)
            client = Client(cluster)
            client.run(_quiet_cancelled_tasks)
        yield client
    except KeyboardInterrupt:
        # Closing after Ctrl-C stops workers mid-episode: Dask's warnings about it ("Worker process
        # still alive after 4.0 seconds, killing", comms closed) say nothing the interrupt line does not.
        dlog.setLevel(logging.CRITICAL)
        raise
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
        dlog.setLevel(old_level)


def check_scheduler(scheduler: str | None) -> None:
    """Connect to ``scheduler`` once (BombDataError if unreachable), before anything is overwritten."""
    if scheduler:
        with dask_client(1, scheduler):
            pass


def task_result(fut: Any, what: str) -> Any:
    """The result of a finished Dask task. Our own errors pass through; a crash inside a worker
    becomes one BombDataError line naming the task (``what`` says which kind of task)."""
    try:
        return fut.result()
    except BombDataError:
        raise
    except Exception as exc:
        raise BombDataError(f"{what} task {fut.key} failed: {type(exc).__name__}: {exc}") from exc
