"""bomb_data.seeds: each derivation is the formula its table documents, and the generation and
evaluation modules derive no seed of their own."""

from __future__ import annotations

import hashlib
import re
import zlib
from pathlib import Path

import numpy as np

from bomb_data import seeds

REPO = Path(__file__).resolve().parents[1]


def test_each_derivation_is_its_documented_formula():
    for root, k, a in [(0, 0, 0), (7, 3, 1), (2**40 + 5, 12345, 9)]:
        ss = np.random.SeedSequence([root, k, a])
        assert seeds.episode_seed(root, k, a) == int(ss.generate_state(1, np.uint64)[0]) >> 1
        u = np.random.SeedSequence([root, k, 0x5B1]).generate_state(1)[0] / 2**32
        assert seeds.split_u(root, k) == u
        assert seeds.split_of(root, k, False, 0.5) == ("val" if u < 0.5 else "train")
        assert seeds.split_of(root, k, True, 0.5) == "heldout"
        g = seeds.grid_rng(root, 0xDEADBEEF, k).integers(0, 2**62, 4)
        want_g = np.random.default_rng(np.random.SeedSequence([root, 0xDEADBEEF, k])).integers(0, 2**62, 4)
        assert np.array_equal(g, want_g)
        for cell in ("nominal", "table_color=green", "random"):
            ss = np.random.SeedSequence([root, zlib.crc32(cell.encode()), k])
            assert seeds.eval_seed(root, cell, k) == int(ss.generate_state(1, np.uint64)[0]) >> 1
        d = hashlib.blake2b(str(root).encode(), digest_size=8, person=b"bomb-data/pseed1").digest()
        assert seeds.policy_seed(root) == int.from_bytes(d, "big") >> 1
        r = seeds.random_policy_rng(root).uniform(size=3)
        assert np.array_equal(r, np.random.default_rng([root, 0xA11]).uniform(size=3))
        plan, noise = seeds.expert_rngs(root)
        want = [np.random.default_rng(s) for s in np.random.SeedSequence([root, 1]).spawn(2)]
        assert plan.uniform() == want[0].uniform() and noise.normal() == want[1].normal()
        for got, want in [(seeds.counterfactual_rng(root), np.random.default_rng([root, 0xCF])),
                          (seeds.occluder_rng(root, k), np.random.default_rng([root, k, 0x0CC])),
                          (seeds.probe_scene_rng(root, k),
                           np.random.default_rng(np.random.SeedSequence([root, k, 0x9B1]))),
                          (seeds.probe_fit_rng(root), np.random.default_rng(np.random.SeedSequence([root, 0x9B2])))]:
            assert got.uniform() == want.uniform()
        assert seeds.probe_split_u(root, k) == np.random.SeedSequence([root, k, 0x9B0]).generate_state(1)[0] / 2**32
    env_rng = np.random.default_rng(3)
    gens = seeds.episode_generators(env_rng)
    ss = np.random.SeedSequence(int(np.random.default_rng(3).integers(0, 2**63 - 1)))
    assert [g.uniform() for g in gens] == [np.random.default_rng(s).uniform() for s in ss.spawn(7)]


def test_streams_do_not_coincide():
    """Different derivations of the same numbers give different seeds (their salts differ)."""
    assert seeds.episode_seed(0, 1, 2) != seeds.eval_seed(0, "nominal", 1)
    assert len({seeds.episode_seed(5, k, a) for k in range(20) for a in range(5)}) == 100
    assert seeds.policy_seed(seeds.episode_seed(0, 0, 0)) != seeds.episode_seed(0, 0, 0)


def test_generation_and_evaluation_derive_no_seed_of_their_own():
    mods = ["generate.py", "rollout.py", "env.py", "preview.py", "perturb/grid.py", "sequence/env.py",
            "sequence/rollout.py", "explain/runner.py", "ground/probe.py", "ground/features.py",
            *[f"evaluate/{p.name}" for p in (REPO / "bomb_data" / "evaluate").glob("*.py")]]
    for m in mods:
        text = (REPO / "bomb_data" / m).read_text()
        bad = re.findall(r"np\.random\.SeedSequence\(|default_rng\(\[|crc32\(.*\bseed|blake2b\(", text)
        assert not bad, (m, bad)
