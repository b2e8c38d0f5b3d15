"""Reading the canonical store: the one API every exporter, ``info`` and ``replay`` use.

Only the committed part of a store is visible. Episodes are read lazily: opening a store reads
its metadata (a few KB per thousand episodes), and arrays are read per episode on demand.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from numpy.typing import NDArray

from ..errors import StoreError
from ..schema import CAMERAS, FEATURES_BY_KEY, SCHEMA_VERSION, SEQUENCE_FEATURES_BY_KEY, STORE_FORMAT
from .format import ALL_CHUNKS_WRITTEN, EPISODES_FILE, read_commit
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
        ``schema.SEQUENCE_STEP_FEATURES``."""
        if key in SEQUENCE_FEATURES_BY_KEY and self._store.description.get("task") == "sequence":
            return self._store._data[key][self.start : self.stop]
        if key not in FEATURES_BY_KEY:
            raise KeyError(f"unknown step key {key!r}; expected one of {sorted(FEATURES_BY_KEY)}")
        return self._store._data[key][self.start : self.stop]

    @property
    def mj_state(self) -> NDArray[np.float64]:
        """(T, mj_state_size) float64 MuJoCo state before each step's action (padding removed)."""
        return self._store._data["mj_state"][self.start : self.stop, : int(self.meta["mj_state_size"])]

    def jpeg(self, camera: str) -> list[bytes]:
        """The stored JPEG file of each frame of ``camera``, as bytes (no re-encoding)."""
        buf, ends = self._store._image_arrays(camera)
        e = ends[self.start : self.stop]
        b0 = int(ends[self.start - 1]) if self.start > 0 else 0
        raw = buf[b0 : int(e[-1])].tobytes()
        offs = np.concatenate([[0], e - b0]).tolist()
        return [raw[offs[i] : offs[i + 1]] for i in range(len(e))]

    def images(self, camera: str) -> NDArray[np.uint8]:
        """Decoded frames of ``camera``, (T, H, W, 3) uint8 RGB, upright."""
        return decode_jpegs(self.jpeg(camera))

    def __repr__(self) -> str:
        m = self.meta
        return (f"Episode(index={self.index}, k={m.get('episode_index')}, length={self.length}, "
                f"success={m.get('success')}, target={m.get('target')})")


class EpisodeStore:
    """Read-only view of the committed episodes of a store.

    Example::

        store = EpisodeStore(path)
        for ep in store.iter_episodes(store.select(success=True, split="train")):
            actions = ep["action"]          # (T, 7) float32
            frames = ep.images("agentview")  # (T, H, W, 3) uint8
    """

    def __init__(self, root: str | Path):
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
        try:
            commit = read_commit(self.root) or {"episodes": 0, "steps": 0,
                                                "image_bytes": {c: 0 for c in CAMERAS}}
            self._commit = commit
            n = int(commit["episodes"])
            self._ends = np.asarray(self._group["meta"]["episode_ends"][:n], dtype=np.int64)
            lines = (self.root / EPISODES_FILE).read_text(encoding="utf-8").splitlines()[:n]
            if len(lines) != n or len(self._ends) != n:
                raise StoreError(f"{self.root} is damaged: {n} episodes committed, {len(lines)} metadata lines, "
                                 f"{len(self._ends)} episode ends")
            self._meta = [json.loads(x) for x in lines]
            self._data = self._group["data"]
            if desc.get(ALL_CHUNKS_WRITTEN):
                self._check_chunks()
        except StoreError:
            raise
        except (OSError, KeyError, ValueError, TypeError, IndexError, RuntimeError) as exc:
            # a missing, truncated or garbled file of the store (the commit, the episode list, an array)
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise StoreError(f"{self.root} is damaged ({type(exc).__name__}: {first}); restore it from a copy "
                             "or generate it again") from exc
        self._img_cache: dict[str, tuple[zarr.Array, NDArray[np.int64]]] = {}

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
                    raise StoreError(f"{self.root} is damaged: chunk {path}/c/{key} is missing "
                                     "(its rows would read as zeros); restore it from a copy or generate it again")

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
            ends = np.asarray(g["ends"][: self.num_steps], dtype=np.int64)
            self._img_cache[camera] = (g["jpeg"], ends)
        return self._img_cache[camera]

    def size_bytes(self) -> int:
        """Bytes on disk of the whole store directory."""
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())
