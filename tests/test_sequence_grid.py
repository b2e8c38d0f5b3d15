"""Sequence grids (``task: sequence``): the sequence axes, invalid combinations refused at load, the
task recorded in the store, and the cell's sequence used by ``generate``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bomb_data.errors import ConfigError
from bomb_data.params import EpisodeParams
from bomb_data.perturb.grid import grid_from_dict, list_grids, load_grid
from bomb_data.sequence.params import SequenceParams
from bomb_data.store.reader import EpisodeStore

ROOT = Path(__file__).resolve().parents[1]
SEQ = {"task": "sequence", "sequence": {"board_size": 9, "length": 5, "move_number": 10}}


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MUJOCO_GL": "egl"}
    return subprocess.run([sys.executable, "-m", "bomb_data", *args], capture_output=True, text=True, env=env,
                          timeout=900)


def test_shipped_sequence_grids_carry_the_whole_sequence_in_every_cell():
    seq = [n for n in list_grids() if load_grid(n).task == "sequence"]
    assert {"sequence", "sequence_ablation"} <= set(seq)
    for name in list_grids():
        g = load_grid(name)
        for c in g.cells():
            if g.task == "sequence":
                assert isinstance(c.params.sequence, SequenceParams), (name, c.id)
            else:
                assert c.params.sequence is None and "sequence" not in c.params.model_dump()
    g = load_grid("sequence")
    by_id = {c.id: c.params.sequence for c in g.cells()}
    s = by_id["sequence_length=3,move_number=15,plan_mode=on,sequence_source=sgf9"]
    assert (s.length, s.move_number, s.plan_mode, s.source, s.sgf, s.board_size) == (3, 15, True, "sgf", "9x9", 9)
    s = by_id["sequence_length=1,move_number=5"]
    assert (s.length, s.move_number, s.plan_mode, s.source, s.capture_bias) == (1, 5, False, "generated", 0.8)
    # the params round-trip through the store's JSON with the sequence
    for c in g.cells():
        assert EpisodeParams.model_validate(c.params.model_dump(mode="json")) == c.params


def test_sequence_levels_equal_to_the_grids_nominal_are_nominal_and_combine_with_other_axes():
    g = grid_from_dict({**SEQ, "mode": "full", "axes": {"sequence_length": {"levels": [5, 2]},
                                                        "coordinate_convention": {"levels": ["nominal", "go_letters"]},
                                                        "board_yaw": {"levels": ["nominal", "cw"]}}})
    ids = [c.id for c in g.cells()]
    assert ids[0] == "nominal" and len(ids) == 8
    c = {c.id: c for c in g.cells()}["sequence_length=2,coordinate_convention=go_letters,board_yaw=cw"]
    assert c.params.sequence.length == 2 and c.params.language.convention == "go_letters"
    assert c.params.scene.board_yaw_deg == -15.0


@pytest.mark.parametrize("grid, needle", [
    ({"mode": "one-at-a-time", "axes": {"sequence_length": {"levels": [3]}}},
     "axes.sequence_length: a sequence axis, expected task: sequence"),
    ({"mode": "nominal", "sequence": {"length": 3}}, "sequence: expected only in a grid with task: sequence"),
    ({**SEQ, "mode": "one-at-a-time", "axes": {"n_board_stones": {"levels": [8]}}},
     "axes.n_board_stones: decided by the game"),
    ({**SEQ, "mode": "one-at-a-time", "axes": {"board_size": {"levels": [7]}}},
     "sequence.board_size (9) replaces the scene's board size"),
    ({"task": "sequence", "sequence": {"length": 30}, "mode": "nominal"}, "sequence: length: Input should be less"),
    # K longer than the remaining game: capture_ko_9x9.sgf has 22 moves
    ({**SEQ, "mode": "full", "axes": {"move_number": {"levels": [10, 20]},
                                      "sequence_source": {"levels": ["9x9/capture_ko_9x9.sgf"]}}},
     "cell move_number=20,sequence_source=9x9/capture_ko_9x9.sgf: --sgf"),
    # board size other than the SGF's
    ({**SEQ, "mode": "one-at-a-time", "axes": {"sequence_source": {"levels": ["5x5"]}}},
     "a 5x5 game, but the scene's board is 9x9"),
    ({**SEQ, "mode": "one-at-a-time", "axes": {"sequence_source": {"levels": ["no/such/dir"]}}},
     "no such file or directory"),
    # generated play past half the board
    ({**SEQ, "mode": "one-at-a-time", "axes": {"move_number": {"levels": [38]}}},
     "expected at most 40 moves of generated play on a 9x9 board"),
    # random mode: the combination 7x7 board x move number 30 is refused (the 9x9 board takes 30 moves)
    ({"task": "sequence", "sequence": {"board_size": None, "length": 2, "move_number": 0}, "mode": "random",
      "axes": {"board_size": {"levels": [7, 9]}, "move_number": {"levels": [0, 30]}}},
     "combination board_size=7,move_number=30"),
    ({**SEQ, "mode": "one-at-a-time", "axes": {"sequence_source": {"levels": ["a,b"]}}}, "sequence_source"),
])
def test_invalid_sequence_grids_are_one_line_at_load(grid, needle):
    with pytest.raises(ConfigError) as e:
        grid_from_dict(grid, name="bad")
    msg = str(e.value)
    assert needle in msg and "\n" not in msg, msg


def test_grid_hash_and_episode_params_depend_on_content_only():
    a = grid_from_dict({**SEQ, "mode": "random", "axes": {"sequence_length": {"levels": [1, 2, 3]},
                                                          "plan_mode": {"levels": ["off", "on"]}}}, name="a")
    b = grid_from_dict({**SEQ, "description": "x", "mode": "random",
                        "axes": {"sequence_length": {"levels": [1, 2, 3]}, "plan_mode": {"levels": ["off", "on"]}}},
                       name="b")
    c = grid_from_dict({**SEQ, "sequence": {**SEQ["sequence"], "capture_bias": 0.9}, "mode": "random",
                        "axes": {"sequence_length": {"levels": [1, 2, 3]}, "plan_mode": {"levels": ["off", "on"]}}},
                       name="a")
    assert a.hash == b.hash != c.hash
    assert [a.episode_params(4, k) for k in range(20)] == [b.episode_params(4, k) for k in range(20)]
    seen = {(p.sequence.length, p.sequence.plan_mode) for _, p in (a.episode_params(4, k) for k in range(60))}
    assert len(seen) == 6
    # a place grid does not become a sequence grid by the sequence section's absence: same hash as before
    p1 = grid_from_dict({"mode": "one-at-a-time", "axes": {"camera_fov": {"levels": [30]}}})
    p2 = grid_from_dict({"task": "place", "mode": "one-at-a-time", "axes": {"camera_fov": {"levels": [30]}}})
    assert p1.hash == p2.hash and p1.task == "place"


def test_grid_cli_show_and_bad_grid_one_line(tmp_path):
    r = _cli("grid", "show", "sequence", "--size", "64")
    assert r.returncode == 0, r.stderr
    assert "task sequence" in r.stdout and "sequence.plan_mode=True" in r.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**SEQ, "mode": "one-at-a-time",
                                   "axes": {"sequence_source": {"levels": ["5x5"]}}}))
    out = tmp_path / "store"
    for args in (("grid", "show", str(bad)),
                 ("generate", "--grid", str(bad), "--n", "1", "--out", str(out), "--workers", "1", "-q")):
        r = _cli(*args)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and "a 5x5 game" in lines[0], r.stderr
    assert not out.exists()
    # a sequence section in the configuration beside a sequence grid: refused, nothing written
    r = _cli("generate", "--grid", "sequence", "--sgf", "9x9", "--n", "1", "--out", str(out), "--workers", "1", "-q")
    assert r.returncode == 2 and "is a sequence grid" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_generate_with_a_sequence_grid_uses_each_cells_sequence(tmp_path):
    gfile = tmp_path / "seq.yaml"
    gfile.write_text(yaml.safe_dump({"task": "sequence", "mode": "full",
                                     "sequence": {"board_size": 9, "move_number": 14, "length": 1,
                                                  "rule_instruction": "capture"},
                                     "axes": {"sequence_length": {"levels": [1, 2]},
                                              "sequence_source": {"levels": ["9x9/capture_ko_9x9.sgf"]}}}))
    out = tmp_path / "store"
    r = _cli("generate", "--grid", str(gfile), "--n", "2", "--out", str(out), "--image-size", "16", "--workers", "1",
             "-q")
    assert r.returncode == 0, r.stderr[-2000:]
    store = EpisodeStore(out)
    d = store.description
    assert d["task"] == "sequence" and d["config"]["task"] == "sequence" and d["grid"]["task"] == "sequence"
    g = load_grid(gfile)
    for ep in store.iter_episodes(range(len(store))):
        m = ep.meta
        cell, params = g.episode_params(d["config"]["generate"]["seed"], m["episode_index"])
        assert m["cell_id"] == cell.id
        # the stored parameters are the cell's (the sequence included): an evaluator rebuilds from either
        assert EpisodeParams.model_validate(m["params"]).sequence == params.sequence
        assert m["sequence"]["length"] == params.sequence.length and m["sequence"]["sgf"] == "capture_ko_9x9.sgf"
        # move 15 (black J8) captures the white stone at J9: place, then remove
        places = [s for s in m["subtasks"] if s[0] == "place"]
        assert len(places) == params.sequence.length and ["remove", "white", 0, 8] in m["subtasks"]
        # ... and is the only capture there: the rule-derived instruction, its resolved target stored
        rule = m["sequence"]["rule"]
        assert m["sequence"]["rule_instruction"] == "capture" and rule["point"] == m["subtasks"][0][2:] == [1, 8]
        assert rule["stones"] == [[0, 8]] and "atari" in m["subtask_instructions"][0] == m["instruction"]
