"""The one small interface every policy sits behind, and the failure a policy call can raise.

A policy maps an (adapted) observation to one action ``(D,)`` or an action chunk ``(H, D)``.
The evaluator calls ``reset`` before each episode and ``act`` whenever its queue of actions to
execute is empty; ``close`` releases connections.

What a policy is told about an episode (``EpisodeStart``) never fixes the scene: its ``seed`` is
``policy_seed(episode seed)`` (``bomb_data.seeds``), a one-way hash, so a policy cannot re-run ``env.reset`` to recover
the target (the episode seed with the target is part of the privileged state; see
docs/evaluation.md, "What a policy sees").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from ..errors import PolicyError
from ..seeds import POLICY_SEED_PERSON, policy_seed  # noqa: F401  (importable from here as before)

FAILURE_KINDS = ("unreachable", "disconnected", "timeout", "server_error", "nan", "bad_shape", "bad_reply",
                 "policy_exception")


class PolicyFailure(PolicyError):
    """A policy call failed during an episode. The runner marks the episode ``error`` with the reason.

    Args:
        kind: one of ``FAILURE_KINDS`` (``disconnected``, ``timeout``, ``nan``, ``bad_shape``, ...).
        detail: one line saying what happened.
    """

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True)
class EpisodeStart:
    """What a policy may know when an episode starts (never the target or privileged state).

    Attributes:
        episode_id: ``"<cell id>/<j>"`` (``"random/<k>"`` on a random grid).
        seed: the policy's seed for this episode, ``policy_seed(episode seed)``: stable (the same
            episode gives the same seed), for policies that sample (e.g. ``random``); it does not
            fix the scene, and the episode seed cannot be recovered from it.
        instruction: the task text the environment wrote for this episode.
        source_index: for ``replay:`` episodes, the index of the episode in the source store.
    """

    episode_id: str
    seed: int
    instruction: str
    source_index: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Policy(Protocol):
    """A policy the evaluator can drive. Implementations: ``bomb_data.evaluate.policies``."""

    name: str
    #: True if the policy declares that it reads the simulator's privileged state (the scripted
    #: expert; a ``python:`` factory with ``privileged = True``): only then may the adapter add
    #: ``bomb/privileged`` (the target among it), ``bomb/seed`` (the episode seed itself) and
    #: ``bomb/step``. Runs that send them are marked not comparable (docs/evaluation.md).
    privileged: bool

    def reset(self, start: EpisodeStart) -> None:
        """Prepare for a new episode."""

    def act(self, observation: dict[str, Any]) -> NDArray[np.floating] | list[Any]:
        """One action ``(D,)`` or a chunk ``(H, D)`` for this observation. Raises ``PolicyFailure``."""

    def close(self) -> None:
        """Release resources (connections)."""

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable description recorded in ``summary.json`` (e.g. server metadata)."""
