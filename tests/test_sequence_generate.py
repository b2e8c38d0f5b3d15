"""``generate --task sequence`` / ``--sgf``: per-step subtask fields in the store, bad SGF input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from bomb_data._resources import shipped
from bomb_data.perturb.language import parse_target
from bomb_data.store.reader import EpisodeStore

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MUJOCO_GL": "egl"}
    return subprocess.run([sys.executable, "-m", "bomb_data", *args], capture_output=True, text=True, env=env,
                          timeout=900)


def test_generate_sgf_sequence_store_has_subtask_steps(tmp_path):
    out = tmp_path / "seq"
    r = _cli("generate", "--sgf", str(shipped("sgf") / "9x9" / "capture_ko_9x9.sgf"), "--n", "1", "--out", str(out),
             "--image-size", "16", "--workers", "1", "-q")
    assert r.returncode == 0, r.stderr[-2000:]
    store = EpisodeStore(out)
    assert store.description["task"] == "sequence"
    ep = next(iter(store.iter_episodes(range(len(store)))))
    m = ep.meta
    assert m["success"] and m["task"] == "sequence" and m["sequence"]["sgf"] == "capture_ko_9x9.sgf"
    si = ep["subtask_index"]
    assert si.shape == (ep.length,) and si.dtype == np.int32
    # subtask_index steps 0, 1, ... and changes exactly at the recorded subtask ends
    assert si[0] == 0 and np.all(np.diff(si) >= 0) and si[-1] == len(m["subtasks"]) - 1
    assert m["subtask_ends"][-1] == ep.length
    assert np.flatnonzero(np.diff(si)).tolist() == [e - 1 for e in m["subtask_ends"][:-1]]
    # each step's instruction (subtask_instructions[subtask_index]) names that subtask's intersection
    for (_kind, color, r_, c_), text in zip(m["subtasks"], m["subtask_instructions"]):
        assert parse_target(text, 9, m["convention"]) == (r_, c_) and color in text
    # default move number 10 + length 5 of this game: F5 x E5 is move 9, before the start; J9 is captured at 15
    assert ["remove", "white", 0, 8] in m["subtasks"]
    final = {(r_, c_): col for r_, c_, col in m["final_position"]}
    assert (0, 8) not in final and final[(1, 8)] == "black"


def test_bad_sgf_is_one_line_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.sgf"
    bad.write_text("(;GM[1]SZ[9];B[ee];W[")
    cases = [(bad, "not a valid SGF"),
             (shipped("sgf") / "5x5", "a 5x5 game, but the scene's board is 9x9"),
             (shipped("sgf") / "bad", "fewer than move number 10 + sequence length 5"),
             (tmp_path / "none.sgf", "no such file")]
    for path, msg in cases:
        out = tmp_path / "store"
        r = _cli("generate", "--sgf", str(path), "--n", "1", "--out", str(out), "--image-size", "16", "--workers", "1",
                 "-q")
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and msg in lines[0], r.stderr
        assert not out.exists()
