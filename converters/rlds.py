"""RLDS export: a store as the TFDS dataset ``bomb_go`` that OpenVLA, OpenVLA-OFT, SpatialVLA and Octo read.

``export(store, out)`` writes::

    out/bomb_go/<version>/bomb_go-<split>.tfrecord-XXXXX-of-YYYYY   (TFRecord shards)
    out/bomb_go/<version>/features.json, dataset_info.json          (what TFDS reads)
    out/openvla_registration.py                                      (config, transform, mixture for OpenVLA)
    out/bomb_data_export.json                                        (summary and provenance)

The records are written natively (``converters._rlds_tfrecord``: protobuf and TFRecord framing by
hand, CRC-32C from google-crc32c), so the export runs in the core install without tensorflow and
scales over worker processes, each streaming its own shards. The same episodes are produced by the
TFDS builder ``builders/bomb_go`` (shared spec ``converters._rlds_spec``); the tests load both with
tensorflow-datasets 4.9.3 and the current release. Everything is written into a hidden sibling
directory and renamed into place at the end, and ``dataset_info.json`` (TFDS's mark of a prepared
dataset) is written last, so an interrupted export never leaves a directory TFDS loads as complete.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, wait
from pathlib import Path
from queue import Empty
from typing import Any

import numpy as np

from bomb_data.errors import ExportError
from bomb_data.schema import CAMERAS
from bomb_data.store import EpisodeStore

from . import check_replaceable, process_pool
from ._rlds_registration import registration_source
from ._rlds_spec import (
    ACTION_SPACES,
    DATASET_NAME,
    VERSION,
    description_text,
    episode_arrays,
    feature_specs,
    heldout_cells,
    plan_splits,
    quat_wxyz_to_axis_angle,
)
from ._rlds_tfrecord import encode_example, shard_filename, write_metadata, write_record
from .exporter import WORKER, Exporter, init_worker, worker_store

__all__ = ["DATASET_NAME", "VERSION", "export", "quat_wxyz_to_axis_angle"]
quat_wxyz_to_axisangle_robosuite = quat_wxyz_to_axis_angle  # its earlier name here, kept for existing imports

log = logging.getLogger(__name__)

REGISTRATION_FILE = "openvla_registration.py"
SUMMARY_FILE = "bomb_data_export.json"
SHARD_TARGET_BYTES = 200 * 1024 * 1024


# ------------------------------------------------------------------------------------ validation
def _existing_versions(out: Path) -> list[str]:
    d = out / DATASET_NAME
    return sorted(p.name for p in d.iterdir() if p.is_dir()) if d.is_dir() else []


#: Everything an RLDS export puts in its --out; a directory holding anything else is not ours to replace.
_OURS = {DATASET_NAME, REGISTRATION_FILE, SUMMARY_FILE}


def _check_out(out: Path, overwrite: bool, warn: bool = True) -> None:
    """Refuse an ``out`` we must not replace (:func:`converters.check_replaceable`), and say when an
    earlier export holds another version of the dataset; one clear line each."""
    versions = _existing_versions(out) if out.is_dir() else []
    if versions:
        # e.g. --out is a TFDS data root that also holds other datasets: replacing it would delete them
        extra = sorted(p.name for p in out.iterdir() if p.name not in _OURS)
        if extra:
            raise ExportError(f"--out {out} holds other entries besides the {DATASET_NAME} export "
                              f"({', '.join(extra[:3])}{', ...' if len(extra) > 3 else ''}); refusing to replace it: "
                              f"export to a directory of its own")
    other = [v for v in versions if v != VERSION]
    if other and not overwrite:
        raise ExportError(f"--out {out} holds {DATASET_NAME} version {', '.join(other)}; this bomb-data writes "
                          f"version {VERSION}: pass --overwrite to replace it or choose another --out")
    check_replaceable(out, overwrite, f"an RLDS export of {DATASET_NAME}",
                      lambda d: bool(versions) or ((d / SUMMARY_FILE).is_file()
                                                   and all(p.name in _OURS for p in d.iterdir())))
    if other and warn:
        log.warning("replacing %s, which holds %s version(s) %s, with version %s", out, DATASET_NAME,
                    ", ".join(other), VERSION)


# ---------------------------------------------------------------------------------------- shards
def _plan_shards(store: EpisodeStore, groups: dict[str, list[int]], workers: int,
                 image_size: int | None) -> list[dict[str, Any]]:
    """Contiguous runs of episodes per split, each one TFRecord shard of at most ~SHARD_TARGET_BYTES."""
    tasks = []
    for split, idx in groups.items():
        lengths = [store.episode(i).length for i in idx]
        first = store.episode(idx[0])
        per_step = sum(len(b) for cam in CAMERAS for b in first.jpeg(cam)) / max(first.length, 1)
        if image_size is not None:  # re-encoded size scales with the pixel count
            h, w, _ = store.image_shape
            per_step *= (image_size * image_size) / float(h * w)
        est = (per_step + 200.0) * sum(lengths)
        n_shards = max(math.ceil(est / SHARD_TARGET_BYTES), min(workers, len(idx)), 1)
        n_shards = min(n_shards, len(idx))
        for s, part in enumerate(np.array_split(np.asarray(idx), n_shards)):
            tasks.append({"split": split, "shard": s, "num_shards": n_shards, "indices": [int(i) for i in part]})
    return tasks


def _init_worker(queue: Any) -> None:
    init_worker(queue=queue)  # the store is opened by the first shard (worker_store)


def _write_shard(task: dict[str, Any], store_path: str, data_dir: str, action_space: str,
                 image_size: int | None, image_hw: tuple[int, int],
                 progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Write one shard file (one episode in memory at a time); returns its example count and bytes."""
    store = worker_store(store_path)
    specs = feature_specs(image_hw, action_space)
    queue = WORKER.get("queue")
    path = Path(data_dir) / shard_filename(task["split"], task["shard"], task["num_shards"])
    nbytes = frames = 0
    with open(path, "wb", buffering=4 * 1024 * 1024) as f:
        for i in task["indices"]:
            ep = store.episode(i)
            values = episode_arrays(ep, store_name=store.root.name, action_space=action_space, image_size=image_size)
            nbytes += write_record(f, encode_example(specs, values))
            frames += ep.length
            log.debug("wrote episode %d (%d steps) to %s", i, ep.length, path.name)
            if progress is not None:
                progress(ep.length)
            elif queue is not None:
                queue.put(ep.length)
    return {**task, "num_examples": len(task["indices"]), "num_bytes": nbytes, "frames": frames}


def _run_tasks(tasks: list[dict[str, Any]], workers: int, progress: Callable[[int], None] | None,
               **kw: Any) -> list[dict[str, Any]]:
    if workers <= 1 or len(tasks) <= 1:
        init_worker()  # no queue: progress is reported directly
        return [_write_shard(t, progress=progress, **kw) for t in tasks]
    # fork is cheapest (workers inherit the imported modules); but a process that has started
    # tensorflow's runtime threads must not fork, so then spawn fresh interpreters instead
    ctx = mp.get_context("spawn" if "tensorflow" in sys.modules or os.name != "posix" else "fork")
    queue = ctx.Queue()
    results = []
    with process_pool(min(workers, len(tasks)), _init_worker, (queue,), context=ctx) as pool:
        pending = {pool.submit(_write_shard, t, **kw) for t in tasks}
        try:
            while pending:
                done, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
                _drain(queue, progress)
                for fut in done:
                    results.append(fut.result())
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
        _drain(queue, progress)
    return results


def _drain(queue: Any, progress: Callable[[int], None] | None) -> None:
    while True:
        try:
            n = queue.get_nowait()
        except Empty:
            return
        if progress is not None:
            progress(int(n))


# ---------------------------------------------------------------------------------------- export
def export(store_path: Path, out: Path, *, overwrite: bool = False, workers: int = 1,
           progress: Callable[[int], None] | None = None, image_size: int | None = None,
           include_failures: bool = False, action_space: str = "canonical",
           segment_subtasks: bool = False) -> dict[str, Any]:
    """Export a store as the RLDS/TFDS dataset ``bomb_go`` (docs/formats/rlds.md).

    Args:
        store_path: the bomb-data store to read.
        out: output directory; the dataset goes to ``out/bomb_go/<version>/``, the OpenVLA registration
            snippet to ``out/openvla_registration.py``.
        overwrite: replace an existing export at ``out`` (never a directory that is not an RLDS export).
        workers: processes writing shards in parallel.
        progress: called with the number of frames (steps) just written.
        image_size: resize both cameras to SIZE x SIZE (re-encoded JPEG); None (or the stored size)
            passes the stored JPEG files through unchanged.
        include_failures: also export episodes flagged as failed (``is_terminal`` False, reward 0).
        action_space: ``canonical`` (7-D delta EEF, gripper -1 open/+1 closed) or ``bomb4`` ([dx, dy, dz, g]).
        segment_subtasks: a sequence store: one episode per subtask (``bomb_data.store.segments``).

    Returns:
        JSON-serialisable summary: episodes, frames, splits, bytes, seconds, frames_per_second, paths.

    Raises:
        StoreError: missing, damaged or empty store.
        ExportError: bad option, nothing to export, or an ``out`` that must not be replaced.
    """
    return RldsExporter(store_path, out, overwrite=overwrite, workers=workers, progress=progress,
                        image_size=image_size, include_failures=include_failures, action_space=action_space,
                        segment_subtasks=segment_subtasks).run()


class RldsExporter(Exporter):
    """The TFDS dataset ``bomb_go`` with its OpenVLA registration (module docstring)."""

    format = "rlds"
    what = f"an RLDS export of {DATASET_NAME}"

    def __init__(self, *args: Any, action_space: str = "canonical", **kw: Any):
        super().__init__(*args, **kw)
        self.action_space = action_space

    def check_options(self) -> None:
        if self.action_space not in ACTION_SPACES:
            raise ExportError(f"action_space: expected one of {list(ACTION_SPACES)}, found {self.action_space!r}")

    def prepare(self) -> None:
        if self.image_size is not None and (self.image_size, self.image_size) == tuple(self.store.image_shape[:2]):
            self.image_size = None  # already that size: pass the JPEG files through

    def select(self) -> list[int]:
        self.groups = plan_splits(self.store, self.include_failures)
        if not self.groups:
            raise ExportError(f"{self.store_path} has no successful episode to export "
                              f"(pass --include-failures to export failed ones)")
        return [i for idx in self.groups.values() for i in idx]

    def check_out(self, final_check: bool = False) -> None:
        _check_out(self.out, self.overwrite, warn=not final_check)

    def write(self, tmp: Path) -> dict[str, Any]:
        store, store_path, groups, workers = self.store, self.store_path, self.groups, self.workers
        action_space, image_size, image_hw, out = self.action_space, self.image_size, self.hw, self.out
        data_dir = tmp / DATASET_NAME / VERSION
        data_dir.mkdir(parents=True)
        tasks = _plan_shards(store, groups, workers, image_size)
        log.info("exporting %d episodes of %s in %d shards with %d worker(s)",
                 sum(len(v) for v in groups.values()), store_path, len(tasks), workers)
        results = _run_tasks(tasks, workers, self.progress, store_path=store.handle, data_dir=str(data_dir),
                             action_space=action_space, image_size=image_size, image_hw=image_hw)
        splits: dict[str, dict[str, Any]] = {}
        for name in groups:
            rs = sorted((r for r in results if r["split"] == name), key=lambda r: r["shard"])
            splits[name] = {"shard_lengths": [r["num_examples"] for r in rs],
                            "num_bytes": sum(r["num_bytes"] for r in rs),
                            "episodes": sum(r["num_examples"] for r in rs), "frames": sum(r["frames"] for r in rs),
                            "shards": len(rs)}
        desc = description_text(store, action_space=action_space, image_hw=image_hw,
                                include_failures=self.include_failures)
        (tmp / REGISTRATION_FILE).write_text(registration_source(action_space), encoding="utf-8")
        write_metadata(data_dir, feature_specs(image_hw, action_space), splits, desc,
                       module_name="builders.bomb_go.bomb_go_dataset_builder")
        seconds = time.perf_counter() - self.started
        frames = sum(s["frames"] for s in splits.values())
        summary: dict[str, Any] = {
            "format": "rlds", "dataset": DATASET_NAME, "version": VERSION, "output": str(out),
            "data_dir": str(out / DATASET_NAME / VERSION), "registration": str(out / REGISTRATION_FILE),
            "store": str(store_path), "store_config_hash": store.description.get("config_hash"),
            "episodes": sum(s["episodes"] for s in splits.values()), "frames": frames,
            "splits": {k: {kk: v[kk] for kk in ("episodes", "frames", "shards", "num_bytes")}
                       for k, v in splits.items()},
            "bytes": sum(s["num_bytes"] for s in splits.values()), "seconds": round(seconds, 3),
            "frames_per_second": round(frames / seconds, 1) if seconds > 0 else None,
            "workers": workers, "image_size": list(image_hw), "jpeg_pass_through": image_size is None,
            "action_space": action_space, "include_failures": self.include_failures,
            "segment_subtasks": self.segment_subtasks,
            "heldout_splits": heldout_cells(store, self.include_failures),
        }
        (tmp / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
        return summary

    def summarize(self, written: dict[str, Any]) -> dict[str, Any]:
        log.info("wrote %s: %d episodes, %d frames in %.1f s", self.out, written["episodes"], written["frames"],
                 written["seconds"])
        return written
