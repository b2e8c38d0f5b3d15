"""Zarr export: a Diffusion Policy replay buffer (``bomb-data export --format zarr``).

Layout (docs/formats/zarr.md), the one ``diffusion_policy/common/replay_buffer.py`` reads::

    OUT/                      zarr group, format 2 (Diffusion Policy pins zarr 2.x; zarr 3 reads it too)
      data/img                (N, S, S, 3) uint8   agentview camera, S = --image-size (default: as stored)
      data/wrist_img          (N, S, S, 3) uint8   wrist camera
      data/state              (N, 8) float32       eef position (3, m) + eef axis-angle (3, rad) + fingers (2, m)
      data/action             (N, 7) float32       canonical delta-EEF action, gripper -1 open / +1 closed
      meta/episode_ends       (E,) int64           cumulative end index of each episode
      .zattrs                 bomb_data: provenance; episodes: per-episode metadata (store order of export)

All episodes lie end to end along time. Image chunks hold one frame each, so no chunk is shared by
two episodes: worker processes write their episodes' frames straight into the arrays in parallel,
while this process writes the small low-dimensional arrays (chunked along time only, ~2 MB, as
Diffusion Policy's ``get_optimal_chunks`` does). The buffer is assembled under a temporary name and
renamed into place when complete.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bomb_data.rotations import state8

from ._sequence_layouts import carries_subtasks, step_language, task_table
from .exporter import WORKER, Exporter, init_worker, ordered_map, provenance, tree_bytes
from .frames import resize_frames

log = logging.getLogger(__name__)

LAYOUT = "diffusion_policy replay buffer"


#: data key -> store camera.
IMAGE_KEYS = {"img": "agentview", "wrist_img": "wrist"}
LOWDIM_CHUNK_BYTES = 2_000_000
BLOSC = {"cname": "zstd", "clevel": 3}

def _blosc(shuffle: bool) -> Any:
    import numcodecs

    return numcodecs.Blosc(cname=BLOSC["cname"], clevel=BLOSC["clevel"],
                           shuffle=numcodecs.Blosc.SHUFFLE if shuffle else numcodecs.Blosc.NOSHUFFLE)


def _init_worker(store_handle: str, out: str, image_size: int | None) -> None:
    import zarr

    init_worker(store_handle, image_size=image_size,
                arrays={k: zarr.open_array(Path(out) / "data" / k, mode="r+", zarr_format=2) for k in IMAGE_KEYS})


def state_vector(ep: Any) -> np.ndarray:
    """(T, 8) float32: eef position (m) + eef axis-angle (rad) + the two finger positions (m)."""
    return state8(ep["eef_pos"], ep["eef_quat"], ep["gripper_qpos"])


def drain_zarr_io() -> None:
    """Wait for the writes still running on zarr's I/O event loop.

    When one chunk write of an array assignment fails (a full disk), zarr raises at once while the
    assignment's other chunk writes go on in its I/O thread: they would write into the partial
    output while it is being removed, and at exit print a traceback per unfinished write.
    """
    import asyncio

    from zarr.core import sync as zsync

    loop = zsync.loop[0]
    if loop is None or loop.is_closed() or not loop.is_running():
        return

    async def wait_all() -> None:
        me = asyncio.current_task()
        while others := [t for t in asyncio.all_tasks() if t is not me and not t.done()]:
            await asyncio.gather(*others, return_exceptions=True)

    try:
        asyncio.run_coroutine_threadsafe(wait_all(), loop).result(timeout=120)
    except Exception as exc:  # the original error matters more than this cleanup's
        log.debug("zarr I/O not drained: %s", exc)


@contextlib.contextmanager
def _drained_on_error() -> Iterator[None]:
    """On an exception, let zarr's pending writes end before it propagates (and the output is removed)."""
    try:
        yield
    except BaseException:
        drain_zarr_io()
        raise


def _episode(job: tuple[int, int]) -> dict[str, Any]:
    """Worker: write episode ``i``'s frames at rows ``start:start+T``; return its low-dim arrays."""
    start, i = job
    ep = WORKER["store"].episode(i)
    try:
        for key, cam in IMAGE_KEYS.items():
            WORKER["arrays"][key][start:start + ep.length] = resize_frames(ep.images(cam), WORKER["image_size"])
    except BaseException:
        drain_zarr_io()
        raise
    return {"start": start, "length": ep.length, "state": state_vector(ep),
            "action": np.asarray(ep["action"], np.float32)} \
        | (dict(zip(("subtask_index", "texts"), step_language(ep))) if carries_subtasks(WORKER["store"]) else {})


class ZarrExporter(Exporter):
    """The Diffusion Policy replay buffer (module docstring)."""

    format = "zarr"
    what = "a Diffusion Policy replay buffer from bomb-data"

    def is_ours(self, path: Path) -> bool:
        """``path`` is a replay buffer this exporter wrote (its root attributes name our layout)."""
        try:
            attrs = json.loads((path / ".zattrs").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(attrs, dict) and isinstance(attrs.get("bomb_data"), dict) \
            and attrs["bomb_data"].get("layout") == LAYOUT

    def write(self, tmp: Path) -> dict[str, Any]:
        import zarr

        store, indices = self.store, self.indices
        lengths = [store.episode(i).length for i in indices]
        ends = np.cumsum(lengths, dtype=np.int64)
        N = int(ends[-1])
        H, W = self.hw
        with _drained_on_error():
            root = zarr.open_group(tmp, mode="w", zarr_format=2)
            data = root.require_group("data")
            meta = root.require_group("meta")
            for key in IMAGE_KEYS:
                data.create_array(key, shape=(N, H, W, 3), chunks=(1, H, W, 3), dtype="uint8",
                                  compressors=_blosc(shuffle=False))
            low = {}
            for key, dim in (("state", 8), ("action", 7)):
                rows = max(1, min(N, math.ceil(LOWDIM_CHUNK_BYTES / (4 * dim))))
                low[key] = data.create_array(key, shape=(N, dim), chunks=(rows, dim), dtype="float32",
                                             compressors=_blosc(shuffle=True))
            if seq := carries_subtasks(store):  # a sequence: per-step subtask and task index (_sequence_layouts)
                tasks = task_table(store, indices)
                task_of = {t: n for n, t in enumerate(tasks)}
                root.attrs["tasks"] = tasks
                for key, dt in (("subtask_index", "int32"), ("task_index", "int64")):
                    low[key] = data.create_array(key, shape=(N,), chunks=(max(1, min(N, LOWDIM_CHUNK_BYTES // 8)),),
                                                 dtype=dt, compressors=_blosc(shuffle=True))
            meta.create_array("episode_ends", shape=(len(ends),), dtype="int64", compressors=None)[:] = ends
            root.attrs["bomb_data"] = {**provenance(store), "layout": LAYOUT,
                                       "image_size": [H, W], "cameras": IMAGE_KEYS,
                                       "state": "eef_pos(3, m) + eef_axis_angle(3, rad) + finger positions(2, m)",
                                       "action": "canonical 7-D delta EEF, gripper -1 open / +1 closed"}
            root.attrs["episodes"] = [store.episodes[i] for i in indices]
            starts = [int(e - n) for e, n in zip(ends, lengths)]
            # low-dim rows are buffered and written in blocks of at least one chunk (few partial-chunk rewrites)
            buf: dict[str, list[np.ndarray]] = {k: [] for k in low}
            flushed = 0
            for r in ordered_map(_episode, list(zip(starts, indices)), self.workers, _init_worker,
                                 (store.handle, str(tmp), self.image_size)):
                if seq:
                    r["task_index"] = np.array([task_of[t] for t in r.pop("texts")], dtype=np.int64)
                for k in low:
                    buf[k].append(r[k])
                done = r["start"] + r["length"]
                rows = low["state"].chunks[0]
                if done - flushed >= rows or done == N:
                    for k, arr in low.items():
                        block = np.concatenate(buf[k], axis=0)
                        arr[flushed:done] = block
                        buf[k] = []
                    flushed = done
                self.advance(r["length"])
        return {"frames": N}

    def summarize(self, written: dict[str, Any]) -> dict[str, Any]:
        N, dt, out = written["frames"], self.seconds, self.out
        size = tree_bytes(out)
        log.info("zarr replay buffer: %d episodes, %d frames -> %s (%.1f s)", len(self.indices), N, out, dt)
        return {"format": "zarr", "layout": "diffusion_policy", "output": str(out), "episodes": len(self.indices),
                "frames": N, "bytes": size, "bytes_per_frame": size / max(N, 1), "seconds": round(dt, 3),
                "frames_per_second": N / dt if dt > 0 else None, "image_size": list(self.hw),
                "workers": max(1, int(self.workers))}


def export(store_path: Path, out: Path, *, overwrite: bool = False, workers: int = 1,
           progress: Callable[[int], None] | None = None, image_size: int | None = None,
           include_failures: bool = False, segment_subtasks: bool = False) -> dict[str, Any]:
    """Write the store's episodes as a Diffusion Policy zarr replay buffer at ``out``.

    Args:
        store_path: the canonical store.
        out: the replay buffer directory to create (``.zarr`` suffix customary, not required).
        overwrite: replace an existing ``out`` (otherwise ExportError).
        workers: processes that decode, resize and write the frames.
        progress: called with the number of frames just written.
        image_size: resize frames to ``image_size`` x ``image_size`` (None: as stored; Diffusion
            Policy's image configs commonly use 84 or 96).
        include_failures: also export episodes whose ``success`` is false.
        segment_subtasks: a sequence store: one episode per subtask (``bomb_data.store.segments``).

    Returns:
        JSON-serialisable summary: output, episodes, frames, bytes, seconds, frames/s.
    """
    return ZarrExporter(store_path, out, overwrite=overwrite, workers=max(1, int(workers)), progress=progress,
                        image_size=image_size, include_failures=include_failures,
                        segment_subtasks=segment_subtasks).run()
