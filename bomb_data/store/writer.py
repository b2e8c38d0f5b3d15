"""Appending episodes to the canonical store, with a commit record so it never half-writes."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from ..errors import StoreError
from ..schema import CAMERAS, SCHEMA_VERSION, STORE_FORMAT, step_features
from .format import (
    ALL_CHUNKS_WRITTEN,
    COMMIT_FILE,
    EPISODES_FILE,
    LOCK_FILE,
    SHARDS_DIR,
    atomic_write_text,
    pid_alive,
    read_commit,
)
from .record import EpisodeRecord

log = logging.getLogger(__name__)

#: Versions (keys of the description's ``versions``) that change what an episode is; a store (or an
#: evaluation) is only resumed under the same ones: physics and rendering (MuJoCo), the scene and
#: the expert (bomb-data), the rasteriser (the OpenGL renderer, e.g. Mesa llvmpipe or a GPU driver).
RESULT_VERSIONS = {"mujoco": "MuJoCo", "bomb_data": "bomb-data", "renderer": "the renderer"}


def result_version_change(have: dict[str, Any] | None, want: dict[str, Any] | None) -> str | None:
    """'MuJoCo 3.3.0, this run has 3.3.7' when a version that changes episodes differs, else None
    (a version missing on either side is not compared)."""
    have, want = have or {}, want or {}
    for key, name in RESULT_VERSIONS.items():
        if key in have and key in want and have[key] != want[key]:
            return f"{name} {have[key]}, this run has {want[key]}"
    return None

_VEC_CHUNK_STEPS = 4096
_IMG_CHUNK_BYTES = 2 * 1024 * 1024
_STATE_CHUNK_BYTES = 2 * 1024 * 1024


def _compressor() -> BloscCodec:
    return BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")


class StoreWriter:
    """Appends episodes to a store; the only process that writes ``data/`` and ``meta/``.

    Use as a context manager::

        with StoreWriter.open(path, description, mode="resume") as w:
            w.append(record)

    Args:
        root: store directory.
        description: the self-description written to the root attrs (config, config_hash,
            versions, image geometry, mj_state_dim, ...). ``schema_version`` and ``format`` are added.
        mode: ``"create"`` (fail if a store exists), ``"resume"`` (continue a store made by the same
            configuration, create it otherwise) or ``"overwrite"`` (delete and start again).
    """

    def __init__(self, root: Path, group: zarr.Group, description: dict[str, Any]):
        self.root = root
        self._group = group
        self.description = description
        commit = read_commit(root) or {"episodes": 0, "steps": 0, "image_bytes": {c: 0 for c in CAMERAS}}
        self._commit = commit
        self._episodes = self._load_episodes(commit["episodes"])

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | Path, description: dict[str, Any], mode: str = "resume") -> StoreWriter:
        root = Path(root)
        if mode not in ("create", "resume", "overwrite"):
            raise ValueError(f"mode must be create, resume or overwrite, got {mode!r}")
        exists = root.exists() and any(root.iterdir())
        if exists and mode == "create":
            raise StoreError(f"{root} already exists; use --resume to continue it or --overwrite to replace it")
        if exists and mode == "overwrite":
            _check_is_store_or_empty(root)
            cls._take_lock(root)
            shutil.rmtree(root)
            exists = False
        description = {**description, "schema_version": SCHEMA_VERSION, "format": STORE_FORMAT}
        if exists:
            group = cls._open_existing(root, description)
        else:
            group = cls._create(root, description)
        cls._take_lock(root)
        w = cls(root, group, dict(group.attrs["bomb_data"]))
        w._truncate_to_commit()
        return w

    @staticmethod
    def _take_lock(root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        lock = root / LOCK_FILE
        me = f"{socket.gethostname()} {os.getpid()}"
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    host, pid = lock.read_text().split()
                except (OSError, ValueError):
                    host, pid = "", "0"
                if host == socket.gethostname() and (int(pid) == os.getpid() or not pid_alive(int(pid))):
                    lock.unlink(missing_ok=True)  # stale lock of a killed writer on this host
                    continue
                raise StoreError(
                    f"{root} is being written by process {pid} on {host}; wait for it, or delete "
                    f"{lock} if that process is gone"
                ) from None
            with os.fdopen(fd, "w") as f:
                f.write(me)
            return
        raise StoreError(f"could not take the lock {lock}")

    @staticmethod
    def _create(root: Path, description: dict[str, Any]) -> zarr.Group:
        root.mkdir(parents=True, exist_ok=True)
        g = zarr.open_group(root, mode="w", zarr_format=3)
        # every chunk is written, zeros too (zarr skips all-fill chunks by default), so a chunk file
        # that is missing is damage the reader can see instead of reading zeros
        g.attrs["bomb_data"] = {**description, ALL_CHUNKS_WRITTEN: True}
        data = g.require_group("data")
        for f in step_features(description.get("task")):
            per_step = int(np.prod(f.shape)) if f.shape else 1
            chunk = max(256, _VEC_CHUNK_STEPS // max(1, per_step // 4))
            data.create_array(f.key, shape=(0, *f.shape), chunks=(chunk, *f.shape), dtype=f.dtype,
                              compressors=_compressor(), fill_value=0)
        S = int(description["mj_state_dim"])
        data.create_array("mj_state", shape=(0, S), chunks=(max(16, _STATE_CHUNK_BYTES // (8 * S)), S),
                          dtype="float64", compressors=_compressor(), fill_value=np.nan)
        imgs = data.require_group("images")
        for cam in CAMERAS:
            c = imgs.require_group(cam)
            # JPEG bytes do not compress further, but the zero padding of the last chunk does.
            c.create_array("jpeg", shape=(0,), chunks=(_IMG_CHUNK_BYTES,), dtype="uint8",
                           compressors=BloscCodec(cname="zstd", clevel=1, shuffle="noshuffle"), fill_value=0)
            c.create_array("ends", shape=(0,), chunks=(_VEC_CHUNK_STEPS,), dtype="int64",
                           compressors=_compressor(), fill_value=0)
        meta = g.require_group("meta")
        meta.create_array("episode_ends", shape=(0,), chunks=(_VEC_CHUNK_STEPS,), dtype="int64",
                          compressors=_compressor(), fill_value=0)
        (root / EPISODES_FILE).touch()
        (root / SHARDS_DIR).mkdir(exist_ok=True)
        return g

    @staticmethod
    def _open_existing(root: Path, description: dict[str, Any]) -> zarr.Group:
        try:
            g = zarr.open_group(root, mode="r+", zarr_format=3)
            have = dict(g.attrs["bomb_data"])
        except Exception as exc:  # zarr raises several types for a non-store directory
            raise StoreError(f"{root} exists but is not a bomb-data store ({type(exc).__name__}); "
                             "choose another path or use --overwrite") from exc
        if have.get("format") != STORE_FORMAT:
            raise StoreError(f"{root} is not a bomb-data store; choose another path or use --overwrite")
        if have.get("schema_version") != SCHEMA_VERSION:
            raise StoreError(f"{root} has schema version {have.get('schema_version')}, this bomb-data writes "
                             f"{SCHEMA_VERSION}; use --overwrite or another path")
        want_hash, have_hash = description.get("config_hash"), have.get("config_hash")
        if want_hash != have_hash:
            raise StoreError(f"{root} was made by a different configuration (config hash {have_hash}, this run "
                             f"{want_hash}); use --overwrite to replace it or --out for a new store")
        # The same configuration under another MuJoCo (physics, rendering) or bomb-data (scene, expert)
        # makes other episodes: resuming would mix two datasets in one store.
        change = result_version_change(have.get("versions"), description.get("versions"))
        if change:
            raise StoreError(f"{root} was made with {change}: its episodes would differ from the ones already "
                             "stored; resume with the same versions and renderer, or use --overwrite or another --out")
        return g

    # -- state ---------------------------------------------------------------------------------
    def _load_episodes(self, n: int) -> list[dict[str, Any]]:
        lines = (self.root / EPISODES_FILE).read_text(encoding="utf-8").splitlines()
        if len(lines) < n:
            raise StoreError(f"{self.root}: episodes.jsonl has {len(lines)} lines but {n} are committed; "
                             "the store is damaged")
        return [json.loads(x) for x in lines[:n]]

    def _truncate_to_commit(self) -> None:
        """Cut off rows appended after the last commit (a writer killed mid-append)."""
        c = self._commit
        data = self._group["data"]
        cut = []
        for f in step_features(self.description.get("task")):
            a = data[f.key]
            if a.shape[0] != c["steps"]:
                cut.append(f.key)
                a.resize((c["steps"], *a.shape[1:]))
        a = data["mj_state"]
        if a.shape[0] != c["steps"]:
            cut.append("mj_state")
            a.resize((c["steps"], a.shape[1]))
        for cam in CAMERAS:
            g = data["images"][cam]
            if g["jpeg"].shape[0] != c["image_bytes"][cam]:
                g["jpeg"].resize((c["image_bytes"][cam],))
                cut.append(f"images/{cam}")
            if g["ends"].shape[0] != c["steps"]:
                g["ends"].resize((c["steps"],))
        ee = self._group["meta"]["episode_ends"]
        if ee.shape[0] != c["episodes"]:
            ee.resize((c["episodes"],))
            cut.append("episode_ends")
        p = self.root / EPISODES_FILE
        lines = p.read_text(encoding="utf-8").splitlines()
        if len(lines) != c["episodes"]:
            atomic_write_text(p, "".join(x + "\n" for x in lines[: c["episodes"]]))
            cut.append("episodes.jsonl")
        if cut:
            log.warning("store %s: discarded uncommitted rows of an interrupted write (%s)", self.root,
                        ", ".join(cut))

    @property
    def episodes(self) -> list[dict[str, Any]]:
        """Metadata of the committed episodes, in commit order."""
        return list(self._episodes)

    @property
    def committed_keys(self) -> set[tuple[int, int]]:
        """(episode_index, attempt) of every committed episode."""
        return {(e["episode_index"], e["attempt"]) for e in self._episodes}

    @property
    def shard_dir(self) -> Path:
        return self.root / SHARDS_DIR

    # -- appending -----------------------------------------------------------------------------
    def append(self, record: EpisodeRecord) -> None:
        """Append one episode and commit it. Safe against a kill at any point."""
        with zarr.config.set({"array.write_empty_chunks": True}):  # arrays opened below write every chunk
            self._append(record)

    def _append(self, record: EpisodeRecord) -> None:
        record.validate()
        S = int(self.description["mj_state_dim"])
        if record.mj_state.shape[1] > S:
            raise StoreError(f"episode {record.meta.get('episode_index')}: MuJoCo state has "
                             f"{record.mj_state.shape[1]} values, the store holds {S}")
        c = dict(self._commit)
        n0, T = c["steps"], record.length
        data = self._group["data"]
        for f in step_features(self.description.get("task")):
            if f.key not in record.steps:
                raise StoreError(f"episode {record.meta.get('episode_index')}: missing step key '{f.key}' of a "
                                 f"{self.description.get('task')} store")
            _write_rows(data[f.key], n0, record.steps[f.key])
        state = np.full((T, S), np.nan, dtype=np.float64)
        state[:, : record.mj_state.shape[1]] = record.mj_state
        _write_rows(data["mj_state"], n0, state)
        image_bytes = dict(c["image_bytes"])
        for cam in CAMERAS:
            g = data["images"][cam]
            frames = record.jpeg[cam]
            buf = np.frombuffer(b"".join(frames), dtype=np.uint8)
            b0 = image_bytes[cam]
            _write_rows(g["jpeg"], b0, buf)
            _write_rows(g["ends"], n0, b0 + np.cumsum([len(b) for b in frames], dtype=np.int64))
            image_bytes[cam] = b0 + len(buf)
        _write_rows(self._group["meta"]["episode_ends"], c["episodes"], np.array([n0 + T], dtype=np.int64))
        with open(self.root / EPISODES_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(record.meta, sort_keys=True) + "\n")
        new = {"episodes": c["episodes"] + 1, "steps": n0 + T, "image_bytes": image_bytes}
        atomic_write_text(self.root / COMMIT_FILE, json.dumps(new))  # the commit point
        self._commit = new
        self._episodes.append(dict(record.meta))

    def update_description(self, **fields: Any) -> None:
        """Merge ``fields`` into the store's self-description (e.g. a finished generation summary)."""
        desc = dict(self._group.attrs["bomb_data"])
        desc.update(fields)
        self._group.attrs["bomb_data"] = desc
        self.description = desc

    def close(self) -> None:
        (self.root / LOCK_FILE).unlink(missing_ok=True)

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _write_rows(arr: zarr.Array, start: int, rows: np.ndarray) -> None:
    """Write ``rows`` at ``start`` along axis 0, growing the array (rows past the old end)."""
    n = start + rows.shape[0]
    if arr.shape[0] != start:
        arr.resize((start, *arr.shape[1:]))
    arr.resize((n, *arr.shape[1:]))
    if rows.shape[0]:
        arr[start:n] = rows


def _check_is_store_or_empty(root: Path) -> None:
    """Refuse to delete a directory that is not a bomb-data store (protects user data on --overwrite)."""
    zj = root / "zarr.json"
    if zj.exists():
        try:
            attrs = json.loads(zj.read_text()).get("attributes", {})
        except (OSError, ValueError):
            attrs = {}
        if attrs.get("bomb_data", {}).get("format") == STORE_FORMAT:
            return
    raise StoreError(f"refusing to overwrite {root}: it is not a bomb-data store; remove it yourself "
                     "or choose another --out")
