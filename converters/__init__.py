"""Exporters: one module per target format, each reading only the store API (bomb_data.store).

Every exporter module defines::

    def export(store_path: Path, out: Path, *, overwrite: bool = False, workers: int = 1,
               progress: Callable[[int], None] | None = None, **format_options) -> dict

``progress`` is called with the number of frames (steps) just written; the return value is a
JSON-serialisable summary (episodes, frames, bytes, seconds, output path). Heavy stacks
(tensorflow, torch, lerobot) are imported only inside the function that needs them.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import logging
import multiprocessing as mp
import os
import shutil
import signal
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from bomb_data._fault import fault_point
from bomb_data.errors import ExportError

if TYPE_CHECKING:
    from bomb_data.store import EpisodeStore

log = logging.getLogger(__name__)

FORMATS: dict[str, str] = {
    "rlds": "converters.rlds",
    "lerobot": "converters.lerobot",
    "hdf5": "converters.hdf5",
    "zarr": "converters.zarr_replay",
}


def _worker_start(initializer: Callable[..., None] | None, initargs: tuple[Any, ...]) -> None:
    # Ctrl-C signals the terminal's whole process group; the parent handles it and shuts the pool
    # down, so a worker ignores it rather than print a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if initializer is not None:
        initializer(*initargs)


def process_pool(workers: int, initializer: Callable[..., None] | None = None, initargs: tuple[Any, ...] = (),
                 context: Any = None) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes that leave Ctrl-C to this process, started with ``spawn`` unless
    ``context`` says otherwise (the store's zarr reader runs a background event-loop thread, which a
    forked child must not inherit)."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=context or mp.get_context("spawn"),
                               initializer=_worker_start, initargs=(initializer, initargs))


def get(fmt: str) -> ModuleType:
    """The exporter module for ``fmt`` (one of FORMATS)."""
    if fmt not in FORMATS:
        raise KeyError(f"unknown export format {fmt!r}; expected one of {sorted(FORMATS)}")
    return importlib.import_module(FORMATS[fmt])


def check_out_apart(store_path: Path | str, out: Path | str) -> None:
    """Refuse an ``out`` that is the store, holds it or lies inside it (one clear line).

    Replacing such an ``out`` (``--overwrite``) would delete the canonical store, and writing into it
    would leave foreign files in the store's directory.
    """
    s, o = Path(store_path).resolve(), Path(out).resolve()
    where = "is" if o == s else "contains" if s.is_relative_to(o) else "is inside" if o.is_relative_to(s) else None
    if where:
        raise ExportError(f"--out {out} {where} the store {store_path}; choose an --out outside it")


def open_store(store_path: Path | str, segment_subtasks: bool = False) -> EpisodeStore:
    """Open a store for export; StoreError for a missing, invalid or empty store. With
    ``segment_subtasks``, the view of a sequence store with one episode per subtask
    (``bomb_data.store.segments``; ExportError for a store of another task)."""
    from bomb_data.store import EpisodeStore

    store = EpisodeStore(Path(store_path))
    store.require_nonempty()
    if segment_subtasks:
        from bomb_data.store.segments import segmented

        return segmented(store)
    return store


def select_episodes(store: EpisodeStore, include_failures: bool) -> list[int]:
    """Store indices to export: successful episodes, or all of them with ``include_failures``."""
    idx = store.select(success=None if include_failures else True)
    if not idx:
        raise ExportError(f"{store.root} holds no successful episode to export "
                          "(use --include-failures to export failed ones)")
    return idx


def check_replaceable(out: Path, overwrite: bool, what: str, is_ours: Callable[[Path], bool],
                      file: bool = False) -> None:
    """The rule every exporter applies to an ``--out`` that exists; each refusal is one clear line.

    * Nothing there, or an empty directory where a directory is written: go on.
    * A directory where a file is written (``file``), or a file where a directory is written: refused.
    * Anything that is not an earlier export of this kind (``is_ours`` false; ``what`` names the
      kind, e.g. "a LeRobot dataset"): refused even with ``--overwrite``, so that ``--overwrite``
      never deletes a foreign file or directory.
    * An earlier export of this kind: replaced only with ``overwrite``.
    """
    if not out.exists():
        return
    if file and out.is_dir():
        raise ExportError(f"--out {out} is a directory; this export writes a file")
    if not file:
        if not out.is_dir():
            raise ExportError(f"--out {out} is a file; this export writes a directory")
        if not any(out.iterdir()):
            return
    if not is_ours(out):
        held = "is not" if file else "is not empty and is not"
        raise ExportError(f"--out {out} {held} {what}; refusing to replace it (choose another --out)")
    if not overwrite:
        raise ExportError(f"--out {out} already holds {what}; pass --overwrite to replace it")


def holds(marker: str) -> Callable[[Path], bool]:
    """``is_ours`` for :func:`check_replaceable`: the directory holds the file ``marker``."""
    return lambda d: (d / marker).is_file()


def remove_path(p: Path) -> None:
    """Delete a file, a directory tree or a symlink (the link only, never what it points to)."""
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists() or p.is_symlink():
        p.unlink()


def swap_into_place(tmp: Path, out: Path, recheck: Callable[[], None]) -> None:
    """Rename the finished export ``tmp`` to ``out``; on any failure remove ``tmp`` and leave ``out`` as it was.

    An existing ``out`` is checked again first (``recheck``, e.g. :func:`check_replaceable`: it may have
    appeared or changed during a long export), moved aside, and deleted only once the new export is
    in place (a symlinked ``out``: the link is replaced, its target kept).
    """
    fault_point("export-written")
    try:
        if out.exists() or out.is_symlink():
            recheck()
            old = out.with_name(f".{out.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            os.replace(out, old)
            fault_point("export-moved-aside")
            os.replace(tmp, out)
            fault_point("export-swapped")
            remove_path(old)
        else:
            os.replace(tmp, out)
    except BaseException:
        remove_path(tmp)
        raise


#: errno of a write refused for lack of room: no space, quota, file size limit (RLIMIT_FSIZE).
DISK_FULL = {errno.ENOSPC: "ENOSPC", errno.EDQUOT: "EDQUOT", errno.EFBIG: "EFBIG"}


def disk_full(exc: BaseException) -> str | None:
    """``"No space left on device (ENOSPC)"`` (or the quota or file-size variant) when ``exc``, or an
    exception it arose from, is a write refused for lack of room; else None. HDF5 reports it as a
    RuntimeError whose text carries ``errno = 28``."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in DISK_FULL:
            return f"{os.strerror(e.errno)} ({DISK_FULL[e.errno]})"
        for code, name in DISK_FULL.items():
            if f"errno = {code}," in str(e) or os.strerror(code) in str(e):
                return f"{os.strerror(code)} ({name})"
        e = e.__cause__ or e.__context__
    return None


@contextlib.contextmanager
def staged(final: Path, recheck: Callable[[], None], is_dir: bool) -> Iterator[Path]:
    """Yield a hidden temporary path beside ``final`` (a new directory if ``is_dir``); when the block
    succeeds, :func:`swap_into_place` renames it to ``final`` (``recheck`` first judges an existing
    ``final`` again, e.g. :func:`check_replaceable`). On any exception, KeyboardInterrupt included,
    the temporary path is removed, and so are the directories made to hold ``final`` (if still empty);
    ``final`` is untouched. Check ``final`` before the block too: nothing here refuses it before the
    work is done. A disk that fills up becomes one ExportError saying so, once the partial output
    is gone.
    """
    made = [d for d in (final.parent, *final.parent.parents) if not d.exists()]  # deepest first
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(final)
    tmp = final.with_name(f".{final.name}.partial-{os.getpid()}")
    remove_path(tmp)
    if is_dir:
        tmp.mkdir()
    try:
        yield tmp
    except BaseException as exc:
        remove_path(tmp)
        for d in made:
            try:
                d.rmdir()
            except OSError:  # something else was put there meanwhile
                break
        if isinstance(exc, Exception) and (full := disk_full(exc)):
            before = f"{final.name} is as it was" if final.exists() or final.is_symlink() else "nothing is left"
            raise ExportError(f"the disk is full: {full} while writing the export to {final}; the partial "
                              f"export was removed and {before} (free space or choose another --out)") from None
        raise
    swap_into_place(tmp, final, recheck)


#: Hidden siblings of an --out that exporters write (``.NAME.<tag><pid>...``): the export being
#: written, and an old export moved aside during the final rename (``.rlds-tmp-``: what earlier versions
#: of the RLDS export called the first).
TEMP_TAGS = (".partial-", ".old-", ".rlds-tmp-")


def remove_stale_temps(out: Path) -> None:
    """Remove the hidden siblings of ``out`` left by exports that were killed (their process is gone)."""
    if not out.parent.is_dir():
        return
    for tag in TEMP_TAGS:
        prefix = f".{out.name}{tag}"
        for p in out.parent.glob(prefix + "*"):
            try:
                pid = int(p.name[len(prefix):].split("-")[0])
            except ValueError:
                continue
            from bomb_data.store.format import pid_alive  # (the store, hence zarr, only when needed)

            if pid == os.getpid() or pid_alive(pid):
                continue
            log.info("removing %s left by an interrupted export", p)
            remove_path(p)

