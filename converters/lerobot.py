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

The work is streamed episode by episode: worker processes read, resize, encode and summarise one
(episode, camera) at a time, a bounded number in flight; the parent writes parquet row groups and
appends MP4 segments. Everything is written into a hidden sibling directory that is renamed to
``out`` only when complete, with ``meta/info.json`` written last, so an interrupted export never
looks like a dataset.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bomb_data._cpus import usable_cpus
from bomb_data.errors import ExportError
from bomb_data.schema import CAMERAS, FEATURES_BY_KEY
from bomb_data.sequence.steps import episode_instructions, step_instructions

from . import _lerobot_stats as st
from . import _lerobot_video as vid
from . import process_pool
from .exporter import Exporter, init_worker

logger = logging.getLogger(__name__)

VERSIONS = ("v3.0", "v2.1")
ROBOT_TYPE = "panda"
CHUNKS_SIZE = 1000  # lerobot's DEFAULT_CHUNK_SIZE: files (v3.0) / episodes (v2.1) per chunk directory
DATA_FILES_SIZE_MB = 100  # lerobot v3.0 defaults
VIDEO_FILES_SIZE_MB = 200

#: Feature names of each preset: our source → the LeRobot key. Sources: the two cameras, the 8-D
#: state (:func:`libero_state`) and the canonical 7-D action.
PRESETS: dict[str, dict[str, str]] = {
    "lerobot": {"agentview": "observation.images.agentview", "wrist": "observation.images.wrist",
                "state": "observation.state", "action": "action"},
    "openpi": {"agentview": "image", "wrist": "wrist_image", "state": "state", "action": "actions"},
}
SOURCES = (*CAMERAS, "state", "action")

STATE_NAMES = ("eef_x", "eef_y", "eef_z", "eef_rx", "eef_ry", "eef_rz", "finger_left", "finger_right")
ACTION_NAMES = FEATURES_BY_KEY["action"].names

DEFAULT_FEATURES: dict[str, dict[str, Any]] = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}


# ------------------------------------------------------------------------------ state derivation
# The 8-D state of openpi's LIBERO recipe (and our lerobot preset): [x, y, z, rx, ry, rz, finger_left,
# finger_right] (STATE_NAMES), the one definition the environment also observes (bomb_data.rotations).
from bomb_data.rotations import quat_wxyz_to_axis_angle  # noqa: E402,F401  (re-exported for tests and users)
from bomb_data.rotations import state8 as libero_state  # noqa: E402

# -------------------------------------------------------------------------------------- options
_KEY_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")


def resolve_preset(preset: str | Mapping[str, str] | Path | None, version: str) -> dict[str, str]:
    """The source → key mapping of ``preset``: a name in PRESETS, a mapping, or a JSON/YAML file.

    A mapping may override part of the default preset of ``version``; unknown sources, empty or
    duplicate keys raise ExportError.
    """
    base = PRESETS["lerobot" if version == "v3.0" else "openpi"]
    if preset is None:
        return dict(base)
    if isinstance(preset, str) and not preset.lower().endswith((".json", ".yaml", ".yml")):
        if preset not in PRESETS:
            raise ExportError(f"unknown lerobot preset {preset!r}; expected one of {sorted(PRESETS)} "
                              "or a mapping / .json / .yaml file of {source: key}")
        return dict(PRESETS[preset])
    if isinstance(preset, (str, Path)):
        p = Path(preset)
        if not p.is_file():
            raise ExportError(f"lerobot preset file {p} does not exist")
        import yaml

        from bomb_data._yaml import MAX_YAML_BYTES, parse_yaml

        try:
            if p.stat().st_size > MAX_YAML_BYTES:
                raise ValueError(f"{p.stat().st_size} bytes, more than the {MAX_YAML_BYTES} a preset may have")
            text = p.read_text(encoding="utf-8")
            loaded = json.loads(text) if p.suffix.lower() == ".json" else parse_yaml(text)
        except RecursionError:
            raise ExportError(f"lerobot preset file {p} cannot be read: nested too deeply") from None
        except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ExportError(f"lerobot preset file {p} cannot be read: {reason}") from None
        if not isinstance(loaded, dict):
            raise ExportError(f"lerobot preset file {p} must hold a mapping of source -> key")
        preset = loaded
    unknown = sorted(set(map(str, preset)) - set(SOURCES))
    if unknown:
        raise ExportError(f"lerobot preset has unknown key(s) {unknown}; expected keys among {list(SOURCES)}")
    # a feature key names files and directories (videos/<key>/...): plain dotted names only
    bad = [v for v in preset.values() if not isinstance(v, str) or not _KEY_RE.fullmatch(v) or ".." in v]
    if bad:
        raise ExportError(f"lerobot preset maps to invalid feature key(s) {bad}: a key is letters, digits, '_', "
                          "'-' and single dots (e.g. observation.images.front)")
    out = {**base, **{k: str(v) for k, v in preset.items()}}
    keys = list(out.values())
    if any(not k for k in keys) or len(set(keys)) != len(keys):
        raise ExportError(f"lerobot preset maps to empty or duplicate feature keys: {out}")
    clash = sorted(set(keys) & set(DEFAULT_FEATURES))
    if clash:
        raise ExportError(f"lerobot preset uses reserved feature key(s) {clash}")
    return out


# ------------------------------------------------------------------------------------- features
def build_features(keys: Mapping[str, str], hw: tuple[int, int], video: bool, vector_dtype: str = "float32",
                   ) -> dict[str, dict[str, Any]]:
    """The LeRobot ``features`` of an export (video ``info`` blocks are added once encoded)."""
    feats: dict[str, dict[str, Any]] = {}
    for cam in CAMERAS:
        feats[keys[cam]] = {"dtype": "video" if video else "image", "shape": [hw[0], hw[1], 3],
                            "names": ["height", "width", "channels" if video else "channel"]}
    feats[keys["state"]] = {"dtype": vector_dtype, "shape": [len(STATE_NAMES)], "names": list(STATE_NAMES)}
    feats[keys["action"]] = {"dtype": vector_dtype, "shape": [len(ACTION_NAMES)], "names": list(ACTION_NAMES)}
    feats.update({k: dict(v) for k, v in DEFAULT_FEATURES.items()})
    return feats


def _arrow_type(ft: Mapping[str, Any]) -> pa.DataType:
    if ft["dtype"] == "image":
        return pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    base = pa.from_numpy_dtype(np.dtype(ft["dtype"]))
    return base if list(ft["shape"]) == [1] else pa.list_(base, int(ft["shape"][0]))


def _hf_feature(ft: Mapping[str, Any]) -> dict[str, Any]:
    """The ``datasets`` feature JSON lerobot's files carry (``Sequence`` is read by datasets 2 to 4)."""
    if ft["dtype"] == "image":
        return {"_type": "Image"}
    value = {"dtype": ft["dtype"], "_type": "Value"}
    if list(ft["shape"]) == [1]:
        return value
    return {"feature": value, "length": int(ft["shape"][0]), "_type": "Sequence"}


def data_schema(features: Mapping[str, Mapping[str, Any]]) -> pa.Schema:
    """Arrow schema of the frame parquet files, with the Hugging Face feature metadata."""
    cols = {k: ft for k, ft in features.items() if ft["dtype"] != "video"}
    hf = {"info": {"features": {k: _hf_feature(ft) for k, ft in cols.items()}}}
    return pa.schema([(k, _arrow_type(ft)) for k, ft in cols.items()],
                     metadata={"huggingface": json.dumps(hf)})


def _tasks_table(tasks: list[str]) -> pa.Table:
    """``meta/tasks.parquet``: a pandas frame indexed by task text with a ``task_index`` column."""
    pandas_meta = {
        "index_columns": ["__index_level_0__"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                            "metadata": {"encoding": "UTF-8"}}],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
             "metadata": None},
            {"name": None, "field_name": "__index_level_0__", "pandas_type": "unicode", "numpy_type": "object",
             "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    schema = pa.schema([("task_index", pa.int64()), ("__index_level_0__", pa.string())],
                       metadata={"pandas": json.dumps(pandas_meta)})
    return pa.table({"task_index": np.arange(len(tasks), dtype=np.int64), "__index_level_0__": tasks}, schema=schema)


# -------------------------------------------------------------------------------- episode extras
def episode_extras(meta: Mapping[str, Any], store_index: int) -> dict[str, Any]:
    """Our per-episode metadata carried beside lerobot's columns (prefix ``bomb_data/`` in v3.0)."""
    return {
        "store_index": int(store_index),
        "source_episode_index": int(meta["episode_index"]),
        "seed": int(meta["seed"]),
        "split": str(meta["split"]),
        "cell_id": str(meta["cell_id"]),
        "params": json.dumps(meta.get("params", {}), sort_keys=True),
        "instruction": str(meta["instruction"]),
        "convention": str(meta.get("convention", "")),
        "target": [int(x) for x in meta["target"]],
        "success": bool(meta["success"]),
        "failure_reason": meta.get("failure_reason"),
        "placement_error_m": float(meta.get("placement_error_m") or float("nan")),
    }


EXTRA_TYPES: dict[str, pa.DataType] = {
    "store_index": pa.int64(), "source_episode_index": pa.int64(), "seed": pa.int64(), "split": pa.string(),
    "cell_id": pa.string(), "params": pa.string(), "instruction": pa.string(), "convention": pa.string(),
    "target": pa.list_(pa.int64()), "success": pa.bool_(), "failure_reason": pa.string(),
    "placement_error_m": pa.float64(),
}


# ------------------------------------------------------------------------------------------ export
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


class _Jobs:
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


def _chunk_file_next(chunk: int, file: int, chunks_size: int) -> tuple[int, int]:
    return (chunk + 1, 0) if file == chunks_size - 1 else (chunk, file + 1)


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
                           video_files_size_in_mb=video_files_size_in_mb).run()


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
        jobs = _Jobs(self.workers)
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


def _write(store: Any, indices: list[int], root: Path, jobs: _Jobs, *, keys: dict[str, str], version: str,
           fps: int, hw: tuple[int, int], image_size: int | None, codec: str, video: bool, workers: int,
           progress: Callable[[int], None] | None, chunks_size: int, data_mb: float, video_mb: float,
           ) -> dict[str, Any]:
    features = build_features(keys, hw, video)
    schema = data_schema(features)
    seg_dir = root / ".segments"
    seg_dir.mkdir()
    threads = _Jobs.encoder_threads(workers)
    v3 = version == "v3.0"

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
    writer = _V3Writer(root, keys, features, schema, fps, chunks_size, data_mb, video_mb) if v3 else \
        _V21Writer(root, keys, features, schema, chunks_size)
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
        table = pa.table({name: _column(cols[name], schema.field(name).type) for name in schema.names}, schema=schema)

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
    if v3:
        pq.write_table(_tasks_table(tasks), root / "meta" / "tasks.parquet")
        (root / "meta" / "stats.json").write_text(json.dumps(st.to_jsonable(stats), indent=4))
    else:
        with open(root / "meta" / "tasks.jsonl", "w", encoding="utf-8") as f:
            for i, t in enumerate(tasks):
                f.write(json.dumps({"task_index": i, "task": t}) + "\n")
        # not read by the v2.1 loader (it aggregates episodes_stats.jsonl itself); for convenience
        (root / "meta" / "stats.json").write_text(json.dumps(st.to_jsonable(stats), indent=4))
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
    if v3:
        info.update(chunks_size=chunks_size, data_files_size_in_mb=data_mb, video_files_size_in_mb=video_mb)
    else:
        info.update(total_videos=n_eps * len(CAMERAS) if video else 0,
                    total_chunks=(n_eps - 1) // chunks_size + 1, chunks_size=chunks_size)
    info.update(
        fps=fps,
        splits={"train": f"0:{n_eps}"},
        data_path=("data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet" if v3
                   else "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"),
        video_path=(None if not video else "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
                    if v3 else "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"),
        features=features,
    )
    _write_provenance(store, root, indices, keys=keys, version=version, codec=codec, video=video,
                      image_size=image_size)
    # info.json last: without it the directory is not a dataset
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    total_bytes = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    return {"format": "lerobot", "version": version, "keys": keys, "episodes": n_eps, "frames": frames_total,
            "tasks": len(tasks), "bytes": total_bytes, "image_bytes": bytes_img, "video": video,
            "codec": codec if video else None}


def _column(values: Any, typ: pa.DataType) -> pa.Array:
    if pa.types.is_fixed_size_list(typ):
        arr = np.ascontiguousarray(values)
        flat = pa.array(arr.reshape(-1), type=typ.value_type)
        return pa.FixedSizeListArray.from_arrays(flat, typ.list_size)
    return pa.array(values, type=typ)


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


# -------------------------------------------------------------------------------------- writers
def _flat_stats(ep_stats: Mapping[str, st.Stats]) -> dict[str, Any]:
    return {f"stats/{k}/{sk}": np.asarray(v).tolist() for k, s in ep_stats.items() for sk, v in s.items()}


class _V3Writer:
    """Shared parquet / MP4 files with size-based rollover, and buffered episode metadata rows."""

    def __init__(self, root: Path, keys: Mapping[str, str], features: Mapping[str, Any], schema: pa.Schema,
                 fps: int, chunks_size: int, data_mb: float, video_mb: float):
        self.root, self.keys, self.schema, self.fps = root, keys, schema, fps
        self.chunks_size, self.data_mb, self.video_mb = chunks_size, data_mb, video_mb
        self.data_cf = (0, 0)
        self.data_writer: pq.ParquetWriter | None = None
        self.data_bytes = 0
        self.video_keys = [keys[c] for c in CAMERAS if features[keys[c]]["dtype"] == "video"]
        self.video_cf = {k: (0, 0) for k in self.video_keys}
        self.video_out: dict[str, vid.VideoAppender | None] = {k: None for k in self.video_keys}
        self.video_bytes = {k: 0 for k in self.video_keys}
        self.video_info: dict[str, dict[str, Any]] = {}
        self.meta_cf = (0, 0)
        self.meta_rows: list[dict[str, Any]] = []
        self.meta_writer: pq.ParquetWriter | None = None
        self.meta_bytes = 0
        self.meta_schema: pa.Schema | None = None

    def _data_path(self, cf: tuple[int, int], base: str) -> Path:
        return self.root / base / f"chunk-{cf[0]:03d}" / f"file-{cf[1]:03d}.parquet"

    def add_episode(self, k: int, T: int, tasks: list[str], table: pa.Table, ep_stats: Mapping[str, st.Stats],
                    segments: Mapping[str, tuple[Path, int]], extras: Mapping[str, Any], g0: int) -> None:
        nb = table.nbytes
        if self.data_writer is not None and (self.data_bytes + nb) / 2**20 >= self.data_mb:
            self.data_writer.close()
            self.data_writer = None
            self.data_cf = _chunk_file_next(*self.data_cf, self.chunks_size)
        if self.data_writer is None:
            p = self._data_path(self.data_cf, "data")
            p.parent.mkdir(parents=True, exist_ok=True)
            self.data_writer = pq.ParquetWriter(p, self.schema, compression="snappy")
            self.data_bytes = 0
        self.data_writer.write_table(table)
        self.data_bytes += nb
        row: dict[str, Any] = {
            "episode_index": k, "tasks": tasks, "length": T,
            "data/chunk_index": self.data_cf[0], "data/file_index": self.data_cf[1],
            "dataset_from_index": g0, "dataset_to_index": g0 + T,
        }
        for key, (seg, n) in segments.items():
            size = seg.stat().st_size
            app = self.video_out[key]
            if app is not None and (self.video_bytes[key] + size) / 2**20 >= self.video_mb:
                app.close()
                app = None
                self.video_cf[key] = _chunk_file_next(*self.video_cf[key], self.chunks_size)
            if app is None:
                cf = self.video_cf[key]
                app = vid.VideoAppender(self.root / "videos" / key / f"chunk-{cf[0]:03d}" / f"file-{cf[1]:03d}.mp4",
                                        self.fps)
                self.video_out[key] = app
                self.video_bytes[key] = 0
            if key not in self.video_info:
                self.video_info[key] = vid.video_info(seg)
            t_from, t_to = app.append(seg, n)
            self.video_bytes[key] += size
            row[f"videos/{key}/chunk_index"] = self.video_cf[key][0]
            row[f"videos/{key}/file_index"] = self.video_cf[key][1]
            row[f"videos/{key}/from_timestamp"] = t_from
            row[f"videos/{key}/to_timestamp"] = t_to
        row.update(_flat_stats(ep_stats))
        row.update({f"bomb_data/{n}": v for n, v in extras.items()})
        row["meta/episodes/chunk_index"] = self.meta_cf[0]
        row["meta/episodes/file_index"] = self.meta_cf[1]
        self.meta_rows.append(row)
        if len(self.meta_rows) >= 100:
            self._flush_meta()

    def _meta_schema(self, row: Mapping[str, Any]) -> pa.Schema:
        fields = []
        for name, v in row.items():
            if name.startswith("bomb_data/"):
                typ = EXTRA_TYPES[name.split("/", 1)[1]]
            elif name == "tasks":
                typ = pa.list_(pa.string())
            elif name.startswith("stats/"):
                depth, x = 0, v
                while isinstance(x, list):
                    depth, x = depth + 1, x[0]
                typ = pa.int64() if name.endswith("/count") else pa.float64()
                for _ in range(depth):
                    typ = pa.list_(typ)
            elif name.endswith("_timestamp"):
                typ = pa.float64()
            else:
                typ = pa.int64()
            fields.append((name, typ))
        return pa.schema(fields)

    def _flush_meta(self) -> None:
        if not self.meta_rows:
            return
        if self.meta_schema is None:
            self.meta_schema = self._meta_schema(self.meta_rows[0])
        table = pa.Table.from_pylist(self.meta_rows, schema=self.meta_schema)
        if self.meta_writer is not None and (self.meta_bytes + table.nbytes) / 2**20 >= self.data_mb:
            self.meta_writer.close()
            self.meta_writer = None
            self.meta_cf = _chunk_file_next(*self.meta_cf, self.chunks_size)
            for r in self.meta_rows:
                r["meta/episodes/chunk_index"], r["meta/episodes/file_index"] = self.meta_cf
            table = pa.Table.from_pylist(self.meta_rows, schema=self.meta_schema)
        if self.meta_writer is None:
            p = self._data_path(self.meta_cf, "meta/episodes")
            p.parent.mkdir(parents=True, exist_ok=True)
            self.meta_writer = pq.ParquetWriter(p, self.meta_schema, compression="snappy")
            self.meta_bytes = 0
        self.meta_writer.write_table(table)
        self.meta_bytes += table.nbytes
        self.meta_rows.clear()

    def close(self) -> None:
        if self.data_writer is not None:
            self.data_writer.close()
        for app in self.video_out.values():
            if app is not None:
                app.close()
        self._flush_meta()
        if self.meta_writer is not None:
            self.meta_writer.close()


class _V21Writer:
    """One parquet and one MP4 per episode and camera; JSON-lines episode metadata and stats."""

    def __init__(self, root: Path, keys: Mapping[str, str], features: Mapping[str, Any], schema: pa.Schema,
                 chunks_size: int):
        self.root, self.keys, self.schema, self.chunks_size = root, keys, schema, chunks_size
        self.video_info: dict[str, dict[str, Any]] = {}
        self.episodes = open(root / "meta" / "episodes.jsonl", "w", encoding="utf-8")  # noqa: SIM115
        self.episodes_stats = open(root / "meta" / "episodes_stats.jsonl", "w", encoding="utf-8")  # noqa: SIM115

    def add_episode(self, k: int, T: int, tasks: list[str], table: pa.Table, ep_stats: Mapping[str, st.Stats],
                    segments: Mapping[str, tuple[Path, int]], extras: Mapping[str, Any], g0: int) -> None:
        chunk = k // self.chunks_size
        p = self.root / "data" / f"chunk-{chunk:03d}" / f"episode_{k:06d}.parquet"
        p.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, p, compression="snappy")
        for key, (seg, _) in segments.items():
            if key not in self.video_info:
                self.video_info[key] = vid.video_info(seg)
            dst = self.root / "videos" / f"chunk-{chunk:03d}" / key / f"episode_{k:06d}.mp4"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(seg), str(dst))
        self.episodes.write(json.dumps({"episode_index": k, "tasks": tasks, "length": T, "bomb_data": extras}) + "\n")
        self.episodes_stats.write(json.dumps({"episode_index": k, "stats": st.to_jsonable(ep_stats)}) + "\n")

    def close(self) -> None:
        self.episodes.close()
        self.episodes_stats.close()
