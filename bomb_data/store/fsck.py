"""``bomb-data fsck``: check every byte of a store against its checksums, and repair what can be.

The check does not trust the commit record: it walks the episodes stored (the lines of
episodes.jsonl and the entries of meta/episode_ends), checks each one's metadata line, length and
arrays against the checksums recorded when it was committed, and compares the longest prefix that
verifies with what the commit record claims. A store is append-only, so the one repair is to make
that prefix the committed part (rewriting the commit record, cutting off everything after it):
``generate`` with the same command then makes the dropped episodes again, identically.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from ..errors import StoreError
from ..schema import CAMERAS, SCHEMA_VERSION, STORE_FORMAT
from .format import (
    ALL_CHUNKS_WRITTEN,
    CHECKSUM_KEY,
    COMMIT_FILE,
    CREATING_FILE,
    EPISODES_FILE,
    atomic_write_text,
    meta_checksum,
    read_commit,
)
from .reader import EpisodeStore

log = logging.getLogger(__name__)


def check_store(root: str | Path, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Check the whole store at ``root``; return a JSON-serialisable report.

    Report keys: ``committed`` (episodes the commit record covers, None if it is missing or
    unreadable), ``stored`` (episodes present), ``verified`` (the longest prefix whose every byte
    matches its checksums), ``without_checksums`` (episodes of older stores, checked for structure
    and chunk files only), ``damage`` (one line per problem), ``drop`` (what ``repair`` would drop;
    empty if it has nothing to do). ``progress`` is called with 1 after each episode.
    """
    root = Path(root)
    if not root.is_dir():
        raise StoreError(f"no store at {root}")
    if (root / CREATING_FILE).exists():
        raise StoreError(f"{root} is being created, or its creation was interrupted: it holds nothing "
                         "committed; rerun the generate command to finish it")
    try:
        group = zarr.open_group(root, mode="r", zarr_format=3)
        desc = dict(group.attrs["bomb_data"])
    except Exception as exc:  # noqa: BLE001  (zarr raises several types for a non-store directory)
        raise StoreError(f"{root} is not a bomb-data store, or its description (zarr.json) is damaged "
                         f"({type(exc).__name__}); nothing can be checked") from exc
    if desc.get("format") != STORE_FORMAT or desc.get("schema_version") != SCHEMA_VERSION:
        raise StoreError(f"{root} is not a bomb-data store of schema version {SCHEMA_VERSION}")
    damage: list[str] = []
    try:
        commit = read_commit(root)
        if commit is None:
            damage.append(f"{COMMIT_FILE} is missing")
    except (OSError, ValueError) as exc:
        commit = None
        damage.append(f"{COMMIT_FILE} is unreadable ({exc})")
    committed = None if commit is None else int(commit["episodes"])

    # the episodes stored, as far as their metadata lines and episode ends go
    metas: list[dict[str, Any]] = []
    sums: list[dict[str, str] | None] = []
    try:
        lines = (root / EPISODES_FILE).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        lines = []
        damage.append(f"{EPISODES_FILE} is unreadable ({exc})")
    try:
        ends = np.asarray(group["meta"]["episode_ends"][:], dtype=np.int64)
    except Exception as exc:  # noqa: BLE001
        ends = np.zeros(0, np.int64)
        damage.append(f"meta/episode_ends is unreadable ({type(exc).__name__})")
    stored = max(len(lines), len(ends))
    reason: dict[int, str] = {}
    for i in range(min(len(lines), len(ends))):
        try:
            m = json.loads(lines[i])
            s = m.pop(CHECKSUM_KEY, None)
        except ValueError:
            reason[i] = f"its line in {EPISODES_FILE} is not JSON"
            break
        if s is not None and s.get("meta") != meta_checksum(m):
            reason[i] = f"its line in {EPISODES_FILE} does not match its checksum"
            break
        start = int(ends[i - 1]) if i else 0
        if int(ends[i]) - start != m.get("length", int(ends[i]) - start) or int(ends[i]) <= start:
            reason[i] = "its entry in meta/episode_ends disagrees with its length"
            break
        metas.append(m)
        sums.append(s)
    candidates = len(metas)

    # the arrays of each candidate episode, read through a reader that covers all of them
    r = _reader_over(root, group, desc, metas, sums, ends[:candidates])
    verified = 0
    for i in range(candidates):
        try:
            r.verify_episode(i)
        except Exception as exc:  # noqa: BLE001  (a StoreError, or arrays shorter than the episode ends)
            reason.setdefault(i, _what(exc).removeprefix(f"episode {i}: "))
        if progress is not None:
            progress(1)
    verified = min(reason) if reason else candidates
    no_sums = sum(1 for s in sums if s is None)
    if desc.get(ALL_CHUNKS_WRITTEN):  # names a deleted chunk file (the only check of one without checksums)
        try:
            r._check_chunks()
        except StoreError as exc:
            damage.append(_what(exc))
    for i in sorted(reason):
        if committed is None or i < committed:
            damage.append(f"episode {i}: {reason[i]}")
    if committed is not None and committed > verified and not reason:
        damage.append(f"the commit record covers {committed} episodes but only {verified} are stored whole")
    if committed is not None and committed + 1 < verified:
        damage.append(f"the commit record covers {committed} episodes but {verified} are stored whole and verify")

    drop: list[str] = []
    if damage:
        drop_committed = max(0, (committed or 0) - verified)
        if drop_committed:
            drop.append(f"committed episodes {verified}..{committed - 1} ({drop_committed}; the first fails: "
                        f"{reason.get(verified, 'incomplete')}; those after it cannot be kept in an append-only "
                        "store); rerunning the same generate command makes them again")
        if stored > max(verified, committed or 0):
            drop.append(f"{stored - max(verified, committed or 0)} episode(s) stored past them that do not verify "
                        "or were never committed")
    return {"store": str(root), "committed": committed, "stored": stored, "verified": verified,
            "without_checksums": no_sums, "damage": damage, "drop": drop, "_ends": ends[:verified]}


def _reader_over(root: Path, group: zarr.Group, desc: dict[str, Any], metas: list[dict[str, Any]],
                 sums: list[dict[str, str] | None], ends: np.ndarray) -> EpisodeStore:
    """An EpisodeStore over the given episodes, whatever the commit record says."""
    r = EpisodeStore.__new__(EpisodeStore)
    r.root, r.description, r.verify, r._group = root, desc, True, group
    r._data = group["data"]
    r._meta, r._sums, r._ends = metas, sums, ends
    steps = int(ends[-1]) if len(ends) else 0
    image_bytes = {}
    for cam in CAMERAS:
        try:
            image_bytes[cam] = int(group["data"]["images"][cam]["ends"][steps - 1]) if steps else 0
        except Exception:  # noqa: BLE001  (checked per episode below)
            image_bytes[cam] = 0
    r._commit = {"episodes": len(metas), "steps": steps, "image_bytes": image_bytes}
    r._img_cache = {}
    return r


def repair_store(root: str | Path, report: dict[str, Any]) -> dict[str, Any]:
    """Make the verified prefix of ``report`` (from :func:`check_store`) the committed part of the store.

    Takes the store's lock, rewrites the commit record to cover exactly the episodes that verify and
    cuts off everything after them. Returns the new commit record.
    """
    from .writer import StoreWriter, _release_lock

    root = Path(root)
    n = int(report["verified"])
    ends = report["_ends"]
    group = zarr.open_group(root, mode="r+", zarr_format=3)
    StoreWriter._take_lock(root)
    try:
        steps = int(ends[-1]) if n else 0
        image_bytes = {cam: int(group["data"]["images"][cam]["ends"][steps - 1]) if steps else 0 for cam in CAMERAS}
        commit = {"episodes": n, "steps": steps, "image_bytes": image_bytes}
        atomic_write_text(root / COMMIT_FILE, json.dumps(commit))
        w = StoreWriter(root, group, dict(group.attrs["bomb_data"]))
        w._truncate_to_commit()
    finally:
        _release_lock(root)
    EpisodeStore(root)  # opens cleanly now
    return commit


def _what(exc: BaseException) -> str:
    """The damage named by a reader's StoreError, without the store path and the way out."""
    if not isinstance(exc, StoreError):
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return str(exc).split(" is damaged: ", 1)[-1].split("; `bomb-data fsck", 1)[0]
