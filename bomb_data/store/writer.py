"""Appending episodes to the canonical store, with a commit record so it never half-writes."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from .._fault import fault_point
from ..errors import StoreError
from ..provenance import result_version_change
from ..schema import CAMERAS, SCHEMA_VERSION, STORE_FORMAT, step_features
from .format import (
    ALL_CHUNKS_WRITTEN,
    CHECKSUM_KEY,
    CHECKSUMS,
    COMMIT_FILE,
    CREATING_FILE,
    EPISODES_FILE,
    LOCK_FILE,
    SHARDS_DIR,
    array_checksum,
    atomic_write_text,
    empty_commit,
    frames_checksum,
    meta_checksum,
    pid_alive,
    read_commit,
    read_lock,
)
from .record import EpisodeRecord

log = logging.getLogger(__name__)

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
        commit = read_commit(root) or empty_commit(CAMERAS)
        self._commit = commit
        self._episodes = self._load_episodes(commit["episodes"])

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | Path, description: dict[str, Any], mode: str = "resume") -> StoreWriter:
        root = Path(root)
        if mode not in ("create", "resume", "overwrite"):
            raise ValueError(f"mode must be create, resume or overwrite, got {mode!r}")
        # Judged before the lock is taken, so that nothing is written into a directory that is not ours.
        state = _dir_state(root)
        if state == "foreign":
            if mode == "overwrite":
                _check_is_store_or_empty(root)  # raises: never delete a directory that is not a store
            raise StoreError(f"{root} exists but is not a bomb-data store; choose another --out")
        if state == "store" and mode == "create":
            raise StoreError(f"{root} already exists; use --resume to continue it or --overwrite to replace it")
        description = {**description, "schema_version": SCHEMA_VERSION, "format": STORE_FORMAT}
        cls._take_lock(root)
        try:
            # judged again under the lock: another writer may have finished creating it meanwhile
            state = _dir_state(root)
            if state == "store" and mode != "overwrite":
                group = cls._open_existing(root, description)
                cls._check_committed(root)
            else:  # empty, being created by a killed writer, or to be replaced (--overwrite)
                group = cls._create(root, description)
            w = cls(root, group, dict(group.attrs["bomb_data"]))
            w._truncate_to_commit()
            w._remove_leftovers()
        except BaseException:
            _release_lock(root)
            raise
        return w

    @staticmethod
    def _take_lock(root: Path) -> None:
        """Take ``root/.lock`` for this process, or raise StoreError naming the live process that holds it.

        The lock file appears with its content (written to a temporary file, then hard-linked into
        place), so a kill at any moment never leaves an empty lock; a lock whose process is gone on
        this host is stale and taken over.
        """
        root.mkdir(parents=True, exist_ok=True)
        lock = root / LOCK_FILE
        host, me = socket.gethostname(), os.getpid()
        for stale in root.glob(f"{LOCK_FILE}.*-*"):  # .lock.tmp-PID, .lock.stale-PID of killed writers
            pid = stale.name.rsplit("-", 1)[-1]
            if pid.isdigit() and int(pid) != me and not pid_alive(int(pid)):
                stale.unlink(missing_ok=True)
        tmp = root / f"{LOCK_FILE}.tmp-{me}"
        tmp.write_text(f"{host} {me}")
        fault_point("lock-written")
        try:
            for _ in range(50):
                try:
                    os.link(tmp, lock)
                except FileExistsError:
                    pass
                except OSError:  # a file system without hard links: create exclusively, then write
                    try:
                        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                    except FileExistsError:
                        pass
                    else:
                        with os.fdopen(fd, "w") as f:
                            f.write(f"{host} {me}")
                        return
                else:
                    fault_point("lock-taken")
                    return
                try:
                    seen = lock.read_bytes()
                except FileNotFoundError:
                    continue
                owner = read_lock(lock)
                if owner is None:  # empty or garbled: a writer of an older bomb-data killed while taking it
                    try:
                        age = time.time() - lock.stat().st_mtime
                    except FileNotFoundError:
                        continue
                    if age < 2:  # maybe being written right now by such a writer
                        time.sleep(0.1)
                        continue
                    log.warning("removing the unreadable lock %s (no process can be holding it)", lock)
                    _break_stale_lock(lock, seen)
                    continue
                o_host, pid = owner
                if o_host == host and (pid == me or not pid_alive(pid)):
                    _break_stale_lock(lock, seen)  # stale lock of a killed writer on this host
                    continue
                raise StoreError(f"{root} is being written by process {pid} on {o_host}; wait for it, or delete "
                                 f"{lock} if that process is gone")
            raise StoreError(f"could not take the lock {lock}")
        finally:
            tmp.unlink(missing_ok=True)

    @staticmethod
    def _check_committed(root: Path) -> None:
        """Refuse to resume a damaged store: the reader's checks (commit record, episode list, every
        chunk under the committed rows, what lies past the commit) and the last committed episode's
        checksums (its chunks are the ones the next append rewrites)."""
        from .reader import EpisodeStore

        try:
            s = EpisodeStore(root)
            if len(s):
                s.verify_episode(len(s) - 1)
        except StoreError as exc:
            raise StoreError(str(exc).replace(" is damaged: ", " is damaged, so it is not resumed: ", 1)) from None

    @staticmethod
    def _create(root: Path, description: dict[str, Any]) -> zarr.Group:
        """Make an empty store in ``root`` (which holds our lock), replacing whatever else it holds.

        The ``.creating`` marker is written first and removed only once the empty commit record is
        in place: a writer killed on the way (creating, or deleting an old store for --overwrite)
        leaves a directory the next writer recognises as disposable and makes again.
        """
        marker = root / CREATING_FILE
        atomic_write_text(marker, f"{socket.gethostname()} {os.getpid()}")
        for p in sorted(root.iterdir()):
            if p.name in (LOCK_FILE, CREATING_FILE) or p.name.startswith(f"{LOCK_FILE}."):
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            fault_point("create-emptying")
        g = zarr.open_group(root, mode="a", zarr_format=3)  # "w" would delete our lock and marker too
        # every chunk is written, zeros too (zarr skips all-fill chunks by default), so a chunk file
        # that is missing is damage the reader can see instead of reading zeros; every episode
        # carries checksums; the commit record exists from the start (a missing one is damage); the
        # id tells a reader that the store was replaced under it
        g.attrs["bomb_data"] = {**description, ALL_CHUNKS_WRITTEN: True, CHECKSUMS: "crc32c",
                                "store_id": uuid.uuid4().hex}
        fault_point("create-described")
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
        atomic_write_text(root / COMMIT_FILE, json.dumps(empty_commit(CAMERAS)))
        marker.unlink()
        fault_point("create-done")
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
        out = []
        for x in lines[:n]:
            m = json.loads(x)
            m.pop(CHECKSUM_KEY, None)
            out.append(m)
        return out

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

    def _remove_leftovers(self) -> None:
        """Remove what killed writers leave (we hold the lock, so nobody else is writing): temporary
        files of atomic writes (ours, and zarr's ``*.partial`` chunk files), and shards of episodes
        already committed (a kill between the commit and the shard's removal)."""
        for d in (self.root, self.root / "meta", self.shard_dir):
            for p in d.glob(".*.tmp-*"):
                if not p.name.startswith(f"{LOCK_FILE}."):
                    p.unlink(missing_ok=True)
        for top in (self.root / "data", self.root / "meta"):
            for d, _, files in os.walk(top):
                for f in files:
                    if f.endswith(".partial"):
                        os.unlink(os.path.join(d, f))
        done = {e["episode_index"] for e in self._episodes if e["success"]}
        committed = self.committed_keys
        for p in self.shard_dir.glob("ep*-a*.npz") if self.shard_dir.is_dir() else ():
            try:
                k, a = (int(x) for x in p.stem[2:].split("-a"))
            except ValueError:
                continue
            if k in done or (k, a) in committed:
                log.info("removing shard %s: its episode is committed", p.name)
                p.unlink(missing_ok=True)

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
        sums: dict[str, str] = {}
        for f in step_features(self.description.get("task")):
            if f.key not in record.steps:
                raise StoreError(f"episode {record.meta.get('episode_index')}: missing step key '{f.key}' of a "
                                 f"{self.description.get('task')} store")
            rows = np.ascontiguousarray(record.steps[f.key], dtype=f.dtype)
            _write_rows(data[f.key], n0, rows)
            sums[f.key] = array_checksum(rows)
        state = np.full((T, S), np.nan, dtype=np.float64)
        state[:, : record.mj_state.shape[1]] = record.mj_state
        _write_rows(data["mj_state"], n0, state)
        sums["mj_state"] = array_checksum(state)
        fault_point("append-rows")
        image_bytes = dict(c["image_bytes"])
        for cam in CAMERAS:
            g = data["images"][cam]
            frames = record.jpeg[cam]
            raw = b"".join(frames)
            lengths = np.array([len(b) for b in frames], dtype=np.int64)
            b0 = image_bytes[cam]
            _write_rows(g["jpeg"], b0, np.frombuffer(raw, dtype=np.uint8))
            _write_rows(g["ends"], n0, b0 + np.cumsum(lengths))
            image_bytes[cam] = b0 + len(raw)
            sums[cam] = frames_checksum(lengths, raw)
        _write_rows(self._group["meta"]["episode_ends"], c["episodes"], np.array([n0 + T], dtype=np.int64))
        fault_point("append-images")
        # of the metadata as a reader will parse it (JSON turns tuples into lists, int keys into strings)
        sums["meta"] = meta_checksum(json.loads(json.dumps(record.meta)))
        with open(self.root / EPISODES_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps({**record.meta, CHECKSUM_KEY: sums}, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        fault_point("append-meta")
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
        _release_lock(self.root)

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


def _break_stale_lock(lock: Path, seen: bytes) -> None:
    """Remove the stale lock whose content was ``seen``, unless another writer broke it and took the
    lock meanwhile: moved aside first, it is put back if it is no longer the stale one."""
    aside = lock.with_name(f"{LOCK_FILE}.stale-{os.getpid()}")
    try:
        os.rename(lock, aside)
    except FileNotFoundError:
        return
    try:
        if aside.read_bytes() != seen:  # a live writer's lock: give it back
            with contextlib.suppress(FileExistsError):
                os.link(aside, lock)
    finally:
        aside.unlink(missing_ok=True)


def _release_lock(root: Path) -> None:
    """Remove ``root/.lock`` if this process holds it."""
    lock = root / LOCK_FILE
    if read_lock(lock) == (socket.gethostname(), os.getpid()):
        lock.unlink(missing_ok=True)


def _dir_state(root: Path) -> str:
    """``empty`` (absent, empty, or holding only lock files or an interrupted creation's marker: nothing
    committed), ``store`` (a bomb-data store, maybe damaged) or ``foreign``."""
    if not root.exists():
        return "empty"
    if not root.is_dir():
        raise StoreError(f"{root} is a file, not a store directory; choose another --out")
    names = {p.name for p in root.iterdir()}
    if CREATING_FILE in names:
        return "empty"
    names = {n for n in names if n != LOCK_FILE and not n.startswith(f"{LOCK_FILE}.")}
    if not names:
        return "empty"
    try:
        _check_is_store_or_empty(root)
    except StoreError:
        return "foreign"
    return "store"


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
        # a store whose description is damaged: its own files are all there (--overwrite replaces it)
        if all((root / p).exists() for p in (EPISODES_FILE, "meta/episode_ends/zarr.json", "data/action")):
            return
    raise StoreError(f"refusing to overwrite {root}: it is not a bomb-data store; remove it yourself "
                     "or choose another --out")
