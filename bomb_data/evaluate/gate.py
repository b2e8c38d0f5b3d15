"""Fail loudly: when an evaluation's results say nothing about the policy.

Two checks, both one line:

- **First call** (``first_call_failure``): the first episode to finish in a run ended at its very
  first policy call with an error that a retry cannot fix (the server raised, e.g. ``KeyError
  'observation.images.agentview'``; the reply had the wrong shape or was not an action; the policy
  refused the observation's keys or sizes; the policy raised). The run stops before that episode
  is counted: every other episode would fail the same way.
- **Error rate** (``error_rate_failure``): after the run, more than ``max_error_rate`` of the
  episodes (or all of them) ended in a policy error. Results, summary and report are written; the
  command exits non-zero (status 3) naming the first error.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ..errors import PolicyError

#: Failure kinds that the same observation will hit again (not transport trouble, which retries cover).
MISMATCH_KINDS = ("server_error", "bad_shape", "bad_reply", "bad_input", "policy_exception", "nan")
#: Default of ``--max-error-rate``: above it the success rate (over completed episodes) says too little.
DEFAULT_MAX_ERROR_RATE = 0.5
#: Exit status of ``bomb-data eval`` when the error rate is exceeded (2 is bad input: nothing ran).
EXIT_TOO_MANY_ERRORS = 3


class FirstCallFailure(PolicyError):
    """The run stopped at the first policy call (one line; the CLI exits with status 2)."""


def discard_run(out: Path, files: list[Path], *, keep: bool, created: bool) -> None:
    """Undo a run that stopped before counting anything: remove ``files`` (its ``results.jsonl``,
    ``run.json`` and ``states/``) unless earlier results are kept, and ``out`` itself if this run created it and it
    is empty."""
    if keep:
        return
    for p in files:
        if p.is_dir():  # the per-episode states (states.py)
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    if created:
        try:
            out.rmdir()
        except OSError:  # not empty (e.g. a video): leave it
            pass


def first_call_failure(row: dict[str, Any]) -> str | None:
    """The one-line reason to stop the run if ``row`` failed at the episode's first policy call with
    a mismatch kind, else None."""
    if row.get("status") != "error" or row.get("failure_reason") != "policy_error":
        return None
    if row.get("error_kind") not in MISMATCH_KINDS or row.get("steps", 0) or row.get("policy_calls", 0):
        return None
    return (f"the policy's first call failed ({one_line(row.get('error'))}); stopped before counting any "
            "episode: check what the policy expects (keys, image size, state; docs/evaluation.md, "
            "'Fail loudly')")


def error_rate_failure(rows: list[dict[str, Any]], max_error_rate: float) -> str | None:
    """The one-line reason to exit non-zero when all episodes, or more than ``max_error_rate`` of them,
    ended in a policy error; None otherwise (also for an empty run)."""
    errors = [r for r in rows if r.get("failure_reason") == "policy_error"]
    if not rows or not errors:
        return None
    rate = len(errors) / len(rows)
    if len(errors) < len(rows) and rate <= max_error_rate:
        return None
    first = errors[0]
    return (f"{len(errors)} of {len(rows)} episodes ended in a policy error ({rate:.0%} > --max-error-rate "
            f"{max_error_rate:g}); first, episode {first.get('episode_id')}: {one_line(first.get('error'))}")


def one_line(text: Any, limit: int = 300) -> str:
    """``text`` on one line, at most ``limit`` characters."""
    s = " ".join(str(text or "unknown error").split())
    return s if len(s) <= limit else s[: limit - 3] + "..."
