"""On-disk layout of the canonical store (docs/store.md).

```
STORE/                       zarr v3 group; attrs["bomb_data"] = self-description (see below)
  data/<feature>             time-major arrays, all episodes end to end (schema.STEP_FEATURES)
  data/mj_state              (N, mj_state_dim) float64, NaN-padded per episode
  data/images/<cam>/jpeg     (B,) uint8: the JPEG files of every frame, end to end
  data/images/<cam>/ends     (N,) int64: cumulative end offset of each frame's bytes
  meta/episode_ends          (E,) int64: cumulative end step of each episode
  meta/episodes.jsonl        one JSON object per episode (schema.EPISODE_FIELDS)
  meta/commit.json           the commit record: what of the above is committed
  shards/                    staging: one file per finished episode, written by workers
  .lock                      held by the one process that appends ("host pid", written atomically)
  .creating                  present while the store is being (re)created: its content is disposable
```

The commit record is replaced atomically (write + rename) after an episode's rows are appended,
so a writer killed at any moment leaves a store whose committed part is intact; rows past the
commit record are cut off when the store is next opened for writing, and ignored by readers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import google_crc32c

from .._fault import fault_point

COMMIT_FILE = "meta/commit.json"
EPISODES_FILE = "meta/episodes.jsonl"
LOCK_FILE = ".lock"
SHARDS_DIR = "shards"
#: Present from the moment a store's directory is (re)made until its empty commit record is written:
#: a directory holding it holds nothing committed, so the next writer may empty it and start again.
CREATING_FILE = ".creating"
#: Description key: the algorithm of the per-episode checksums (``crc32c``). Stores that have it were
#: created with a commit record (0 episodes), so from then on a missing commit record is damage.
CHECKSUMS = "checksums"
#: Key of the checksums in an episode's line of episodes.jsonl (not part of ``Episode.meta``).
CHECKSUM_KEY = "crc32c"


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new content, never a mix."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    fault_point(f"before-rename-{path.name}")
    os.replace(tmp, path)
    fault_point(f"after-rename-{path.name}")


def remove_stale_temporaries(path: Path) -> None:
    """Remove the temporary files ``.<name>.tmp-<pid>`` beside ``path`` (as :func:`atomic_write_text`
    names them) that a process killed while writing it left (its PID no longer runs); those of a live
    writer are kept."""
    path = Path(path)
    for p in path.parent.glob(f".{path.name}.tmp-*"):
        pid = p.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not pid_alive(int(pid)):
            p.unlink(missing_ok=True)


def crc32c_hex(*parts: bytes) -> str:
    """CRC-32C of the concatenated ``parts``, as 8 hex digits (the per-episode checksums)."""
    c = 0
    for p in parts:
        c = google_crc32c.extend(c, p)
    return f"{c:08x}"


def array_checksum(a: Any) -> str:
    """Checksum of an array's bytes as stored (C order, little-endian)."""
    import numpy as np

    a = np.ascontiguousarray(a)
    return crc32c_hex(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())


def frames_checksum(lengths: Any, raw: bytes) -> str:
    """Checksum of one camera's frames of an episode: the length of each JPEG file, then the bytes."""
    import numpy as np

    return crc32c_hex(np.asarray(lengths, dtype="<i8").tobytes(), raw)


def meta_checksum(meta: dict[str, Any]) -> str:
    """Checksum of an episode's metadata (its canonical JSON text)."""
    return crc32c_hex(json.dumps(meta, sort_keys=True).encode())


def empty_commit(cameras: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """The commit record of a store with no episode."""
    return {"episodes": 0, "steps": 0, "image_bytes": {c: 0 for c in cameras}}


def read_commit(root: Path) -> dict[str, Any] | None:
    """The commit record of the store at ``root``, or None if there is none.

    Raises ValueError if it is not a well-formed record (garbled JSON, missing or negative counts).
    """
    p = root / COMMIT_FILE
    if not p.exists():
        return None
    c = json.loads(p.read_text(encoding="utf-8"))
    ok = (isinstance(c, dict) and all(isinstance(c.get(k), int) and c[k] >= 0 for k in ("episodes", "steps"))
          and isinstance(c.get("image_bytes"), dict)
          and all(isinstance(v, int) and v >= 0 for v in c["image_bytes"].values()))
    if not ok:
        raise ValueError(f"{COMMIT_FILE} is not a commit record")
    return c


#: Description key of stores whose every chunk file is written, zeros too (StoreWriter._create):
#: in those, a missing chunk file is damage (zarr would read it as zeros).
ALL_CHUNKS_WRITTEN = "all_chunks_written"


def pid_alive(pid: int) -> bool:
    """A process with this id runs on this machine (one we may not signal counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_lock(lock: Path) -> tuple[str, int] | None:
    """(host, pid) written in a lock file, or None if it is empty or garbled."""
    try:
        host, pid = lock.read_text().split()
        return host, int(pid)
    except (OSError, ValueError):
        return None
