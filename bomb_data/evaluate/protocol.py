"""The one small interface every policy sits behind, and the failure a policy call can raise.

A policy maps an (adapted) observation to one action ``(D,)`` or an action chunk ``(H, D)``.
The evaluator calls ``reset`` before each episode and ``act`` whenever its queue of actions to
execute is empty; ``close`` releases connections.

What a policy is told about an episode (``EpisodeStart``) never fixes the scene: its ``seed`` is
``policy_seed(episode seed)``, a one-way hash, so a policy cannot re-run ``env.reset`` to recover
the target (the episode seed with the target is part of the privileged state; see
docs/evaluation.md, "What a policy sees").
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from ..errors import PolicyError

FAILURE_KINDS = ("unreachable", "disconnected", "timeout", "server_error", "nan", "bad_shape", "bad_reply",
                 "policy_exception")


#: BLAKE2b personalisation (16 bytes) of ``policy_seed``: separates it from every other use of a hash.
POLICY_SEED_PERSON = b"bomb-data/pseed1"


def policy_seed(episode_seed: int) -> int:
    """The seed a policy receives for an episode: one-way, stable, 63 bits.

    ``int.from_bytes(blake2b(str(episode_seed).encode(), digest_size=8,
    person=b"bomb-data/pseed1").digest(), "big") >> 1``. The episode seed fixes the scene and the
    target (``env.reset(seed=...)``); this derived seed does not, and the episode seed cannot be
    computed back from it (BLAKE2b is a cryptographic hash; 2^63 candidates). It depends on the
    episode seed alone, not on the policy or how it is reached (in process or behind a server), so a
    policy draws the same random numbers wherever it runs.

    Args:
        episode_seed: the environment seed of the episode (a non-negative int).

    Returns:
        An int in [0, 2^63).
    """
    if int(episode_seed) < 0:
        raise ValueError(f"episode_seed: expected >= 0, found {episode_seed}")
    digest = hashlib.blake2b(str(int(episode_seed)).encode(), digest_size=8, person=POLICY_SEED_PERSON).digest()
    return int.from_bytes(digest, "big") >> 1


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
