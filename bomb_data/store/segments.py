"""A sequence store seen as one episode per subtask: the reader-level view behind ``export --segment-subtasks``.

:class:`SegmentedStore` is an :class:`~bomb_data.store.EpisodeStore` whose episodes are the subtasks of a
``task: sequence`` store's episodes, cut at the stored subtask boundaries (``subtask_ends``): segment
``j`` of a sequence episode is its steps ``[subtask_ends[j-1], subtask_ends[j])``. Every exporter reads it
through its normal path (``episodes``, ``select``, ``episode(i)``, ``handle`` for its workers), so each
format gets segmentation without code of its own. A segment's metadata is the sequence episode's,
made a single-instruction episode (docs/sequences.md):

* ``instruction``, ``target``, ``stone_color``: the subtask's own (also in plan mode: each subtask's
  instruction, not the whole plan);
* ``success``: the subtask succeeded (segments of a failed sequence that completed subtasks succeed);
  ``failure_reason`` is the sequence's on the subtask that failed, else null;
* ``length``; ``placement_error_m`` and ``chosen_intersection`` only on the last attempted subtask
  (the only one the store measured), else null;
* ``task``: ``subtask``; ``split``, ``cell_id``, ``seed``, ``params``, ``episode_index`` ... are the sequence
  episode's, so a sequence and its segments are in the same split;
* ``segment``: the provenance, ``{store_index, episode_index, subtask, n_subtasks, kind, subtask_spec,
  start, stop}`` (the sequence episode's position in the store and its ``episode_index``, the subtask's
  index, how many subtasks the episode attempted, ``[kind, colour, row, col]``, and the step range);
* the sequence-wide fields (``subtasks``, ``subtask_instructions``, ``subtask_ends``, ``subtasks_completed``,
  ``failed_subtask``, ``initial_position``, ``final_position``) are left out: they describe the parent.

Arrays are the parent's rows sliced (JPEG bytes unchanged), read and checked against the parent's
checksums; ``reward`` is 1.0 on the last step of a successful segment, else 0.0, as the schema defines
it for an episode. A segment's ``subtask_index`` rows must all equal its subtask (else StoreError).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import StoreError
from .images import decode_jpegs
from .reader import Episode, EpisodeStore

#: the word a view's handle carries after the store's (``EpisodeStore.reopen`` dispatches on it)
VIEW = "segments"

#: sequence-wide metadata a segment does not carry (they describe the parent episode)
PARENT_ONLY = ("subtasks", "subtask_instructions", "subtask_ends", "subtasks_completed", "failed_subtask",
               "initial_position", "final_position")


def segment_metas(meta: dict[str, Any], store_index: int) -> list[dict[str, Any]]:
    """The metadata of each segment of one sequence episode (metadata only: no array is read).

    StoreError when its ``subtask_ends`` are not increasing step indices ending at the episode's length,
    or name more subtasks than it has.
    """
    ends = [int(e) for e in meta.get("subtask_ends") or []]
    subtasks = meta.get("subtasks") or []
    texts = meta.get("subtask_instructions") or []
    length = int(meta["length"])
    k = meta.get("episode_index")
    if (not ends or ends[-1] != length or any(b <= a for a, b in zip([0, *ends], ends))
            or len(ends) > min(len(subtasks), len(texts))):
        raise StoreError(f"episode {store_index} (k={k}): its subtask_ends {ends} do not cut its {length} steps "
                         f"into at most {len(subtasks)} subtasks; it cannot be segmented")
    done = int(meta.get("subtasks_completed") or 0)
    base = {key: v for key, v in meta.items() if key not in PARENT_ONLY}
    out = []
    for j, (a, b) in enumerate(zip([0, *ends], ends)):
        kind, colour, row, col = subtasks[j]
        last = j == len(ends) - 1
        ok = j < done
        out.append({
            **base,
            "task": "subtask",
            "instruction": str(texts[j]),
            "target": [int(row), int(col)],
            "stone_color": str(colour),
            "success": ok,
            "failure_reason": None if ok else meta.get("failure_reason"),
            "placement_error_m": meta.get("placement_error_m") if last else None,
            "chosen_intersection": meta.get("chosen_intersection") if last else None,
            "length": b - a,
            "segment": {"store_index": int(store_index), "episode_index": k, "subtask": j,
                        "n_subtasks": len(ends), "kind": str(kind), "subtask_spec": list(subtasks[j]),
                        "start": a, "stop": b},
        })
    return out


class Segment(Episode):
    """One subtask of a sequence episode, read as an episode (the interface of ``reader.Episode``)."""

    def __init__(self, view: SegmentedStore, index: int, meta: dict[str, Any]):
        seg = meta["segment"]
        self._view = view
        self.index = index
        self.meta = meta
        self.parent_index = int(seg["store_index"])
        self.subtask = int(seg["subtask"])
        self.start, self.stop = int(seg["start"]), int(seg["stop"])  # steps within the parent episode

    def __getitem__(self, key: str) -> NDArray[Any]:
        if key == "reward":
            r = np.zeros(self.length, dtype=np.float32)
            r[-1] = float(bool(self.meta["success"]))
            return r
        return self._view._parent_rows(self.parent_index, key)[self.start : self.stop]

    @property
    def mj_state(self) -> NDArray[np.float64]:
        return self._view._parent_rows(self.parent_index, "mj_state")[self.start : self.stop]

    def jpeg(self, camera: str) -> list[bytes]:
        return self._view._parent_jpeg(self.parent_index, camera)[self.start : self.stop]

    def images(self, camera: str) -> NDArray[np.uint8]:
        return decode_jpegs(self.jpeg(camera))

    def __repr__(self) -> str:
        s = self.meta["segment"]
        return (f"Segment(index={self.index}, of store episode {s['store_index']} subtask {s['subtask']}, "
                f"length={self.length}, success={self.meta['success']})")


class SegmentedStore(EpisodeStore):
    """A ``task: sequence`` store whose episodes are its episodes' subtasks (module docstring).

    ``SegmentedStore(path)`` or ``SegmentedStore(EpisodeStore(path))``; StoreError for a store of
    another task (the single placement has no subtasks to cut) or a plan that cannot be cut.
    """

    def __init__(self, root: str | Path | EpisodeStore, verify: bool = True):  # noqa: D107  (no super().__init__)
        base = root if isinstance(root, EpisodeStore) else EpisodeStore(root, verify=verify)
        if base.description.get("task") != "sequence":
            raise StoreError(f"{base.root} is a store of task {base.description.get('task') or 'place'!r}: only a "
                             "sequence store (task: sequence) has subtasks to segment; export it without "
                             "--segment-subtasks")
        self.base = base
        self.root = base.root
        self.verify = base.verify
        self.description = {**base.description, "segmented": "one episode per subtask (bomb_data.store.segments)"}
        self._meta = [m for i, pm in enumerate(base.episodes) for m in segment_metas(pm, i)]
        self._cache: tuple[int, dict[str, Any]] = (-1, {})

    # -- the view in another process -----------------------------------------------------------
    @property
    def handle(self) -> str:
        return json.dumps([*json.loads(self.base.handle), VIEW])

    @classmethod
    def reopen(cls, handle: str) -> EpisodeStore:
        return EpisodeStore.reopen(handle)

    # -- what differs from the store -----------------------------------------------------------
    @property
    def num_steps(self) -> int:
        return self.base.num_steps

    def episode(self, i: int) -> Segment:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"segment {i} out of range: the view holds {n}")
        i %= n
        return Segment(self, i, self._meta[i])

    def iter_episodes(self, indices: Any = None) -> Iterator[Episode]:
        for i in range(len(self)) if indices is None else indices:
            yield self.episode(int(i))

    def verify_episode(self, i: int) -> None:
        self.base.verify_episode(self.episode(i).parent_index)

    def has_checksums(self, i: int) -> bool:
        return self.base.has_checksums(self.episode(i).parent_index)

    def parent(self, i: int) -> Episode:
        """The sequence episode segment ``i`` was cut from."""
        return self.base.episode(self.episode(i).parent_index)

    # -- the parent's arrays, read once for all of its segments ----------------------------------
    def _parent_cache(self, p: int) -> dict[str, Any]:
        if self._cache[0] != p:
            self._cache = (p, {})
            sub = np.asarray(self.base.episode(p)["subtask_index"])
            for m in (m for m in self._meta if m["segment"]["store_index"] == p):
                s = m["segment"]
                if (sub[s["start"] : s["stop"]] != s["subtask"]).any():
                    raise StoreError(f"{self.root}: episode {p}: its subtask_index rows disagree with its "
                                     f"subtask_ends at subtask {s['subtask']}; it cannot be segmented")
            self._cache[1]["subtask_index"] = sub
        return self._cache[1]

    def _parent_rows(self, p: int, key: str) -> NDArray[Any]:
        c = self._parent_cache(p)
        if key not in c:
            ep = self.base.episode(p)
            c[key] = ep.mj_state if key == "mj_state" else ep[key]
        return c[key]

    def _parent_jpeg(self, p: int, camera: str) -> list[bytes]:
        c = self._parent_cache(p)
        if ("jpeg", camera) not in c:
            c[("jpeg", camera)] = self.base.episode(p).jpeg(camera)
        return c[("jpeg", camera)]


def open_view(store: EpisodeStore, view: str) -> EpisodeStore:
    """The view a handle names over an opened store (``EpisodeStore.reopen``)."""
    if view != VIEW:
        raise StoreError(f"unknown store view {view!r}")
    return SegmentedStore(store)


def segmented(store: EpisodeStore) -> SegmentedStore:
    """``export --segment-subtasks``: the segmented view of ``store``; ExportError (one line) for a store
    of another task than ``sequence``."""
    from ..errors import ExportError

    if store.description.get("task") != "sequence":
        raise ExportError(f"--segment-subtasks: {store.root} is a store of task "
                          f"{store.description.get('task') or 'place'!r}, whose episodes have one instruction and "
                          "no subtasks; only a sequence store (task: sequence) can be segmented")
    return SegmentedStore(store)
