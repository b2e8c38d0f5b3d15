"""The cores this process may use, for default worker counts and pinning."""

from __future__ import annotations

import os


def usable_cpus() -> list[int]:
    """The cores this process may run on (its affinity mask: taskset, cgroup cpusets), sorted.

    ``os.cpu_count()`` counts the machine's cores, which a container or ``taskset`` may not grant.
    """
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return list(range(os.cpu_count() or 1))


def default_workers() -> int:
    """One worker per usable core."""
    return max(1, len(usable_cpus()))
