"""One evaluation at a time per ``--out``: an exclusive lock on ``<out>/.eval.lock``.

``flock`` (advisory, released by the kernel when the holder dies, so a killed run leaves no stale
lock to clear). A second ``bomb-data eval`` on the same ``--out`` while the first runs fails at
once with one line (exit 2) and writes nothing: the lock is taken before anything is written or,
with ``--overwrite``, deleted. The file is removed when the run ends.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError

LOCK_FILE = ".eval.lock"


class EvalLock:
    """Holds the lock of ``out`` from construction until ``release`` (or the process's end)."""

    def __init__(self, out: Path):
        import fcntl

        self.path = Path(out) / LOCK_FILE
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                try:
                    pid = os.read(fd, 32).decode(errors="replace").strip() or "?"
                finally:
                    os.close(fd)
                raise ConfigError(f"--out {out} is being written by another evaluation (pid {pid}); wait for it "
                                  "to finish or choose another --out") from None
            try:  # the file we locked is still the one at the path (not removed by a run that just ended)
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd: int | None = fd

    def release(self) -> None:
        """Remove the lock file and let go of the lock (idempotent)."""
        if self.fd is None:
            return
        self.path.unlink(missing_ok=True)
        os.close(self.fd)
        self.fd = None
