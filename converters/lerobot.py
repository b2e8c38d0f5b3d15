"""LeRobot dataset export, format v3.0 (lerobot >= 0.4) and v2.1 (openpi, lerobot <= 0.3).

A native writer: the files of each layout are written with pyarrow (parquet, with the Hugging
Face ``datasets`` feature metadata) and PyAV (MP4), so neither torch nor lerobot is needed to
export. ``tests/test_export_lerobot.py`` loads the output with the real ``LeRobotDataset`` of each
version. Layouts (docs/formats/lerobot.md)::

    v3.0                                              v2.1
    meta/info.json                                    meta/info.json
    meta/stats.json                                   meta/episodes.jsonl
    meta/tasks.parquet                                meta/tasks.jsonl
    meta/episodes/chunk-000/file-000.parquet          meta/episodes_stats.jsonl
    data/chunk-000/file-000.parquet                   data/chunk-000/episode_000000.parquet
    videos/<key>/chunk-000/file-000.mp4               videos/chunk-000/<key>/episode_000000.mp4
    meta/bomb_data.json (both: our versions, config hash, source store, export options)

In v3.0 many episodes share one parquet / MP4 file (a new file when ``data_files_size_in_mb`` /
``video_files_size_in_mb`` would be exceeded, a new chunk directory every ``chunks_size`` files);
an episode's frames are located by ``dataset_from_index``/``dataset_to_index`` and its video by
``from_timestamp``/``to_timestamp`` in the episodes metadata. In v2.1 each episode has its own
files, ``chunks_size`` episodes per chunk directory.

Where each part lives: ``_lerobot_features`` (presets, features, Arrow schema, episode extras),
``_lerobot_jobs`` (the job pool, CPU pinning), ``_lerobot_video`` (one (episode, camera) job: read,
resize, encode, summarise), ``_lerobot_stats``, and one writer per format version with its finishing
step (task and stats files, its ``info.json`` fields): ``_lerobot_v30.V30Writer``,
``_lerobot_v21.V21Writer``. This module runs the export (:class:`LeRobotExporter`) and the episode loop.

The work is streamed episode by episode: worker processes read, resize, encode and summarise one
(episode, camera) at a time, a bounded number in flight; the parent writes parquet row groups and
appends MP4 segments. Everything is written into a hidden sibling directory that is renamed to
``out`` only when complete, with ``meta/info.json`` written last, so an interrupted export never
looks like a dataset.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from bomb_data.errors import ExportError
from bomb_data.schema import CAMERAS
from bomb_data.sequence.steps import episode_instructions, step_instructions

from . import _lerobot_stats as st
from . import _lerobot_video as vid
from ._lerobot_features import (  # noqa: F401  (presets and features: re-exported for tests and users)
    ACTION_NAMES,
    DEFAULT_FEATURES,
    EXTRA_TYPES,
    PRESETS,
    SOURCES,
    STATE_NAMES,
    build_features,
    column,
    data_schema,
    episode_extras,
    libero_state,
    quat_wxyz_to_axis_angle,
    resolve_preset,
)
from ._lerobot_jobs import PIN_ENV, Jobs  # noqa: F401  (PIN_ENV re-exported)
from ._lerobot_v21 import V21Writer
from ._lerobot_v30 import V30Writer
from .exporter import Exporter, init_worker

logger = logging.getLogger(__name__)

VERSIONS = ("v3.0", "v2.1")
#: The writer of each format version: its files, and its finishing step (tasks, stats, info fields).
WRITERS: dict[str, type[V30Writer] | type[V21Writer]] = {"v3.0": V30Writer, "v2.1": V21Writer}
ROBOT_TYPE = "panda"
CHUNKS_SIZE = 1000  # lerobot's DEFAULT_CHUNK_SIZE: files (v3.0) / episodes (v2.1) per chunk directory
DATA_FILES_SIZE_MB = 100  # lerobot v3.0 defaults
VIDEO_FILES_SIZE_MB = 200
_Jobs = Jobs  # earlier name


def export(
    store_path: Path,
    out: Path,
    *,
    overwrite: bool = False,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
    image_size: int | None = None,
    include_failures: bool = False,
    version: str = "v3.0",
    preset: str | Mapping[str, str] | Path | None = None,
    codec: str = "av1",
    video: bool = True,
    chunks_size: int = CHUNKS_SIZE,
    data_files_size_in_mb: float = DATA_FILES_SIZE_MB,
    video_files_size_in_mb: float = VIDEO_FILES_SIZE_MB,
    segment_subtasks: bool = False,
) -> dict[str, Any]:
    """Export a store as a LeRobot dataset.

    Args:
        store_path: the canonical store.
        out: output directory (the dataset root; load with ``LeRobotDataset(repo_id, root=out)``).
        overwrite: replace a non-empty ``out``.
        workers: processes for reading/encoding (1 = in this process).
        progress: called with the number of frames just written.
        image_size: resize frames to this square size (e.g. 224); None keeps the stored size.
        include_failures: also export failed episodes (default: successful ones only).
        version: 'v3.0' (lerobot >= 0.4) or 'v2.1' (openpi, lerobot <= 0.3).
        preset: 'lerobot', 'openpi', a {source: key} mapping or a .json/.yaml file of one; None
            means 'lerobot' for v3.0 and 'openpi' for v2.1.
        codec: 'av1' (libsvtav1, lerobot's default) or 'h264' (libx264).
        video: MP4 per camera; False stores the images in the parquet files (``dtype: image``).
        chunks_size, data_files_size_in_mb, video_files_size_in_mb: file sizing (lerobot's defaults).
        segment_subtasks: a sequence store: one episode per subtask (``bomb_data.store.segments``).

    Returns:
        Summary: format, version, preset keys, episodes, frames, bytes, video_bytes, seconds,
        frames_per_second (dataset frames), camera_frames_per_second (images: frames x cameras), output
        (the dataset directory, under the key the other exporters use).

    Raises:
        ExportError: bad option, non-empty ``out`` without overwrite, nothing to export.
        StoreError: missing or empty store.
    """
    return LeRobotExporter(store_path, out, overwrite=overwrite, workers=workers, progress=progress,
                           image_size=image_size, include_failures=include_failures, version=version, preset=preset,
                           codec=codec, video=video, chunks_size=chunks_size,
                           data_files_size_in_mb=data_files_size_in_mb,
                           video_files_size_in_mb=video_files_size_in_mb,
                           segment_subtasks=segment_subtasks).run()


WHAT = "a LeRobot dataset from bomb-data"


def _is_ours(d: Path) -> bool:
    """``d`` is a LeRobot dataset this exporter wrote (``meta/info.json`` and our ``meta/bomb_data.json``)."""
    return (d / "meta" / "info.json").is_file() and (d / "meta" / "bomb_data.json").is_file()


class LeRobotExporter(Exporter):
    """A LeRobot dataset, format v3.0 or v2.1 (module docstring)."""

    format = "lerobot"
    what = WHAT

    def __init__(self, *args: Any, version: str = "v3.0", preset: str | Mapping[str, str] | Path | None = None,
                 codec: str = "av1", video: bool = True, chunks_size: int = CHUNKS_SIZE,
                 data_files_size_in_mb: float = DATA_FILES_SIZE_MB,
                 video_files_size_in_mb: float = VIDEO_FILES_SIZE_MB, **kw: Any):
        super().__init__(*args, **kw)
        self.version, self.preset, self.codec, self.video = version, preset, codec, video
        self.chunks_size, self.data_mb, self.video_mb = chunks_size, data_files_size_in_mb, video_files_size_in_mb

    def check_options(self) -> None:
        if self.version not in VERSIONS:
            raise ExportError(f"unknown lerobot version {self.version!r}; expected one of {list(VERSIONS)}")
        if self.codec not in vid.CODECS:
            raise ExportError(f"unknown codec {self.codec!r}; expected one of {sorted(vid.CODECS)}")
        if self.workers < 1:
            raise ExportError(f"workers must be >= 1, got {self.workers}")
        self.keys = resolve_preset(self.preset, self.version)

    def check_frames(self, h: int, w: int) -> None:
        # yuv420p halves both sides for the chroma planes; a 2-pixel side leaves 1x1 chroma, which fails
        if self.video and (h % 2 or w % 2 or min(h, w) < 4):
            raise ExportError(f"video frames need even sizes of at least 4 for {vid.PIX_FMT}; got {h}x{w} "
                              "(use --image-size)")

    def prepare(self) -> None:
        fps_f = self.store.fps
        if abs(fps_f - round(fps_f)) > 1e-9:
            raise ExportError(f"LeRobot needs an integer fps; the store runs at {fps_f} Hz")
        self.fps = int(round(fps_f))

    def is_ours(self, path: Path) -> bool:
        return _is_ours(path)

    def write(self, tmp: Path) -> dict[str, Any]:
        (tmp / "meta").mkdir()
        if self.workers == 1:
            init_worker(self.store.handle)  # the camera jobs run in threads of this process
        jobs = Jobs(self.workers)
        try:
            summary = _write(self.store, self.indices, tmp, jobs, keys=self.keys, version=self.version, fps=self.fps,
                             hw=self.hw, image_size=self.image_size, codec=self.codec, video=self.video,
                             workers=self.workers, progress=self.progress, chunks_size=self.chunks_size,
                             data_mb=self.data_mb, video_mb=self.video_mb)
        except BaseException:
            jobs.close(cancel=True)
            raise
        jobs.close()
        return summary

    def summarize(self, written: dict[str, Any]) -> dict[str, Any]:
        summary, out = written, self.out
        summary.update(output=str(out), seconds=round(self.seconds, 3))
        # the key the other exporters use; dataset frames (rows), each carrying one image per camera
        summary["frames_per_second"] = round(summary["frames"] / max(summary["seconds"], 1e-9), 1)
        summary["camera_frames_per_second"] = round(len(CAMERAS) * summary["frames_per_second"], 1)
        logger.info("lerobot %s export: %d episodes, %d frames in %.1f s → %s", self.version, summary["episodes"],
                    summary["frames"], summary["seconds"], out)
        return summary


def _write(store: Any, indices: list[int], root: Path, jobs: Jobs, *, keys: dict[str, str], version: str,
           fps: int, hw: tuple[int, int], image_size: int | None, codec: str, video: bool, workers: int,
           progress: Callable[[int], None] | None, chunks_size: int, data_mb: float, video_mb: float,
           ) -> dict[str, Any]:
    features = build_features(keys, hw, video)
    schema = data_schema(features)
    seg_dir = root / ".segments"
    seg_dir.mkdir()
    threads = Jobs.encoder_threads(workers)

    # task index by first appearance, over the exported episodes (metadata only: no arrays read)
    tasks: list[str] = []
    task_index: dict[str, int] = {}
    for i in indices:
        for t in episode_instructions(store.episodes[i]):  # a sequence: one task per subtask
            if t not in task_index:
                task_index[t] = len(tasks)
                tasks.append(t)

    def submit(k: int) -> dict[str, Any]:
        s = indices[k]
        return {cam: jobs.submit(vid.CameraJob(
            store=store.handle, episode=s, camera=cam, version=version, image_size=image_size, fps=fps,
            codec=codec, segment=str(seg_dir / f"{k:06d}_{cam}.mp4") if video else None, threads=threads))
            for cam in CAMERAS}

    agg = st.StatsAggregator()
    writer = WRITERS[version](root, keys, features, schema, fps=fps, chunks_size=chunks_size, data_mb=data_mb,
                              video_mb=video_mb)
    window = 2 * workers
    pending: deque[tuple[int, dict[str, Any]]] = deque()
    nxt = 0
    frames_total = 0
    bytes_img = 0
    while pending or nxt < len(indices):
        while nxt < len(indices) and len(pending) < window:
            pending.append((nxt, submit(nxt)))
            nxt += 1
        k, futs = pending.popleft()
        res = {cam: f.result() for cam, f in futs.items()}
        ep = store.episode(indices[k])
        T = ep.length
        state = libero_state(ep["eef_pos"], ep["eef_quat"], ep["gripper_qpos"])
        action = np.asarray(ep["action"], dtype=np.float32)
        g0 = frames_total
        cols: dict[str, Any] = {}
        if not video:
            for cam in CAMERAS:
                cols[keys[cam]] = [{"bytes": b, "path": None} for b in res[cam]["images"]]
        frame_index = np.arange(T, dtype=np.int64)
        frame_task = np.array([task_index[t] for t in step_instructions(ep)], dtype=np.int64)
        cols[keys["state"]] = state
        cols[keys["action"]] = action
        cols["timestamp"] = (frame_index / fps).astype(np.float32)
        cols["frame_index"] = frame_index
        cols["episode_index"] = np.full(T, k, dtype=np.int64)
        cols["index"] = np.arange(g0, g0 + T, dtype=np.int64)
        cols["task_index"] = frame_task
        table = pa.table({name: column(cols[name], schema.field(name).type) for name in schema.names}, schema=schema)

        ep_stats: dict[str, st.Stats] = {keys[cam]: res[cam]["stats"] for cam in CAMERAS}
        for name in (keys["state"], keys["action"], *DEFAULT_FEATURES):
            ep_stats[name] = st.vector_stats(np.asarray(cols[name]), version)
        agg.add(ep_stats)
        segments = {keys[cam]: (Path(seg_dir / f"{k:06d}_{cam}.mp4"), T) for cam in CAMERAS} if video else {}
        ep_tasks = [tasks[i] for i in dict.fromkeys(frame_task.tolist())]
        writer.add_episode(k, T, ep_tasks, table, ep_stats, segments, episode_extras(ep.meta, indices[k]), g0)
        for p, _ in segments.values():
            p.unlink(missing_ok=True)
        bytes_img += sum(res[cam]["bytes"] for cam in CAMERAS)
        frames_total += T
        logger.info("episode %d (store %d, seed %s): %d frames", k, indices[k], ep.meta.get("seed"), T)
        if progress is not None:
            progress(T)
    writer.close()
    shutil.rmtree(seg_dir)

    stats = agg.result()
    n_eps = len(indices)
    own = writer.finish(tasks, stats, n_eps, video)  # the version's task and stats files, its info fields
    for cam in CAMERAS:
        if video:
            features[keys[cam]]["info"] = writer.video_info[keys[cam]]
    info: dict[str, Any] = {
        "codebase_version": version,
        "robot_type": ROBOT_TYPE,
        "total_episodes": n_eps,
        "total_frames": frames_total,
        "total_tasks": len(tasks),
    }
    info.update(own)
    info.update(fps=fps, splits={"train": f"0:{n_eps}"}, data_path=writer.DATA_PATH,
                video_path=writer.VIDEO_PATH if video else None, features=features)
    _write_provenance(store, root, indices, keys=keys, version=version, codec=codec, video=video,
                      image_size=image_size, segment_subtasks="segmented" in store.description)
    # info.json last: without it the directory is not a dataset
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    total_bytes = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    return {"format": "lerobot", "version": version, "keys": keys, "episodes": n_eps, "frames": frames_total,
            "tasks": len(tasks), "bytes": total_bytes, "image_bytes": bytes_img, "video": video,
            "codec": codec if video else None}


def _write_provenance(store: Any, root: Path, indices: list[int], **options: Any) -> None:
    """``meta/bomb_data.json``: where the dataset came from (versions, config hash, options, splits)."""
    from bomb_data import __version__ as bomb_version

    desc = store.description
    splits: dict[str, list[int]] = {}
    for k, i in enumerate(indices):
        splits.setdefault(str(store.episodes[i]["split"]), []).append(k)
    doc = {
        "bomb_data_version": bomb_version,
        "store": str(Path(store.root).resolve()),
        "config_hash": desc.get("config_hash"),
        "versions": desc.get("versions"),
        "schema_version": desc.get("schema_version"),
        "export": {**options, "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        "state_names": list(STATE_NAMES),
        "action_names": list(ACTION_NAMES),
        "gripper_convention": "action[6]: -1 open, +1 closed; state[6:8]: finger positions, m (0 = closed)",
        "splits": splits,
    }
    (root / "meta" / "bomb_data.json").write_text(json.dumps(doc, indent=2, default=str))
