"""Replace a small text file all at once: a crash at any moment leaves the old or the new content,
never a half-written file (a temporary file beside it, fsynced, renamed over it, directory fsynced)."""

from __future__ import annotations

import os
from pathlib import Path


def write_text_atomic(path: Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(text.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temporaries(path: Path) -> None:
    """Remove the temporary files ``.<name>.tmp-<pid>`` beside ``path`` that a process killed while
    writing it left (its PID no longer runs); those of a live writer are kept."""
    from .store.format import pid_alive

    path = Path(path)
    for p in path.parent.glob(f".{path.name}.tmp-*"):
        pid = p.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not pid_alive(int(pid)):
            p.unlink(missing_ok=True)
