"""Test-only fault injection: ``BOMB_FAULT=POINT[:N]`` kills this process with SIGKILL the N-th time
(default the first) it reaches the named point, exactly as ``kill -9`` would at that moment.

The fault-injection tests (tests/test_faults.py) use it to crash ``generate`` and ``export`` between
any two steps of the commit protocol and check that a rerun repairs or refuses cleanly. Unset (the
normal case) it costs one dictionary lookup per point. The points are listed in docs/store.md.
"""

from __future__ import annotations

import os
import signal

_SPEC = os.environ.get("BOMB_FAULT", "")
_POINT, _, _COUNT = _SPEC.rpartition(":") if _SPEC.rpartition(":")[2].isdigit() else (_SPEC, "", "")
_hits = 0


def fault_point(name: str) -> None:
    """Die here (SIGKILL) if ``BOMB_FAULT`` names this point and its count is reached."""
    global _hits
    if not _POINT or name != _POINT:
        return
    _hits += 1
    if _hits >= int(_COUNT or 1):
        os.kill(os.getpid(), signal.SIGKILL)
