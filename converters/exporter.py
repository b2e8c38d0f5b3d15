"""The skeleton every exporter fills in: the opening all formats share, then the format's own steps.

Like a TFDS builder (``_info`` / ``_split_generators`` / ``_generate_examples``), a format is a
subclass of :class:`Exporter` that declares what it writes and fills in a few steps;
:meth:`Exporter.run` does the rest, in this order, the same for every format:

1. ``check_options()``: the format's own options, before anything is opened;
2. ``image_size`` checked (:func:`converters.frames.check_image_size`, one rule for all formats);
3. ``--out`` apart from the store (:func:`converters.check_out_apart`), the store opened
   (:func:`converters.open_store`), the frame size (H, W) fixed and ``check_frames(h, w)``
   (a format's extra rule, e.g. even sizes for video);
4. ``prepare()``: checks and set-up that need the open store;
5. ``select()``: the episodes to export (default: successful ones, or all with ``include_failures``);
6. ``target()`` and ``check_out()``: the path written and the rule for an existing one
   (:func:`converters.check_replaceable`, judged now and again just before the final rename);
7. ``write(tmp)`` inside :func:`converters.staged`: the export itself, into a hidden temporary path
   renamed to the target only when complete;
8. ``summarize(written)``: the JSON summary; ``image_size`` is always reported as [H, W].

Worker processes (and this process when ``workers`` is 1) keep their state in :data:`WORKER`,
set by :func:`init_worker`; :func:`worker_store` opens the store once per process.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from . import check_out_apart, check_replaceable, open_store, process_pool, select_episodes, staged
from .frames import check_image_size, frame_hw

if TYPE_CHECKING:
    from bomb_data.store import EpisodeStore

T = TypeVar("T")
R = TypeVar("R")


class Exporter:
    """One export of a store to ``out``; subclasses fill in the format's steps (module docstring).

    Attributes set by :meth:`run` for the steps: ``store`` (the open store), ``hw`` (exported frame
    size), ``indices`` (store indices to export, from :meth:`select`), ``final`` (the path written,
    from :meth:`target`), ``started`` (``time.perf_counter()`` at the start), ``seconds`` (wall time,
    set before :meth:`summarize`).
    """

    #: ``--format`` name.
    format: ClassVar[str] = ""
    #: What this exporter writes, as refusals name it ("a LeRobot dataset from bomb-data").
    what: ClassVar[str] = ""
    #: The export is one file (else a directory).
    writes_file: ClassVar[bool] = False

    store: EpisodeStore
    hw: tuple[int, int]
    indices: list[int]
    final: Path
    started: float
    seconds: float

    def __init__(self, store_path: Path | str, out: Path | str, *, overwrite: bool = False, workers: int = 1,
                 progress: Callable[[int], None] | None = None, image_size: int | None = None,
                 include_failures: bool = False, segment_subtasks: bool = False):
        self.store_path, self.out = Path(store_path), Path(out)
        self.overwrite, self.workers, self.progress = overwrite, workers, progress
        self.image_size, self.include_failures = image_size, include_failures
        #: a sequence store seen as one episode per subtask (``bomb_data.store.segments``)
        self.segment_subtasks = segment_subtasks

    # ------------------------------------------------------------------- the steps a format fills in
    def check_options(self) -> None:
        """Refuse bad format options (ExportError), before the store is opened."""

    def check_frames(self, h: int, w: int) -> None:
        """Refuse an exported frame size the format cannot encode (beyond :func:`check_image_size`)."""

    def prepare(self) -> None:
        """Checks and set-up that need the open store (``self.store``)."""

    def select(self) -> list[int]:
        """Store indices of the episodes to export."""
        return select_episodes(self.store, self.include_failures)

    def target(self) -> Path:
        """The path the export is written to (default ``out``)."""
        return self.out

    def is_ours(self, path: Path) -> bool:
        """``path`` is an earlier export of this kind (only such an export is ever replaced)."""
        raise NotImplementedError

    def check_out(self, final_check: bool = False) -> None:
        """Refuse a target that must not be replaced; ``final_check``: the check just before the rename."""
        check_replaceable(self.final, self.overwrite, self.what, self.is_ours, file=self.writes_file)

    def write(self, tmp: Path) -> dict[str, Any]:
        """Write the export into ``tmp`` (a new directory, or the file to create); return what
        :meth:`summarize` needs."""
        raise NotImplementedError

    def summarize(self, written: dict[str, Any]) -> dict[str, Any]:
        """The JSON-serialisable summary of the export (``image_size`` is set by :meth:`run`)."""
        return written

    # ---------------------------------------------------------------------------------- the run
    def advance(self, frames: int) -> None:
        """Report ``frames`` more frames written to the ``progress`` callback."""
        if self.progress is not None:
            self.progress(frames)

    def run(self) -> dict[str, Any]:
        """Do the export (module docstring); return its summary."""
        self.started = t0 = time.perf_counter()
        self.check_options()
        self.image_size = check_image_size(self.image_size)
        check_out_apart(self.store_path, self.out)
        self.store = open_store(self.store_path, self.segment_subtasks)
        self.hw = frame_hw(self.image_size, self.store.image_shape)
        self.check_frames(*self.hw)
        self.prepare()
        self.indices = self.select()
        self.final = self.target()
        self.check_out()
        with staged(self.final, lambda: self.check_out(final_check=True), is_dir=not self.writes_file) as tmp:
            written = self.write(tmp)
        self.seconds = time.perf_counter() - t0
        summary = self.summarize(written)
        summary["image_size"] = list(self.hw)
        return summary


# ------------------------------------------------------------------------------ worker-side state
#: Per-process state of an export's workers (a pool process, or this process when ``workers`` is 1):
#: ``store`` (the open store) and what the format passes to :func:`init_worker` (options, open
#: arrays, a progress queue).
WORKER: dict[str, Any] = {}
_WORKER_LOCK = threading.Lock()  # jobs may run in threads of this process (the LeRobot export, workers=1)


def init_worker(store_handle: str | None = None, **state: Any) -> None:
    """Pool initializer (and the start of an in-process export): forget the previous export's state,
    keep ``state`` and open the store ``store_handle`` names (``EpisodeStore.handle``; None: the
    first :func:`worker_store` call opens it)."""
    from bomb_data.store import EpisodeStore

    store = EpisodeStore.reopen(store_handle) if store_handle is not None else None
    with _WORKER_LOCK:
        WORKER.clear()
        WORKER.update(state)
        if store is not None:
            WORKER.update(store=store, store_handle=store_handle)


def worker_store(store_handle: str) -> EpisodeStore:
    """The store ``store_handle`` names, opened once per process (by :func:`init_worker` or here)."""
    from bomb_data.store import EpisodeStore

    with _WORKER_LOCK:
        if WORKER.get("store_handle") != store_handle:
            WORKER["store"] = EpisodeStore.reopen(store_handle)
            WORKER["store_handle"] = store_handle
        return WORKER["store"]


# -------------------------------------------------------------------------------- worker pool
def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int,
                initializer: Callable[..., None] | None = None, initargs: tuple[Any, ...] = (),
                in_flight: int | None = None) -> Iterator[R]:
    """``map(fn, items)`` in order, over ``workers`` processes, with at most ``in_flight`` pending.

    ``workers <= 1`` runs in this process (after calling ``initializer``); otherwise a
    :func:`converters.process_pool`. At most ``in_flight`` (default 2 x workers) results exist at
    once, which bounds memory to a few episodes.
    """
    if workers <= 1:
        if initializer is not None:
            initializer(*initargs)
        for x in items:
            yield fn(x)
        return
    limit = in_flight or 2 * workers
    ex = process_pool(workers, initializer, initargs)
    pending: deque[Future[R]] = deque()
    it = iter(items)
    try:
        for x in it:
            pending.append(ex.submit(fn, x))
            if len(pending) >= limit:
                break
        while pending:
            res = pending.popleft().result()
            for x in it:
                pending.append(ex.submit(fn, x))
                break
            yield res
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


# ------------------------------------------------------------------------------ what exports record
def provenance(store: EpisodeStore) -> dict[str, Any]:
    """What made the export: versions, config hash, schema, store, control rate, image shape."""
    from bomb_data import __version__

    d = store.description
    return {
        "exporter": "bomb-data",
        "bomb_data_version": __version__,
        "store": store.root.name,
        "schema_version": d.get("schema_version"),
        "config_hash": d.get("config_hash"),
        "versions": d.get("versions"),
        "control_hz": store.fps,
        "store_image_shape": list(store.image_shape),
    } | ({"segment_subtasks": True} if "segmented" in d else {})  # one episode per subtask (store.segments)


def tree_bytes(p: Path) -> int:
    """Bytes on disk of a file or of every file under a directory."""
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
