"""What the three HDF5 layouts share (converters/hdf5.py; ``_hdf5_robomimic``, ``_hdf5_aloha``,
``_hdf5_robotwin``).

Nothing here imports mujoco or torch: the exporters read only the store (bomb_data.store).

* gripper conversions used by the layouts (``gripper_open01``, ``gripper_command01``; orientations:
  ``bomb_data.rotations.quat_wxyz_to_axis_angle``, the one convention of every export),
* episode metadata as HDF5 attributes (``meta_attrs``),
* HDF5 writes that survive a full disk (``H5Writer``),
* chunked, compressed datasets (``write_lowdim``, ``images_payload``/``write_images``: gzip chunks
  compressed in the worker processes),
* :class:`H5Exporter`, the part of :class:`converters.exporter.Exporter` the layouts share (options,
  worker start, summary).

The pieces the zarr exporter uses too (``ordered_map``, ``provenance``, ``tree_bytes``, the resize)
live in converters/exporter.py and converters/frames.py; they are re-exported here for earlier imports.
"""

from __future__ import annotations

import io
import json
import logging
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bomb_data.errors import ExportError

from .exporter import (  # noqa: F401  (ordered_map, provenance, tree_bytes: re-exported for earlier imports)
    Exporter,
    init_worker,
    ordered_map,
    provenance,
    tree_bytes,
)
from .frames import resize_frames  # noqa: F401  (the one resize, re-exported for earlier imports)

log = logging.getLogger("converters.hdf5")

COMPRESSIONS = ("gzip", "lzf")
#: Chosen by measurement (benchmarks/bench_export_hdf5.py, docs/formats/hdf5.md): gzip level 4,
#: compressed in the worker processes (parallel), against lzf, which only h5py can write (serial).
DEFAULT_COMPRESSION = "gzip"
GZIP_LEVEL = 4

#: Finger travel of the Panda gripper (schema: 0 = closed, 0.04 m = fully open).
FINGER_OPEN_M = 0.04


# ------------------------------------------------------------------------------------ conversions
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


# ------------------------------------------------------------------------------------ datasets
def h5py_module() -> Any:
    """h5py, or one ExportError line saying how to get it."""
    try:
        import h5py
    except ImportError as exc:  # core dependency, but say what to do if a slim install lacks it
        raise ExportError("the hdf5 export needs h5py: `pip install h5py`") from exc
    return h5py


def compress_kw(compression: str, shuffle: bool) -> dict[str, Any]:
    if compression == "gzip":
        return {"compression": "gzip", "compression_opts": GZIP_LEVEL, "shuffle": shuffle}
    return {"compression": "lzf", "shuffle": shuffle}


def write_lowdim(group: Any, name: str, arr: NDArray[Any], compression: str) -> None:
    """A small per-step array as one chunk (the whole episode), compressed, float arrays shuffled."""
    arr = np.ascontiguousarray(arr)
    group.create_dataset(name, data=arr, chunks=arr.shape if arr.size else None,
                         **compress_kw(compression, shuffle=arr.dtype.kind == "f" and arr.ndim > 0))


def images_payload(frames: NDArray[np.uint8], compression: str) -> dict[str, Any]:
    """Frames for an image dataset chunked one frame per chunk; gzip chunks compressed here (in a worker)."""
    if compression == "gzip":
        return {"shape": frames.shape, "chunks": [zlib.compress(f.tobytes(), GZIP_LEVEL) for f in frames]}
    return {"shape": frames.shape, "array": frames}


def write_images(group: Any, name: str, payload: dict[str, Any], compression: str) -> None:
    shape = tuple(payload["shape"])
    chunks = (1, *shape[1:])
    if "array" in payload:
        group.create_dataset(name, data=payload["array"], chunks=chunks, **compress_kw(compression, False))
        return
    # Chunks were deflated by the workers: write them as they are (h5py's gzip filter is a zlib stream).
    ds = group.create_dataset(name, shape=shape, dtype=np.uint8, chunks=chunks, **compress_kw("gzip", False))
    for t, blob in enumerate(payload["chunks"]):
        ds.id.write_direct_chunk((t, 0, 0, 0), blob)


# ------------------------------------------------------------------------------------- exporter
class H5Exporter(Exporter):
    """What the three layouts share: options, worker start, summary (each layout: ``what``, ``write``)."""

    format = "hdf5"
    layout: str = ""

    def __init__(self, *args: Any, compression: str = DEFAULT_COMPRESSION, **kw: Any):
        super().__init__(*args, **kw)
        self.compression = compression

    def check_options(self) -> None:
        if self.compression not in COMPRESSIONS:
            raise ExportError(f"unknown hdf5 compression {self.compression!r}; "
                              f"expected one of {', '.join(COMPRESSIONS)}")

    @property
    def opts(self) -> dict[str, Any]:
        """The options each worker reads (``WORKER["opts"]``)."""
        return {"image_size": self.image_size, "compression": self.compression, "fps": self.store.fps}

    def map_episodes(self, fn: Callable[[Any], dict[str, Any]], jobs: list[Any]) -> Any:
        """``fn`` over ``jobs`` in order, in the workers (:func:`ordered_map`)."""
        return ordered_map(fn, jobs, max(1, int(self.workers)), init_h5_worker, (self.store.handle, self.opts))

    def summarize(self, written: dict[str, Any]) -> dict[str, Any]:
        final, frames, dt = self.final, written["frames"], self.seconds
        size = tree_bytes(final)
        log.info("hdf5 %s export: %d episodes, %d frames -> %s (%.1f s)", self.layout, len(self.indices), frames,
                 final, dt)
        return {"format": "hdf5", "layout": self.layout, "output": str(final), "episodes": len(self.indices),
                "frames": frames, "bytes": size, "bytes_per_frame": size / max(frames, 1), "seconds": round(dt, 3),
                "frames_per_second": frames / dt if dt > 0 else None, "compression": self.compression,
                "image_size": list(self.hw), "workers": self.workers}


def init_h5_worker(store_handle: str, opts: dict[str, Any]) -> None:
    """Pool initializer of the layouts: the store and the options (``WORKER["opts"]``)."""
    init_worker(store_handle, opts=opts)
