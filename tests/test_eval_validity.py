"""Issue 21, findings 2 and 9: what a policy is told cannot fix the scene, privileged runs are refused or
marked not comparable, and a random grid means in eval what it means in generation (every axis sampled
at once per episode, by the same function), with per-axis marginals in summary.json and report.html."""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bomb_data.config import load_config
from bomb_data.evaluate.protocol import policy_seed
from bomb_data.evaluate.runner import eval_seed, read_results
from bomb_data.perturb.grid import load_grid

NOOP = np.array([0, 0, 0, 0, 0, 0, -1.0], np.float32)
Z = 1.959963984540054

TINY_RANDOM = {
    "description": "three axes sampled together, one held-out level",
    "mode": "random",
    "heldout_rate": 0.2,
    "axes": {
        "brightness": {"levels": [0.0, 0.1, -0.1], "heldout": [-0.1]},
        "n_board_stones": {"levels": [0, 2]},
        "coordinate_convention": {"levels": ["zero_based", "one_based"]},
    },
}


def small_cfg(max_steps: int = 10):
    return load_config(overrides={"sim": {"image_height": 32, "image_width": 32, "max_steps": max_steps}})


def run_eval(*args: str):
    """``bomb-data eval ARGS`` in this process (so python: policies can record what they receive)."""
    from bomb_data.cli import main
    from bomb_data.evaluate.cli import eval_cmd

    if "eval" not in main.commands:
        main.add_command(eval_cmd)
    return CliRunner().invoke(main, ["eval", "--image-size", "32", "--max-steps", "10", "--workers", "1", "-q",
                                     *args])


def wilson(k: int, n: int) -> tuple[float, float]:
    p = k / n
    den = 1 + Z * Z / n
    centre = (p + Z * Z / (2 * n)) / den
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / den
    return round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)


# --------------------------------------------------------------------------- policies for the tests
STARTS: list = []
OBS_KEYS: list = []


class RecordingPolicy:
    """Holds still; records every ``EpisodeStart`` and the keys of every observation it is given."""

    def reset(self, start):
        STARTS.append(start)

    def act(self, obs):
        OBS_KEYS.append(sorted(obs))
        return NOOP


def peeking_policy():
    """A policy that declares it reads privileged state (and records what it was given)."""

    def act(obs):
        OBS_KEYS.append(sorted(obs))
        return NOOP

    return act


peeking_policy.privileged = True  # the declaration, read before the factory is called


# ------------------------------------------------------------------------------ finding 2: the seed
def test_policy_seed_is_the_documented_one_way_hash():
    seeds = [0, 1, 2, 12345, eval_seed(0, "nominal", 0), 2**63 - 1]
    got = [policy_seed(s) for s in seeds]
    for s, g in zip(seeds, got):
        # recomputed from the formula in the docstring and docs/evaluation.md
        d = hashlib.blake2b(str(s).encode(), digest_size=8, person=b"bomb-data/pseed1").digest()
        assert g == int.from_bytes(d, "big") >> 1
        assert 0 <= g < 2**63 and g != s
        assert policy_seed(s) == g  # stable
    assert len(set(got)) == len(got)
    with pytest.raises(ValueError):
        policy_seed(-1)


def test_the_policy_seed_does_not_give_back_the_scene(tmp_path: Path):
    """A sceptic's attack: re-run env.reset with the seed a python: policy received. Before issue 21 the
    policy's seed was the episode seed and this recovered every target."""
    STARTS.clear()
    OBS_KEYS.clear()
    out = tmp_path / "ev"
    res = run_eval("--policy", "python:tests.test_eval_validity:RecordingPolicy", "--grid", "nominal",
                   "--episodes-per-cell", "6", "--videos-per-cell", "0", "--out", str(out))
    assert res.exit_code == 0, res.output
    rows = {r["episode_id"]: r for r in read_results(out / "results.jsonl")}
    assert len(STARTS) == len(rows) == 6
    assert all(not k.startswith("bomb/") for keys in OBS_KEYS for k in keys)  # no privileged keys, no seed
    from bomb_data.env import GoPlaceEnv

    env = GoPlaceEnv(small_cfg())
    recovered = 0
    try:
        for st in STARTS:
            r = rows[st.episode_id]
            assert st.seed == policy_seed(r["seed"]) != r["seed"]
            params = load_grid("nominal").cells()[0].params
            _, info = env.reset(seed=r["seed"], options={"params": params})
            assert list(info["target"]) == r["target"]  # the episode seed does reproduce the episode...
            truth = np.array(info["privileged"]["board_stones"])
            _, guess = env.reset(seed=st.seed, options={"params": params})
            # ... the policy's seed gives another scene
            assert not np.allclose(np.array(guess["privileged"]["board_stones"]), truth)
            recovered += list(guess["target"]) == r["target"]
    finally:
        env.close()
    assert recovered <= 2, f"{recovered}/6 targets recovered from the policy's seed"


# ------------------------------------------------------------------------ finding 2: privileged state
@pytest.mark.parametrize("policy", ["random", "python:bomb_data.evaluate.policies:NoopPolicy",
                                    "python:tests.test_eval_validity:RecordingPolicy"])
def test_send_privileged_to_an_undeclared_policy_is_refused(tmp_path: Path, policy: str):
    out = tmp_path / "ev"
    res = run_eval("--policy", policy, "--send-privileged", "--out", str(out))
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "does not declare" in lines[0] and "Traceback" not in res.output
    assert not (out / "results.jsonl").exists() and not (out / "run.json").exists()


def _tables_and_marks(page: str) -> tuple[int, int]:
    tables = re.findall(r"<table[^>]*>(.{0,120})", page)
    marked = [t for t in tables if t.startswith("<caption class='nc'>NOT COMPARABLE")]
    return len(tables), len(marked)


def test_privileged_runs_are_marked_not_comparable_and_others_are_not(tmp_path: Path):
    grid = tmp_path / "tiny.yaml"
    grid.write_text(json.dumps(TINY_RANDOM))  # JSON is YAML; a random grid also has the marginals table
    OBS_KEYS.clear()
    res = run_eval("--policy", "python:tests.test_eval_validity:peeking_policy", "--grid", str(grid),
                   "--episodes-per-cell", "1", "--videos-per-cell", "0", "--out", str(tmp_path / "peek"))
    assert res.exit_code == 0, res.output
    assert OBS_KEYS and all({"bomb/privileged", "bomb/seed", "bomb/step"} <= set(k) for k in OBS_KEYS)
    brief = json.loads(res.output[res.output.index("{"):])
    assert brief["comparable"] is False and "privileged" in brief["not_comparable_reason"]
    s = json.loads((tmp_path / "peek" / "summary.json").read_text())
    assert s["comparable"] is False and "declares privileged" in s["not_comparable_reason"]
    run = json.loads((tmp_path / "peek" / "run.json").read_text())
    assert run["privileged"] == {"sent": True, "declared": True}
    page = (tmp_path / "peek" / "report.html").read_text()
    assert re.search(r"<title>NOT COMPARABLE: ", page) and "id='not-comparable'" in page
    assert re.search(r"<h1><span class='nc'>NOT COMPARABLE: </span>", page)
    n_tables, n_marked = _tables_and_marks(page)
    assert n_tables == 2 and n_marked == n_tables  # overall, cells

    res = run_eval("--policy", "noop", "--grid", str(grid), "--episodes-per-cell", "1", "--videos-per-cell", "0",
                   "--out", str(tmp_path / "noop"))
    assert res.exit_code == 0, res.output
    s = json.loads((tmp_path / "noop" / "summary.json").read_text())
    assert s["comparable"] is True and s["not_comparable_reason"] is None
    page = (tmp_path / "noop" / "report.html").read_text()
    assert "NOT COMPARABLE" not in page and _tables_and_marks(page) == (2, 0)
