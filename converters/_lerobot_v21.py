"""The LeRobot v2.1 writer (openpi, lerobot <= 0.3): one parquet and one MP4 per episode and camera.

``chunks_size`` episodes per chunk directory; ``meta/episodes.jsonl``, ``meta/episodes_stats.jsonl``
and ``meta/tasks.jsonl`` as JSON lines.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from bomb_data.schema import CAMERAS

from . import _lerobot_stats as st
from . import _lerobot_video as vid


class V21Writer:
    """One parquet and one MP4 per episode and camera; JSON-lines episode metadata and stats."""

    version = "v2.1"
    DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
    VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"

    def __init__(self, root: Path, keys: Mapping[str, str], features: Mapping[str, Any], schema: pa.Schema, *,
                 chunks_size: int, **_: Any):
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

    def finish(self, tasks: list[str], stats: dict[str, st.Stats], n_episodes: int, video: bool) -> dict[str, Any]:
        """Write ``meta/tasks.jsonl`` and ``meta/stats.json``; return this version's ``info.json`` fields."""
        with open(self.root / "meta" / "tasks.jsonl", "w", encoding="utf-8") as f:
            for i, t in enumerate(tasks):
                f.write(json.dumps({"task_index": i, "task": t}) + "\n")
        # not read by the v2.1 loader (it aggregates episodes_stats.jsonl itself); for convenience
        (self.root / "meta" / "stats.json").write_text(json.dumps(st.to_jsonable(stats), indent=4))
        return {"total_videos": n_episodes * len(CAMERAS) if video else 0,
                "total_chunks": (n_episodes - 1) // self.chunks_size + 1, "chunks_size": self.chunks_size}
