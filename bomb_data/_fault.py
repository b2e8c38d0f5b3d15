"""Fault injection for the crash tests: ``BOMB_FAULT=NAME`` kills this process at the point NAME.

Code that must survive a crash at some point calls ``fault_point("eval.run_json")`` there. Unless
the environment variable ``BOMB_FAULT`` names that point the call does nothing (one dictionary
lookup). ``BOMB_FAULT=NAME@N`` kills on the N-th time this process reaches NAME (1-based), so a
test can kill after some work is done. The kill is ``SIGKILL`` to this process alone: no
``finally`` block, no atexit handler, no buffered write runs, as with a power cut of the process
(the page cache survives, as it does when a process is killed).

Test-only: tests/test_faults.py crashes ``generate`` and ``export`` between any two steps of the
store's commit protocol (the points are listed in docs/store.md), tests/test_eval_faults.py crashes
``eval`` (docs/evaluation.md).
"""

from __future__ import annotations

import os
import signal

_hits: dict[str, int] = {}


def armed(name: str) -> bool:
    """Whether ``BOMB_FAULT`` names ``name`` and this is the hit it asks for (counts the hit)."""
    want = os.environ.get("BOMB_FAULT")
    if not want:
        return False
    point, _, nth = want.partition("@")
    if point != name:
        return False
    _hits[name] = _hits.get(name, 0) + 1
    return _hits[name] == (int(nth) if nth.isdigit() else 1)


def kill_now() -> None:
    """SIGKILL this process (nothing after this line runs)."""
    os.kill(os.getpid(), signal.SIGKILL)


def fault_point(name: str) -> None:
    """Kill this process here if ``BOMB_FAULT`` names this point (see the module docstring)."""
    if armed(name):
        kill_now()
