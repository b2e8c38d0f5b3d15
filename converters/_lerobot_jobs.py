"""The job pool of the LeRobot export: (episode, camera) jobs in worker processes pinned one per
core, or in threads of this process (``workers`` == 1); results in order."""

from __future__ import annotations

import os
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from multiprocessing import get_context
from typing import Any

from bomb_data._cpus import usable_cpus
from bomb_data.schema import CAMERAS

from . import _lerobot_video as vid
from . import process_pool

#: Set to 0 to keep the export's worker processes off ``sched_setaffinity`` (see ``_pin_worker``).
PIN_ENV = "BOMB_DATA_PIN_CPUS"


def _pin_worker(counter: Any, cpus: list[int]) -> None:
    """Pool initializer: the k-th worker process (and the encoder threads it starts) runs on core k.

    With no more workers than cores, each libsvtav1 encoder kept on its own core measured ~15% more
    camera frames/s than encoders free to move (median of 10 paired runs on 2 cores, 328 against 285,
    8 faster; docs/formats/lerobot.md). The encoded bytes do not change.
    """
    with counter.get_lock():
        k = counter.value
        counter.value += 1
    try:
        os.sched_setaffinity(0, {cpus[k % len(cpus)]})
    except OSError:  # refused (a container's policy): run unpinned
        pass


class Jobs:
    """(episode, camera) jobs in flight, results in order.

    ``workers`` > 1: a pool of that many processes. ``workers`` == 1: this process, one thread per
    camera (PyAV's encoder and OpenCV's JPEG decoder release the GIL, so the two streams of an
    episode encode side by side; measured 1.7x the sequential rate on 2 cores).
    """

    def __init__(self, workers: int):
        if workers > 1:
            ctx = get_context("spawn")
            cpus = usable_cpus()
            pin = (dict(initializer=_pin_worker, initargs=(ctx.Value("i", 0), cpus))
                   if os.environ.get(PIN_ENV, "1") != "0" and hasattr(os, "sched_setaffinity") and workers <= len(cpus)
                   else {})
            self.pool: Executor = process_pool(workers, context=ctx, **pin)
        else:
            self.pool = ThreadPoolExecutor(max_workers=len(CAMERAS))

    def submit(self, job: vid.CameraJob) -> Future[dict[str, Any]]:
        return self.pool.submit(vid.run_camera_job, job)

    @staticmethod
    def encoder_threads(workers: int) -> int:
        """Threads of each encoder: the cores shared among the encoders that run at once."""
        running = workers if workers > 1 else len(CAMERAS)
        return max(1, len(usable_cpus()) // running)

    def close(self, cancel: bool = False) -> None:
        self.pool.shutdown(wait=True, cancel_futures=cancel)
