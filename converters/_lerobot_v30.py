"""The LeRobot v3.0 writer (lerobot >= 0.4): episodes share parquet and MP4 files.

Many episodes share one parquet / MP4 file (a new file when ``data_files_size_in_mb`` /
``video_files_size_in_mb`` would be exceeded, a new chunk directory every ``chunks_size`` files); an
episode's frames are located by ``dataset_from_index``/``dataset_to_index`` and its video by
``from_timestamp``/``to_timestamp`` in ``meta/episodes/``; tasks in ``meta/tasks.parquet``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bomb_data.schema import CAMERAS

from . import _lerobot_stats as st
from . import _lerobot_video as vid
from ._lerobot_features import EXTRA_TYPES


def _chunk_file_next(chunk: int, file: int, chunks_size: int) -> tuple[int, int]:
    return (chunk + 1, 0) if file == chunks_size - 1 else (chunk, file + 1)


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


def _flat_stats(ep_stats: Mapping[str, st.Stats]) -> dict[str, Any]:
    return {f"stats/{k}/{sk}": np.asarray(v).tolist() for k, s in ep_stats.items() for sk, v in s.items()}


class V30Writer:
    """Shared parquet / MP4 files with size-based rollover, and buffered episode metadata rows."""

    version = "v3.0"
    DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"

    def __init__(self, root: Path, keys: Mapping[str, str], features: Mapping[str, Any], schema: pa.Schema, *,
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

    def finish(self, tasks: list[str], stats: dict[str, st.Stats], n_episodes: int, video: bool) -> dict[str, Any]:
        """Write ``meta/tasks.parquet`` and ``meta/stats.json``; return this version's ``info.json`` fields."""
        pq.write_table(_tasks_table(tasks), self.root / "meta" / "tasks.parquet")
        (self.root / "meta" / "stats.json").write_text(json.dumps(st.to_jsonable(stats), indent=4))
        return {"chunks_size": self.chunks_size, "data_files_size_in_mb": self.data_mb,
                "video_files_size_in_mb": self.video_mb}
