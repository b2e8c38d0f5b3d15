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
from bomb_data.evaluate.metrics import aggregate
from bomb_data.evaluate.protocol import policy_seed
from bomb_data.evaluate.runner import RANDOM_CELL, eval_seed, finalize, grid_episodes, read_results
from bomb_data.params import EpisodeParams
from bomb_data.perturb.grid import grid_from_dict, load_grid

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


def test_a_served_policy_gets_the_policy_seed_too():
    """Behind the reference servers, bomb/seed (sent with privileged state) is the episode seed; the
    served policy's reset() still receives only the one-way policy seed."""
    from bomb_data.evaluate.servers import ServedPolicy

    STARTS.clear()
    served = ServedPolicy(RecordingPolicy)
    for s in (5, 6, 5):
        served.infer({"bomb/seed": s, "instruction": "place the stone"})
    assert [st.seed for st in STARTS] == [policy_seed(5), policy_seed(6)]  # one policy per episode
    assert [st.episode_id for st in STARTS] == [f"{policy_seed(5):016x}", f"{policy_seed(6):016x}"]


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
    assert n_tables == 3 and n_marked == n_tables  # overall, marginals, cells

    res = run_eval("--policy", "noop", "--grid", str(grid), "--episodes-per-cell", "1", "--videos-per-cell", "0",
                   "--out", str(tmp_path / "noop"))
    assert res.exit_code == 0, res.output
    s = json.loads((tmp_path / "noop" / "summary.json").read_text())
    assert s["comparable"] is True and s["not_comparable_reason"] is None
    page = (tmp_path / "noop" / "report.html").read_text()
    assert "NOT COMPARABLE" not in page and _tables_and_marks(page) == (3, 0)


# ------------------------------------------------------------------------- finding 9: random grids
def test_random_grid_episodes_sample_every_axis_at_once_with_the_generation_draw():
    g = load_grid("randomized")
    eps = grid_episodes(g, 1, 7, 0)
    assert len(eps) == len(g.cells())  # K x listed cells
    n_changed = []
    for i, e in enumerate(eps):
        c, p = g.episode_params(7, i)  # the function generation uses for episode i
        assert e.episode_id == f"{RANDOM_CELL}/{i}" and e.cell_id == RANDOM_CELL
        assert e.params == p.model_dump(mode="json") and e.heldout == c.heldout
        assert dict(e.grid_levels) == dict(c.grid_levels) and list(dict(e.grid_levels)) == list(g.levels)
        assert e.seed == eval_seed(7, RANDOM_CELL, i)
        n_changed.append(len(e.levels))
    # several axes vary at once in almost every episode (one-at-a-time would give at most 1)
    assert np.median(n_changed) >= 8 and min(n_changed) >= 2, n_changed
    # held-out levels appear in about heldout_rate of the episodes, never mixed into the others
    held = [e for e in eps if e.heldout]
    assert 0 < len(held) < len(eps) / 2
    for e in eps:
        lv = dict(e.grid_levels)
        n_held = sum(1 for a, levels in g.levels.items() for x in levels if x.heldout and lv[a] == x.id)
        assert n_held == (1 if e.heldout else 0)


def test_other_grid_modes_keep_their_meaning():
    g = load_grid("study")
    eps = grid_episodes(g, 2, 0, 1)
    assert [e.episode_id for e in eps[:4]] == ["nominal/0", "nominal/1", f"{g.cells()[1].id}/0", f"{g.cells()[1].id}/1"]
    assert len(eps) == 2 * len(g.cells()) and all(len(e.levels) <= 1 and e.grid_levels == () for e in eps)
    full = grid_from_dict({"mode": "full", "axes": {"brightness": {"levels": [0.0, 0.1]},
                                                     "n_board_stones": {"levels": [0, 2, 3]}}})
    eps = grid_episodes(full, 1, 0, 0)
    assert [e.cell_id for e in eps] == [c.id for c in full.cells()] and len(eps) == 6
    assert all(list(dict(e.grid_levels)) == ["brightness", "n_board_stones"] for e in eps)
    assert [dict(e.grid_levels)["n_board_stones"] for e in eps] == ["0", "2", "3", "0", "2", "3"]


def test_a_stored_cell_reads_back_as_the_grid_cell_it_was_written_from():
    """A store records an episode's cell by its id alone; ``EpisodeCell.of_stored`` reads the levels
    back. For a one-at-a-time grid that is exactly the grid's cell; for a combined cell, its levels."""
    from bomb_data.evaluate.plan import EpisodeCell

    for c in load_grid("study").cells():
        split = "heldout" if c.heldout else "train"
        assert EpisodeCell.of_stored({"cell_id": c.id, "split": split}) == EpisodeCell.of(c)
    full = grid_from_dict({"mode": "full", "axes": {"brightness": {"levels": [0.0, 0.1]},
                                                     "n_board_stones": {"levels": [0, 2, 3]}}})
    for c in full.cells():
        got = EpisodeCell.of_stored({"cell_id": c.id})
        assert got.levels == c.levels and not got.heldout and got.grid_levels == ()
        # one non-nominal level names its axis (as a one-at-a-time cell); several name none
        assert (got.axis, got.level) == (c.levels[0] if len(c.levels) == 1 else (None, None))
    assert EpisodeCell.of_stored({}) == EpisodeCell("nominal")


def test_eval_and_generate_draw_the_same_parameters_for_the_same_seed(tmp_path: Path):
    from tests._stores import make_store

    store = make_store(tmp_path / "store", n=3, H=32, W=32, grid="randomized", seed=3)
    by_k = {e.j: e for e in grid_episodes(load_grid("randomized"), 1, 3, 0)}
    assert len(store.episodes) >= 3
    for m in store.episodes:
        e = by_k[int(m["episode_index"])]
        assert EpisodeParams.model_validate(e.params) == EpisodeParams.model_validate(m["params"])
        # the documented difference: the scene seed is the evaluator's, so eval with the training seed
        # meets the training combinations of levels in other scenes, never the training episodes
        assert e.seed != int(m["seed"])


def test_eval_on_a_random_grid_records_levels_and_params_and_reports_marginals(tmp_path: Path):
    grid = tmp_path / "tiny.yaml"
    grid.write_text(json.dumps(TINY_RANDOM))
    out = tmp_path / "ev"
    res = run_eval("--policy", "noop", "--grid", str(grid), "--episodes-per-cell", "2", "--videos-per-cell", "1",
                   "--out", str(out))
    assert res.exit_code == 0, res.output
    rows = read_results(out / "results.jsonl")
    g = load_grid(str(grid))
    assert len(rows) == 2 * len(g.cells()) == 12
    multi = 0
    for r in rows:
        k = int(r["episode_id"].split("/")[1])
        c, p = g.episode_params(0, k)
        assert r["cell_id"] == RANDOM_CELL and r["grid_levels"] == dict(c.grid_levels)
        assert r["params"] == p.model_dump(mode="json") and r["heldout"] == c.heldout
        # the parameters were applied to this episode: the instruction's convention is the one drawn
        assert r["convention"] == r["grid_levels"]["coordinate_convention"]
        multi += sum(1 for a in ("brightness", "n_board_stones", "coordinate_convention")
                     if r["grid_levels"][a] not in ("0", "3", "zero_based")) >= 2
    assert multi >= 3  # several episodes change two or three axes at once
    assert [r["video"] is not None for r in sorted(rows, key=lambda r: r["j"])][:2] == [True, False]
    s = json.loads((out / "summary.json").read_text())
    assert s["grid_mode"] == "random" and list(s["per_axis_marginal"]) == list(g.levels)
    for axis, levels in s["per_axis_marginal"].items():
        assert list(levels) == [lv.id for lv in g.levels[axis]]
        assert sum(b["n"] + b["n_error"] for b in levels.values()) == len(rows)
        for lv, b in levels.items():
            assert b["n"] == sum(1 for r in rows if r["grid_levels"][axis] == lv and r["status"] == "ok")
    assert s["per_axis_marginal"]["brightness"]["-0.1"]["heldout"] is True
    page = (out / "report.html").read_text()
    assert "Per-axis marginals" in page and "id='marginals'" in page


def test_marginals_of_a_constructed_results_file(tmp_path: Path):
    """Hand-made rows with known counts: the marginal of each level is over every row that took it,
    whatever the other axis took; error rows count apart; rows without grid_levels are left out."""
    spec = [  # (table_color, n_board_stones, episodes, successes)
        ("gray", "0", 5, 4), ("gray", "8", 5, 3), ("red", "0", 2, 1), ("red", "8", 4, 0), ("blue", "0", 4, 4)]
    rows = []
    for color, stones, n, k in spec:
        for i in range(n):
            rows.append({"episode_id": f"random/{len(rows)}", "cell_id": "random", "status": "ok",
                         "success": i < k, "heldout": color == "blue",
                         "grid_levels": {"table_color": color, "n_board_stones": stones}})
    rows.append({"episode_id": "random/99", "cell_id": "random", "status": "error", "success": False,
                 "heldout": False, "grid_levels": {"table_color": "gray", "n_board_stones": "8"}})
    rows.append({"episode_id": "nominal/0", "cell_id": "nominal", "status": "ok", "success": True, "heldout": False})
    grid_axes = {"table_color": [["gray", False], ["red", False], ["blue", True], ["white", False]],
                 "n_board_stones": [["0", False], ["8", False]]}
    want = {"table_color": {"gray": (10, 7, 1, 11), "red": (6, 1, 0, 6), "blue": (4, 4, 0, 4), "white": (0, 0, 0, 0)},
            "n_board_stones": {"0": (11, 9, 0, 11), "8": (9, 3, 1, 10)}}  # n, successes, errors, rows
    m = aggregate(rows, grid_axes)["per_axis_marginal"]
    assert {a: list(v) for a, v in m.items()} == {a: list(v) for a, v in want.items()}
    for a, levels in want.items():
        for lv, (n, k, err, total) in levels.items():
            b = m[a][lv]
            assert (b["n"], b["successes"], b["n_error"]) == (n, k, err)
            assert b["heldout"] is (lv == "blue")
            assert b["share"] == round(total / 21, 4)
            if n:
                assert b["success_rate"] == round(k / n, 4) and tuple(b["ci95"]) == wilson(k, n)
            else:
                assert b["success_rate"] is None and b["ci95"] == [0.0, 1.0]
    # the same file through finalize: summary.json and the report's marginals table
    out = tmp_path / "ev"
    out.mkdir()
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "run.json").write_text(json.dumps({"key": {"policy": "noop", "adapter": {"send_privileged": False}},
                                              "grid_mode": "random", "grid_axes": grid_axes}))
    s = finalize(out)
    assert s["per_axis_marginal"] == m and s["comparable"] is True
    assert s["per_split"]["heldout_levels"]["n"] == 4 and s["per_split"]["train_levels"]["n_error"] == 1
    page = (out / "report.html").read_text()
    for a, levels in want.items():
        for lv, (n, k, err, _) in levels.items():
            tr = re.search(rf"<tr data-axis='{a}' data-level='{lv}'>(.*?)</tr>", page).group(1)
            cells = dict(re.findall(r"data-key='(\w+)'(?: data-value='[^']*')?>([^<]*)<", tr))
            assert (int(cells["n"]), int(cells["successes"]), int(cells["n_error"])) == (n, k, err)
            if n:
                assert cells["ci_low"] == f"{100 * wilson(k, n)[0]:.1f}%"
