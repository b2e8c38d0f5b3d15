"""Reading the canonical store: the one API every exporter, ``info`` and ``replay`` use.

Only the committed part of a store is visible. Episodes are read lazily: opening a store reads
its metadata (a few KB per thousand episodes), and arrays are read per episode on demand.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from numpy.typing import NDArray

from ..errors import StoreError
from ..schema import CAMERAS, FEATURES_BY_KEY, SCHEMA_VERSION, SEQUENCE_FEATURES_BY_KEY, STORE_FORMAT
from .format import (
    ALL_CHUNKS_WRITTEN,
    CHECKSUM_KEY,
    CHECKSUMS,
    COMMIT_FILE,
    CREATING_FILE,
    EPISODES_FILE,
    LOCK_FILE,
    array_checksum,
    empty_commit,
    frames_checksum,
    meta_checksum,
    read_commit,
)
from .images import decode_jpegs


class Episode:
    """One committed episode; arrays are read when asked for.

    Attributes:
        index: position of the episode in the store (0..len(store)-1).
        meta: its metadata (``schema.EPISODE_FIELDS``).
        start, stop: its step range in the time-major ``data/`` arrays.
    """

    def __init__(self, store: EpisodeStore, index: int, start: int, stop: int, meta: dict[str, Any]):
        self._store = store
        self.index = index
        self.start = start
        self.stop = stop
        self.meta = meta

    @property
    def length(self) -> int:
        return self.stop - self.start

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: str) -> NDArray[Any]:
        """A per-step array of ``schema.STEP_FEATURES`` (T, *shape), or in a sequence store of
        ``schema.SEQUENCE_STEP_FEATURES``, checked against its checksum."""
        if key in SEQUENCE_FEATURES_BY_KEY and self._store.description.get("task") == "sequence":
            return self._store._read_rows(self, key)
        if key not in FEATURES_BY_KEY:
            raise KeyError(f"unknown step key {key!r}; expected one of {sorted(FEATURES_BY_KEY)}")
        return self._store._read_rows(self, key)

    @property
    def mj_state(self) -> NDArray[np.float64]:
        """(T, mj_state_size) float64 MuJoCo state before each step's action (padding removed)."""
        return self._store._read_rows(self, "mj_state")[:, : int(self.meta["mj_state_size"])]

    def jpeg(self, camera: str) -> list[bytes]:
        """The stored JPEG file of each frame of ``camera``, as bytes (no re-encoding), checked
        against the episode's checksum."""
        return self._store._read_jpeg(self, camera)

    def images(self, camera: str) -> NDArray[np.uint8]:
        """Decoded frames of ``camera``, (T, H, W, 3) uint8 RGB, upright."""
        return decode_jpegs(self.jpeg(camera))

    def __repr__(self) -> str:
        m = self.meta
        return (f"Episode(index={self.index}, k={m.get('episode_index')}, length={self.length}, "
                f"success={m.get('success')}, target={m.get('target')})")


class EpisodeStore:
    """Read-only view of the committed episodes of a store.

    Opening checks that the commit record, episode list, episode ends and chunk files agree; every
    array an episode returns is checked against the checksums recorded when it was committed
    (``verify=False`` skips that). Damage raises StoreError with one line naming it.

    Example::

        store = EpisodeStore(path)
        for ep in store.iter_episodes(store.select(success=True, split="train")):
            actions = ep["action"]          # (T, 7) float32
            frames = ep.images("agentview")  # (T, H, W, 3) uint8
    """

    def __init__(self, root: str | Path, verify: bool = True):
        self.root = Path(root)
        if not self.root.exists():
            raise StoreError(f"no store at {self.root} (run `bomb-data generate --out {self.root}` first)")
        try:
            self._group = zarr.open_group(self.root, mode="r", zarr_format=3)
            desc = dict(self._group.attrs["bomb_data"])
        except Exception as exc:  # zarr raises several types for a non-store directory
            raise StoreError(f"{self.root} is not a bomb-data store ({type(exc).__name__})") from exc
        if desc.get("format") != STORE_FORMAT:
            raise StoreError(f"{self.root} is not a bomb-data store")
        if desc.get("schema_version") != SCHEMA_VERSION:
            raise StoreError(f"{self.root} has store schema version {desc.get('schema_version')}; this "
                             f"bomb-data reads version {SCHEMA_VERSION}")
        self.description: dict[str, Any] = desc
        self.verify = verify
        if (self.root / CREATING_FILE).exists():
            raise StoreError(f"{self.root} is being created or replaced (or that was interrupted): nothing in it "
                             "is committed yet; rerun the generate command to finish it")
        for tries in itertools.count(1):
            try:
                self._load()
                break
            except (StoreError, OSError, KeyError, ValueError, TypeError, IndexError, RuntimeError) as exc:
                # A writer appending meanwhile can make the files read one after the other disagree for
                # a moment: judged again before calling it damage.
                if tries < 10 and (self.root / LOCK_FILE).exists():
                    time.sleep(0.1)
                    continue
                if isinstance(exc, StoreError):
                    raise
                # a missing, truncated or garbled file of the store (the commit, the episode list, an array)
                first = str(exc).splitlines()[0] if str(exc) else ""
                raise self._damaged(f"{type(exc).__name__}: {first}") from exc
        self._img_cache: dict[str, tuple[zarr.Array, NDArray[np.int64]]] = {}

    def _damaged(self, what: str, way_out: str | None = None) -> StoreError:
        """The one-line error for damage found in this store (or for a store replaced while read)."""
        if self._replaced():
            return StoreError(f"{self.root} was replaced or deleted while it was being read (e.g. by `generate "
                              "--overwrite`); run this again once that is finished")
        return StoreError(f"{self.root} is damaged: {what}; " + (way_out or f"`bomb-data fsck {self.root}` checks "
                          "the whole store and says what `--repair` would drop (or restore it from a copy)"))

    def _replaced(self) -> bool:
        """The store's directory no longer holds the store this reader opened."""
        try:
            desc = json.loads((self.root / "zarr.json").read_text())["attributes"]["bomb_data"]
        except (OSError, ValueError, KeyError, TypeError):
            return True
        return any(desc.get(k) != self.description.get(k) for k in ("store_id", "created"))

    def _load(self) -> None:
        """Read the commit record, the episode list and episode ends, and check that they agree."""
        desc, root = self.description, self.root
        commit = read_commit(root)
        lines = (root / EPISODES_FILE).read_text(encoding="utf-8").splitlines()
        ee = self._group["meta"]["episode_ends"]
        stored = max(len(lines), ee.shape[0])
        if commit is None:
            # Stores with checksums get their commit record when created; in older ones an interrupted
            # first append may leave one uncommitted episode and no record.
            if desc.get(CHECKSUMS) or stored > 1:
                raise self._damaged(f"{COMMIT_FILE} is missing but {stored} episode(s) are stored",
                                    f"`bomb-data fsck --repair {root}` rebuilds it from the episodes that verify")
            commit = empty_commit(CAMERAS)
        self._commit = commit
        n, steps = int(commit["episodes"]), int(commit["steps"])
        if len(lines) < n or ee.shape[0] < n:
            raise self._damaged(f"{n} episodes committed, {len(lines)} metadata lines, {ee.shape[0]} episode ends")
        if stored > n + 1:  # an interrupted append leaves at most one episode past the commit
            raise self._damaged(f"the commit record covers {n} episodes but {stored} are stored",
                                f"`bomb-data fsck --repair {root}` recommits the ones that verify")
        self._ends = np.asarray(ee[:n], dtype=np.int64)
        self._meta, self._sums = [], []
        for i, x in enumerate(lines[:n]):
            m = json.loads(x)
            sums = m.pop(CHECKSUM_KEY, None)
            if sums is not None and sums.get("meta") != meta_checksum(m):
                raise self._damaged(f"episode {i}: its line in {EPISODES_FILE} does not match its checksum")
            self._meta.append(m)
            self._sums.append(sums)
        lengths = np.diff(self._ends, prepend=0)
        bad = [i for i, m in enumerate(self._meta) if "length" in m and m["length"] != lengths[i]]
        if (lengths <= 0).any() or bad or (self._ends[-1] if n else 0) != steps:
            raise self._damaged(f"meta/episode_ends disagrees with the commit record ({steps} steps) or with the "
                                f"episode lengths (first at episode {bad[0] if bad else int(np.argmin(lengths))})")
        self._data = self._group["data"]
        short = [f"data/{k}" for k in [*FEATURES_BY_KEY, "mj_state"] if self._data[k].shape[0] < steps]
        for cam in CAMERAS:
            g = self._data["images"][cam]
            nb = int(commit["image_bytes"].get(cam, -1))
            if g["jpeg"].shape[0] < nb or g["ends"].shape[0] < steps or nb < 0:
                short.append(f"data/images/{cam}")
            elif steps and int(g["ends"][steps - 1]) != nb:
                raise self._damaged(f"data/images/{cam}/ends disagrees with the commit record ({nb} bytes)")
        if short:
            raise self._damaged(f"{', '.join(short)} hold fewer rows than the commit record")
        if desc.get(ALL_CHUNKS_WRITTEN):
            self._check_chunks()

    def _check_chunks(self) -> None:
        """Every chunk file under the committed rows exists (zarr would read a missing one as zeros)."""
        c = self._commit
        rows = {f"data/{f}": c["steps"] for f in FEATURES_BY_KEY} | {"data/mj_state": c["steps"],
                                                                       "meta/episode_ends": c["episodes"]}
        for cam in CAMERAS:
            rows[f"data/images/{cam}/jpeg"] = c["image_bytes"][cam]
            rows[f"data/images/{cam}/ends"] = c["steps"]
        for path, n in rows.items():
            a = self._group[path]
            grid = [math.ceil(n / a.chunks[0])] + [math.ceil(s / k) for s, k in zip(a.shape[1:], a.chunks[1:])]
            base = self.root / path / "c"
            # one directory listing per array, not a stat per chunk (thousands on a big store)
            present = {Path(d, f).relative_to(base).as_posix() for d, _, files in os.walk(base) for f in files}
            for idx in itertools.product(*map(range, grid)):
                key = "/".join(map(str, idx))
                if key not in present:
                    raise self._damaged(f"chunk {path}/c/{key} is missing (its rows would read as zeros)")

    # -- the same store in another process -----------------------------------------------------
    @property
    def handle(self) -> str:
        """A string that opens this very store in another process (:meth:`reopen`): exporters pass it
        to their workers, so that a worker never reads another store that has replaced this one."""
        return json.dumps([str(self.root), self.description.get("store_id"), self.description.get("created")])

    @classmethod
    def reopen(cls, handle: str) -> EpisodeStore:
        """Open the store a :attr:`handle` names; StoreError if it was replaced or deleted since."""
        root, store_id, created, *view = json.loads(handle)
        try:
            s = cls(root)
        except StoreError as exc:
            raise StoreError(f"{root} was replaced or deleted while it was being read (e.g. by `generate "
                             f"--overwrite`), or is damaged: {exc}") from None
        if (s.description.get("store_id"), s.description.get("created")) != (store_id, created):
            raise StoreError(f"{root} was replaced while it was being read (e.g. by `generate --overwrite`); "
                             "run this again once that is finished")
        if view:  # a view over the store, e.g. one episode per subtask (store.segments)
            from .segments import open_view

            return open_view(s, view[0])
        return s

    # -- description ---------------------------------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        """The full resolved configuration the store was generated with."""
        return self.description.get("config", {})

    @property
    def fps(self) -> float:
        return float(self.description["control_hz"])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (int(self.description["image_height"]), int(self.description["image_width"]), 3)

    @property
    def num_steps(self) -> int:
        return int(self._commit["steps"])

    @property
    def episodes(self) -> list[dict[str, Any]]:
        """Metadata of every committed episode, in store order."""
        return self._meta

    def __len__(self) -> int:
        return len(self._meta)

    def require_nonempty(self) -> None:
        """Raise a clear error for a store with no committed episode (e.g. before exporting)."""
        if len(self) == 0:
            raise StoreError(f"{self.root} holds no committed episodes")

    # -- selection -----------------------------------------------------------------------------
    def select(self, success: bool | None = None, split: str | Iterable[str] | None = None,
               cell: str | Iterable[str] | None = None) -> list[int]:
        """Indices of the episodes matching every given filter (None = any)."""
        splits = {split} if isinstance(split, str) else (set(split) if split is not None else None)
        cells = {cell} if isinstance(cell, str) else (set(cell) if cell is not None else None)
        out = []
        for i, m in enumerate(self._meta):
            if success is not None and bool(m["success"]) != success:
                continue
            if splits is not None and m["split"] not in splits:
                continue
            if cells is not None and m["cell_id"] not in cells:
                continue
            out.append(i)
        return out

    def splits(self) -> dict[str, int]:
        """Number of episodes per split."""
        counts: dict[str, int] = {}
        for m in self._meta:
            counts[m["split"]] = counts.get(m["split"], 0) + 1
        return counts

    # -- access --------------------------------------------------------------------------------
    def episode(self, i: int) -> Episode:
        """Random access to episode ``i`` (0-based position in the store; negative counts from the end)."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"episode {i} out of range: the store holds {n}")
        i %= n
        start = int(self._ends[i - 1]) if i > 0 else 0
        return Episode(self, i, start, int(self._ends[i]), self._meta[i])

    def __getitem__(self, i: int) -> Episode:
        return self.episode(i)

    def iter_episodes(self, indices: Iterable[int] | None = None) -> Iterator[Episode]:
        """Episodes in order (all, or the given indices), one at a time."""
        for i in range(len(self)) if indices is None else indices:
            yield self.episode(int(i))

    def __iter__(self) -> Iterator[Episode]:
        return self.iter_episodes()

    def _image_arrays(self, camera: str) -> tuple[zarr.Array, NDArray[np.int64]]:
        if camera not in CAMERAS:
            raise KeyError(f"unknown camera {camera!r}; expected one of {CAMERAS}")
        if camera not in self._img_cache:
            g = self._data["images"][camera]
            try:
                ends = np.asarray(g["ends"][: self.num_steps], dtype=np.int64)
            except Exception as exc:  # noqa: BLE001  (zarr and its codecs raise many types for bad bytes)
                raise self._damaged(f"data/images/{camera}/ends cannot be read ({_first(exc)})") from exc
            self._img_cache[camera] = (g["jpeg"], ends)
        return self._img_cache[camera]

    def _expect(self, ep: Episode, name: str) -> str | None:
        sums = self._sums[ep.index]
        return sums.get(name) if self.verify and sums else None

    def _read_rows(self, ep: Episode, name: str) -> NDArray[Any]:
        try:
            rows = self._data[name][ep.start : ep.stop]
        except Exception as exc:  # noqa: BLE001  (a truncated chunk: blosc, zstd or zarr errors)
            raise self._damaged(f"episode {ep.index}: data/{name} cannot be read ({_first(exc)})") from exc
        want = self._expect(ep, name)
        if want is not None and array_checksum(rows) != want:
            raise self._damaged(f"episode {ep.index}: data/{name} does not match its checksum")
        return rows

    def _read_jpeg(self, ep: Episode, camera: str) -> list[bytes]:
        buf, ends = self._image_arrays(camera)
        try:
            e = ends[ep.start : ep.stop]
            b0 = int(ends[ep.start - 1]) if ep.start > 0 else 0
            raw = buf[b0 : int(e[-1])].tobytes()
        except Exception as exc:  # noqa: BLE001  (a truncated chunk, or ends shorter than the commit record)
            raise self._damaged(f"episode {ep.index}: data/images/{camera}/jpeg cannot be read ({_first(exc)})") \
                from exc
        offs = np.concatenate([[0], e - b0])
        want = self._expect(ep, camera)
        if want is not None and frames_checksum(np.diff(offs), raw) != want:
            raise self._damaged(f"episode {ep.index}: the {camera} frames do not match their checksum")
        offs = offs.tolist()
        return [raw[offs[i] : offs[i + 1]] for i in range(len(e))]

    def verify_episode(self, i: int) -> None:
        """Read every array of episode ``i`` and check it against its checksums (StoreError if not)."""
        ep = self.episode(i)
        for key in [*FEATURES_BY_KEY, "mj_state"]:
            self._read_rows(ep, key)
        for cam in CAMERAS:
            self._read_jpeg(ep, cam)

    def has_checksums(self, i: int) -> bool:
        """Episode ``i`` carries checksums (stores made before bomb-data 0.3 do not)."""
        return self._sums[i] is not None

    def size_bytes(self) -> int:
        """Bytes on disk of the whole store directory."""
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())


def _first(exc: BaseException) -> str:
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
