"""Retrying a policy-server request on transport failures, shared by the protocol clients."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from ..protocol import PolicyFailure

log = logging.getLogger(__name__)

T = TypeVar("T")

#: PolicyFailure kinds worth another attempt: the transport failed, not the server's reply.
TRANSIENT = ("unreachable", "disconnected", "timeout")


def call_with_retries(once: Callable[[], T], *, retries: int, backoff_s: float, label: str,
                      on_retry: Callable[[], None]) -> T:
    """``once()``, retried up to ``retries`` times on a transient PolicyFailure.

    Waits ``backoff_s`` before the first retry and doubles the wait each time; calls ``on_retry``
    before each retry (the clients count reconnects there). Any other failure, or the last
    transient one, is raised as it is. ``label`` names the server in the warning logged per retry.
    """
    delay = backoff_s
    for attempt in range(retries):
        try:
            return once()
        except PolicyFailure as exc:
            if exc.kind not in TRANSIENT:
                raise
            log.warning("%s: %s; retry %d/%d in %.1f s", label, exc, attempt + 1, retries, delay)
            time.sleep(delay)
            delay *= 2
            on_retry()
    return once()
