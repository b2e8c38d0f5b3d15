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
  .lock                      held by the one process that appends
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

COMMIT_FILE = "meta/commit.json"
EPISODES_FILE = "meta/episodes.jsonl"
LOCK_FILE = ".lock"
SHARDS_DIR = "shards"


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new content, never a mix."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_commit(root: Path) -> dict[str, Any] | None:
    """The commit record of the store at ``root``, or None if nothing was ever committed."""
    p = root / COMMIT_FILE
    if not p.exists():
        return None
    return json.loads(p.read_text(encoding="utf-8"))


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
