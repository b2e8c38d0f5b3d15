"""Shared pieces of the HDF5 and zarr replay-buffer exporters (converters/hdf5.py, converters/zarr_replay.py).

Nothing here imports mujoco or torch: the exporters read only the store (bomb_data.store).

* orientation and gripper conversions used by the layouts (``quat_to_axis_angle``, ``gripper_open01``),
* metadata attributes (``meta_attrs``, ``provenance``),
* HDF5 writes that survive a full disk (``H5Writer``),
* a process pool that maps a per-episode function in order with a bounded number of episodes in
  flight (``ordered_map``), so memory stays bounded whatever the size of the store.
"""

from __future__ import annotations

import io
import json
import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from bomb_data.store import EpisodeStore

from . import process_pool
from .frames import resize_frames  # noqa: F401  (the one resize, re-exported for earlier imports)

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

#: Finger travel of the Panda gripper (schema: 0 = closed, 0.04 m = fully open).
FINGER_OPEN_M = 0.04


# ------------------------------------------------------------------------------------ conversions
from bomb_data.rotations import quat_wxyz_to_axis_angle as quat_to_axis_angle  # noqa: E402,F401  (one convention, re-exported)


def gripper_open01(gripper_qpos: NDArray[np.floating]) -> NDArray[np.float32]:
    """Normalised gripper opening from the two finger positions: 0 = closed, 1 = fully open.

    Args:
        gripper_qpos: (T, 2) finger positions, m from the closed position.

    Returns:
        (T,) float32 mean finger position / 0.04 m (ALOHA's and RoboTwin's gripper convention).
    """
    g = np.asarray(gripper_qpos, dtype=np.float64)
    return (g.mean(axis=-1) / FINGER_OPEN_M).astype(np.float32)


def gripper_command01(action: NDArray[np.floating]) -> NDArray[np.float32]:
    """Gripper command of canonical actions mapped to 0 = close, 1 = open (from -1 open / +1 closed).

    Args:
        action: (T, 7) canonical actions.

    Returns:
        (T,) float32 in [0, 1].
    """
    a = np.asarray(action, dtype=np.float64)[:, 6]
    return ((1.0 - a) / 2.0).astype(np.float32)


# ----------------------------------------------------------------------------------------- meta
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
    }


def meta_attrs(meta: dict[str, Any]) -> dict[str, Any]:
    """HDF5 attributes of one episode's metadata (schema.EPISODE_FIELDS).

    ``meta`` holds the whole record as JSON (authoritative, incl. nulls); besides, each field is an
    attribute of its own: strings, numbers and booleans as they are, lists of numbers as arrays,
    dicts as JSON text; null fields appear only in ``meta``.
    """
    out: dict[str, Any] = {"meta": json.dumps(meta, sort_keys=True)}
    for k, v in meta.items():
        if v is None:
            continue
        if isinstance(v, int) and not isinstance(v, bool) and not -2**63 <= v < 2**63:
            out[k] = str(v)  # beyond int64: HDF5 has no integer type for it
        elif isinstance(v, (bool, int, float, str)):
            out[k] = v
        elif isinstance(v, (list, tuple)) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
            out[k] = np.asarray(v)
        else:
            out[k] = json.dumps(v, sort_keys=True)
    return out


# ------------------------------------------------------------------------------ full-disk guard
class _RoomGuard(io.RawIOBase):
    """A file for h5py's file-object driver that hides write failures from HDF5.

    After a failed write (a full disk: ENOSPC, EDQUOT; a file size limit: EFBIG) the HDF5 library
    is not safe: it retries its metadata flushes on every object it frees, printing a traceback
    each time, and crashed the process (SIGSEGV) in our trials. So the first failure is recorded and
    every later write is dropped while reporting success; ``H5Writer`` raises the recorded error at
    its next ``check()`` or when the file is closed, and the (garbage) file is removed by the caller.
    """

    def __init__(self, path: Path):
        super().__init__()
        self.f = open(path, "w+b", buffering=0)  # closed in close()
        self.error: OSError | None = None

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        return self.f.readinto(b) or 0

    def write(self, b: Any) -> int:
        n = len(memoryview(b).cast("B"))
        if self.error is None:
            try:
                view = memoryview(b).cast("B")
                while len(view):
                    view = view[self.f.write(view):]
            except OSError as exc:
                self.error = exc
        return n

    def seek(self, pos: int, whence: int = 0) -> int:
        return self.f.seek(pos, whence)

    def tell(self) -> int:
        return self.f.tell()

    def truncate(self, size: int | None = None) -> int:
        if self.error is None:
            try:
                return self.f.truncate(size)
            except OSError as exc:
                self.error = exc
        return self.tell() if size is None else size

    def flush(self) -> None:
        pass  # unbuffered

    def close(self) -> None:
        if not self.closed:
            self.f.close()
        super().close()


class H5Writer:
    """``h5py.File(path, "w")`` that turns a full disk into one ``OSError`` instead of a crash.

    ``with H5Writer(path) as f:`` gives the h5py file; call ``check()`` now and then (e.g. after each
    episode) to stop soon after a write failed; the error is raised at the latest when the block
    ends, in place of any error HDF5 reported about the dropped writes.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._raw: _RoomGuard | None = None
        self._file: Any = None

    def __enter__(self) -> Any:
        import h5py

        self._raw = _RoomGuard(self.path)
        try:
            self._file = h5py.File(self._raw, "w")
        except BaseException:
            self._raw.close()
            raise
        return self._file

    def check(self) -> None:
        """Raise the write error recorded so far, if any."""
        if self._raw is not None and self._raw.error is not None:
            raise self._raw.error

    def __exit__(self, *exc: Any) -> None:
        try:
            try:
                self._file.close()
            except Exception:
                if self._raw is None or self._raw.error is None:
                    raise
            if self._raw is not None and self._raw.error is not None:
                raise self._raw.error from None
        finally:
            if self._raw is not None:
                self._raw.close()


def tree_bytes(p: Path) -> int:
    """Bytes on disk of a file or of every file under a directory."""
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


# ---------------------------------------------------------------------------------- process pool
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
