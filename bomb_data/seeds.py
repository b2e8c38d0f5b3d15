"""Every seed bomb-data derives, in one place. An episode depends only on (root seed, episode index
or cell and j, configuration): each random quantity comes from one of these functions, and no two
share a stream (each has its own inputs or salt).

==============================  ============  ==========================================================
derivation (inputs)             salt          used by
==============================  ============  ==========================================================
``episode_seed(root, k, a)``    (none)        generate: attempt a of episode k; preview; ground's scenes
``expert_rngs(episode seed)``   1, spawn(2)   the expert's (plan variation, action noise): generate's
                                              rollout, the ``expert`` eval policy, chains, preview
``split_u(root, k)``            0x5B1         generate: train/val split of episode k (``split_of``)
``grid_rng(root, hash32, k)``   grid hash     a ``random`` grid's draw of episode k's levels
``episode_generators(rng)``     spawn(7)      ``env.reset``: one draw of the env's ``np_random`` (seeded
                                              by ``reset(seed=episode seed)``) → target, layout, colors,
                                              scene, robot, language, image generators
``eval_seed(root, cell, j)``    crc32(cell)   eval: episode j of a cell (of ``random``: episode k)
``policy_seed(episode seed)``   BLAKE2b       eval: the seed a policy is told (``EpisodeStart.seed``),
                                person        one-way
``random_policy_rng(pseed)``    0xA11         the ``random`` eval policy's actions
``counterfactual_rng(eseed)``   0xCF          ``explain``: an episode's counterfactual targets
``occluder_rng(eseed, t)``      0x0CC         ``explain``: the random occluders of frame t
``probe_split_u(root, sseed)``  0x9B0         ``probe``: test/val/train split of a scene
``probe_scene_rng(root, ss)``   0x9B1         ``probe``: a scene's question choices
``probe_fit_rng(root)``         0x9B2         ``probe``: the control fits (random features, shuffled labels)
==============================  ============  ==========================================================

``episode_seed``, ``eval_seed``: ``SeedSequence([...]).generate_state(1, uint64)[0] >> 1`` (63 bits).
``split_u``: ``SeedSequence([...]).generate_state(1)[0] / 2**32`` (uint32 → [0, 1)). ``grid_rng``,
``random_policy_rng``: ``default_rng`` of the list. ``policy_seed``: ``int.from_bytes(blake2b(
str(episode seed), digest_size=8, person=b"bomb-data/pseed1"), "big") >> 1``. The same table is
in docs/conventions.md ("Seeds").
"""

from __future__ import annotations

import hashlib
import zlib
from typing import NamedTuple

import numpy as np


def _seed63(entropy: list[int]) -> int:
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 1)


# ------------------------------------------------------------------------------------ generation
def episode_seed(root_seed: int, episode_index: int, attempt: int) -> int:
    """The seed of attempt ``attempt`` of episode ``episode_index``: depends on nothing else."""
    return _seed63([root_seed, episode_index, attempt])


def expert_rngs(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """The expert's generators for an episode seed: (plan variation, executed-action noise).

    Generation, the evaluator's ``expert`` policy and the preview all use this, so each runs the
    expert exactly as it generated the data.
    """
    return tuple(np.random.default_rng(s) for s in np.random.SeedSequence([seed, 1]).spawn(2))  # type: ignore[return-value]


#: Salt of the train/val split draw.
SPLIT_SALT = 0x5B1


def split_u(root_seed: int, k: int) -> float:
    """Episode k's uniform draw in [0, 1) that puts it in val (below ``val_fraction``) or train."""
    return float(np.random.SeedSequence([root_seed, k, SPLIT_SALT]).generate_state(1)[0] / 2**32)


def split_of(root_seed: int, k: int, heldout: bool, val_fraction: float) -> str:
    """Deterministic split of episode k: ``heldout`` for held-out cells, else train/val by ``split_u``."""
    if heldout:
        return "heldout"
    return "val" if split_u(root_seed, k) < val_fraction else "train"


def grid_rng(root_seed: int, grid_hash32: int, episode_index: int) -> np.random.Generator:
    """The generator a ``random`` grid draws episode ``episode_index``'s levels from."""
    return np.random.default_rng(np.random.SeedSequence([int(root_seed), grid_hash32, int(episode_index)]))


# ----------------------------------------------------------------------------------- environment
class EpisodeGenerators(NamedTuple):
    """One generator per random quantity of an episode (the order of ``SeedSequence.spawn``)."""

    target: np.random.Generator
    layout: np.random.Generator
    colors: np.random.Generator
    scene: np.random.Generator
    robot: np.random.Generator
    language: np.random.Generator
    image: np.random.Generator


def episode_generators(np_random: np.random.Generator) -> EpisodeGenerators:
    """The episode's generators, from one draw of the env's seeded ``np_random``."""
    ss = np.random.SeedSequence(int(np_random.integers(0, 2**63 - 1)))
    return EpisodeGenerators(*(np.random.default_rng(s) for s in ss.spawn(7)))


# ------------------------------------------------------------------------------------ evaluation
def eval_seed(root_seed: int, cell_id: str, j: int) -> int:
    """Seed of episode j of a cell: depends only on (root seed, cell id, j)."""
    return _seed63([int(root_seed), zlib.crc32(cell_id.encode()), int(j)])


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


#: Salt of the ``random`` policy's generator.
RANDOM_POLICY_SALT = 0xA11


def random_policy_rng(policy_seed: int) -> np.random.Generator:
    """The ``random`` evaluation policy's generator for an episode (from the seed it is told)."""
    return np.random.default_rng([policy_seed, RANDOM_POLICY_SALT])


# ------------------------------------------------------------------------ analysis (explain, ground)
def counterfactual_rng(episode_seed: int) -> np.random.Generator:
    """``explain``: the generator of an episode's counterfactual targets."""
    return np.random.default_rng([int(episode_seed), 0xCF])


def occluder_rng(episode_seed: int, step: int) -> np.random.Generator:
    """``explain``: the generator of the random occluders of an episode's frame ``step``."""
    return np.random.default_rng([episode_seed, step, 0x0CC])


def probe_split_u(root_seed: int, scene_seed: int) -> float:
    """``probe``: a scene's uniform draw in [0, 1) that puts it in test, val or train."""
    return float(np.random.SeedSequence([int(root_seed), int(scene_seed), 0x9B0]).generate_state(1)[0] / 2**32)


def probe_scene_rng(root_seed: int, scene_seed: int) -> np.random.Generator:
    """``probe``: the generator of a scene's question choices."""
    return np.random.default_rng(np.random.SeedSequence([root_seed, scene_seed, 0x9B1]))


def probe_fit_rng(root_seed: int) -> np.random.Generator:
    """``probe``: the generator of the control fits (random features, shuffled labels)."""
    return np.random.default_rng(np.random.SeedSequence([int(root_seed), 0x9B2]))
