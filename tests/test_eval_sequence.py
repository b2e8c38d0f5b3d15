"""`bomb-data eval` on GoSequence episodes (issue 27): CALVIN's chain protocol, chain metrics per cell
and axis, the report's chains and boards (checked in headless Chromium), resume after kill -9, bad input."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bomb_data.config import load_config
from bomb_data.evaluate.runner import evaluate, read_results
from bomb_data.sequence.pictures import WOOD

from . import sequence_eval_policies
from .test_eval_faults import content  # result rows without their timing fields

REPO = Path(__file__).resolve().parents[1]
#: Two cells (nominal and Go-letter coordinates); the sequence from the configuration (task: sequence).
GRID = """description: two cells for sequence tests
mode: one-at-a-time
axes:
  coordinate_convention:
    levels: [go_letters]
"""
SEQUENCE = {"length": 2, "move_number": 24, "capture_bias": 1.0}
SIZE, MAX_STEPS = 32, 160


def seq_cfg(**sequence):
    return load_config(overrides={"sim": {"image_height": SIZE, "image_width": SIZE, "max_steps": MAX_STEPS},
                                  "task": "sequence", "sequence": {**SEQUENCE, **sequence}})


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("seqeval")
    (d / "grid.yaml").write_text(GRID)
    (d / "sequence.yaml").write_text("task: sequence\nsequence:\n" +
                                     "".join(f"  {k}: {v}\n" for k, v in SEQUENCE.items()))
    return {"grid": d / "grid.yaml", "config": d / "sequence.yaml"}


@pytest.fixture(scope="module")
def expert_run(tmp_path_factory: pytest.TempPathFactory, files) -> Path:
    """The expert, one episode per cell, uninterrupted (the reference for the resume test)."""
    out = tmp_path_factory.mktemp("expert") / "ev"
    evaluate(seq_cfg(), "expert", out, grid=str(files["grid"]), episodes_per_cell=1, workers=1, videos_per_cell=1)
    return out


def browser(page: Path, shot: Path) -> str:
    """The DOM of ``page`` after headless Chromium loaded it, and a screenshot of it."""
    exe = next((shutil.which(x) for x in ("chromium", "chromium-browser", "google-chrome") if shutil.which(x)), None)
    if exe is None:
        pytest.skip("no Chromium here (apt-get install chromium)")
    args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1200,4000"]
    subprocess.run([*args, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120, check=True)
    return subprocess.run([*args, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120,
                          check=True).stdout


# ------------------------------------------------------------------------------------- expert
def test_expert_completes_every_chain_and_the_report_shows_it(expert_run: Path, tmp_path: Path):
    rows = read_results(expert_run / "results.jsonl")
    assert len(rows) == 2 and {r["cell_id"] for r in rows} == {"nominal", "coordinate_convention=go_letters"}
    for r in rows:
        assert r["task"] == "sequence" and r["status"] == "ok" and r["success"], r.get("failure_reason")
        n = r["n_subtasks"]
        assert n >= 2 and r["completed"] == n and r["failed_subtask"] is None and r["displaced_points"] == []
        subs = r["subtask_results"]
        assert [s["outcome"] for s in subs] == ["success"] * n
        assert sum(s["steps"] for s in subs) == r["steps"]  # every step counted in exactly one subtask
        assert [[s["kind"], s["color"], *s["point"]] for s in subs] == r["subtasks"]
        for s in subs:
            if s["kind"] == "place":
                assert 0 <= s["placement_error_cells"] < load_config().sim.success_tolerance_cells
            else:
                assert s["placement_error_mm"] is None
        assert sum(k == "place" for k, *_ in r["subtasks"]) == SEQUENCE["length"]
    assert any(k == "remove" for r in rows for k, *_ in r["subtasks"]), "capture_bias 1.0 should capture"
    s = json.loads((expert_run / "summary.json").read_text())
    assert s["task"] == "sequence" and s["complete"]
    for block in [s["overall"], *s["per_cell"].values(), *s["per_axis_level"]["coordinate_convention"].values()]:
        c = block["chain"]
        assert c["full_success"] == 1.0 and all(x == 1.0 for x in c["chain_success"])
        assert all(k == n for k, n in c["chain_counts"]) and all(hi == 1.0 for _, hi in c["chain_ci95"])
    c = s["overall"]["chain"]
    longest = max(r["n_subtasks"] for r in rows)
    assert len(c["chain_success"]) == longest and c["chain_counts"][0] == [2, 2]
    assert c["chain_counts"][-1][1] == sum(r["n_subtasks"] == longest for r in rows)
    assert c["average_completed"] == round(float(np.mean([r["n_subtasks"] for r in rows])), 3)
    n_remove = sum(k == "remove" for r in rows for k, *_ in r["subtasks"])
    assert c["subtask_success"]["place"] == {"n": 4, "successes": 4, "success_rate": 1.0,
                                             "ci95": c["subtask_success"]["place"]["ci95"]}
    assert c["subtask_success"]["remove"]["successes"] == n_remove
    assert [m["n"] for m in c["placement_error_m_per_move"]] == [2, 2]
    moves = [sub["placement_error_mm"] for r in rows for sub in r["subtask_results"] if sub["kind"] == "place"]
    assert s["overall"]["placement_error_mm"]["count"] == 4
    assert s["overall"]["placement_error_mm"]["max"] == round(max(moves), 3)
    assert s["per_intersection"] == {}  # a sequence's targets are per move
    # the page: read back, then in a real browser
    page = (expert_run / "report.html").read_text()
    blob = json.loads(re.search(r"id='bomb-summary'>(.*?)</script>", page, re.S).group(1))
    assert blob["overall"]["chain"] == c
    dom = browser(expert_run / "report.html", tmp_path / "shot.png")
    figs = re.findall(r"<figure class=\"seq-ep\" data-episode=\"([^\"]+)\" data-completed=\"(\d+)\"", dom)
    assert sorted(figs) == sorted((r["episode_id"], str(r["completed"])) for r in rows)
    curves = re.findall(r"<figure class=\"seq-curve\" data-cell=\"([^\"]+)\"", dom)
    assert sorted(curves) == sorted(s["per_cell"]) and "chain length (all episodes)" in dom
    for cid, cell in s["per_cell"].items():  # the per-cell table: one column per k, the value behind each
        row = re.search(rf"<tr data-cell=\"{re.escape(cid)}\">(.*?)</tr>", dom.split('id="chain-cells"')[1]).group(1)
        assert re.findall(r'data-value="([^"]+)"', row) == [str(x) for x in cell["chain"]["chain_success"]]
    assert re.search(r"data-key=\"full_success\" data-value=\"1.0\"", dom)
    assert f"{n_remove}/{n_remove} (100.0%)" in dom and "Success per target intersection" not in dom
    shot = np.asarray(Image.open(tmp_path / "shot.png").convert("RGB")).astype(int)
    wood = np.all(np.abs(shot - np.array(WOOD)) <= 2, axis=2)
    assert wood.sum() > 2 * 100 * 100, "the board diagrams were not drawn by the browser"
    video = next(r["video"] for r in rows if r.get("video"))
    assert (expert_run / video).stat().st_size > 0


# -------------------------------------------------------------------------- one subtask, then still
def test_a_policy_that_stops_after_the_first_subtask_completes_exactly_one(tmp_path: Path, files):
    sequence_eval_policies.SEEN.clear()
    out = tmp_path / "ev"
    s = evaluate(seq_cfg(), "python:tests.sequence_eval_policies:FirstSubtaskThenStill", out,
                 grid=str(files["grid"]), episodes_per_cell=1, workers=1, videos_per_cell=0)
    rows = read_results(out / "results.jsonl")
    assert len(rows) == 2
    for r in rows:
        assert r["status"] == "ok" and not r["success"] and r["completed"] == 1 and r["failed_subtask"] == 1
        first, second = r["subtask_results"][:2]
        assert first["outcome"] == "success" and second["outcome"] == "failed"
        assert r["failed_kind"] == second["kind"]  # place, or remove when the first move captured
        assert r["failure_reason"] == second["failure_reason"] == "missed_grasp"
        assert second["steps"] == MAX_STEPS and r["steps"] == first["steps"] + MAX_STEPS
        assert all(x["outcome"] == "not_reached" and x["steps"] == 0 for x in r["subtask_results"][2:])
        # the policy was given each subtask's own instruction, the second from the step the first succeeded
        seen = [t for t, i in sequence_eval_policies.SEEN if t == first["instruction"] and i == 0]
        assert len(seen) == first["steps"]
        assert sum(1 for t, i in sequence_eval_policies.SEEN if t == second["instruction"] and i == 1) >= MAX_STEPS
    assert {i for _, i in sequence_eval_policies.SEEN} == {0, 1}
    c = s["overall"]["chain"]
    assert c["chain_success"][:2] == [1.0, 0.0] and c["chain_counts"][:2] == [[2, 2], [0, 2]]
    assert c["average_completed"] == 1.0 and c["full_success"] == 0.0
    kinds = [r["failed_kind"] for r in rows]
    assert c["failures_by_kind"] == {k: ({"missed_grasp": kinds.count(k)} if k in kinds else {})
                                     for k in ("place", "remove")}
    tried = {k: kinds.count(k) + (k == "place") * 2 for k in ("place", "remove")}
    for k in ("place", "remove"):
        assert (c["subtask_success"][k]["n"], c["subtask_success"][k]["successes"]) == (tried[k], 2 * (k == "place"))
    assert s["overall"]["success_rate"] == 0.0 and s["failure_reasons"] == {"missed_grasp": 2}
    page = (out / "report.html").read_text()
    assert page.count("class='seq-ep'") == 2 and page.count("data-completed='1'") == 2
    assert "stopped at subtask 2: place missed_grasp" in page


def test_a_policy_error_mid_chain_keeps_the_completed_subtasks_and_leaves_the_chain_metrics(tmp_path: Path, files):
    out = tmp_path / "ev"
    s = evaluate(seq_cfg(), "python:tests.sequence_eval_policies:FirstSubtaskThenRaise", out,
                 grid=str(files["grid"]), episodes_per_cell=1, workers=1, videos_per_cell=0)
    rows = read_results(out / "results.jsonl")
    for r in rows:
        assert r["status"] == "error" and r["error_kind"] == "policy_exception" and r["completed"] == 1
        assert [x["outcome"] for x in r["subtask_results"][:2]] == ["success", "failed"]
        assert r["subtask_results"][1]["failure_reason"] is None and r["failed_subtask"] == 1
    assert s["overall"]["n_error"] == 2 and s["overall"]["n"] == 0
    assert s["overall"]["chain"] == {"episodes": 0, "chain_ci95": [],
                                     "subtask_success": s["overall"]["chain"]["subtask_success"]}
    assert s["overall"]["chain"]["subtask_success"]["place"]["n"] == 0


# ----------------------------------------------------------------------------------- plan mode
def test_plan_mode_gives_the_whole_plan_and_is_scored_the_same(tmp_path: Path, files):
    sequence_eval_policies.SEEN.clear()
    out = tmp_path / "ev"
    s = evaluate(seq_cfg(plan_mode=True), "python:tests.sequence_eval_policies:FirstSubtaskThenStill", out,
                 grid=str(files["grid"]), episodes_per_cell=1, workers=1, videos_per_cell=0)
    rows = read_results(out / "results.jsonl")
    for r in rows:
        assert r["plan_mode"] and r["instruction"].startswith("in order, play ") and r["completed"] == 1
    texts = {t for t, _ in sequence_eval_policies.SEEN}
    assert texts == {r["instruction"] for r in rows}  # one sentence per episode, whatever the subtask
    assert s["overall"]["chain"]["chain_counts"][:2] == [[2, 2], [0, 2]]


# ------------------------------------------------------------------------------ kill -9, resume
def eval_cli(out: Path, files, fault: str | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "BOMB_FAULT"}
    env["PYTHONPATH"] = str(REPO)
    if fault:
        env["BOMB_FAULT"] = fault
    args = ["eval", "--policy", "expert", "--config", str(files["config"]), "--grid", str(files["grid"]),
            "--episodes-per-cell", "1", "--out", str(out), "--workers", "1", "--image-size", str(SIZE),
            "--max-steps", str(MAX_STEPS), "--videos-per-cell", "1", "-q"]
    return subprocess.Popen([sys.executable, "-m", "bomb_data.cli", *args], cwd=str(REPO), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def test_kill_after_the_first_episode_then_resume_gives_the_uninterrupted_rows(tmp_path: Path, files, expert_run):
    out = tmp_path / "ev"
    p = eval_cli(out, files, fault="eval.results.appended@1")
    _, err = p.communicate(timeout=600)
    assert p.returncode == -signal.SIGKILL, err
    assert len(read_results(out / "results.jsonl")) == 1
    p = eval_cli(out, files)
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    assert content(out) == content(expert_run)
    s = json.loads((out / "summary.json").read_text())
    ref = json.loads((expert_run / "summary.json").read_text())
    assert s["complete"] and s["overall"]["chain"] == ref["overall"]["chain"]


# -------------------------------------------------------------------------------- a sequence grid
SEQUENCE_GRID = """description: a sequence grid for tests
task: sequence
mode: one-at-a-time
sequence:
  length: 2
  move_number: 20
  capture_bias: 1.0
axes:
  sequence_length:
    levels: [1]
  plan_mode:
    levels: [on]
"""


def test_a_sequence_grid_is_evaluated_per_cell_and_axis_level(tmp_path: Path):
    grid = tmp_path / "seq.yaml"
    grid.write_text(SEQUENCE_GRID)
    out = tmp_path / "ev"
    cfg = load_config(overrides={"sim": {"image_height": SIZE, "image_width": SIZE, "max_steps": MAX_STEPS}})
    s = evaluate(cfg, "expert", out, grid=str(grid), episodes_per_cell=1, workers=1, videos_per_cell=0)
    rows = {r["cell_id"]: r for r in read_results(out / "results.jsonl")}
    assert set(rows) == {"nominal", "sequence_length=1", "plan_mode=on"} and s["task"] == "sequence"
    assert sum(k == "place" for k, *_ in rows["sequence_length=1"]["subtasks"]) == 1
    assert sum(k == "place" for k, *_ in rows["nominal"]["subtasks"]) == 2
    assert rows["plan_mode=on"]["plan_mode"] and rows["plan_mode=on"]["instruction"].startswith("in order, play ")
    assert all(r["success"] and r["completed"] == r["n_subtasks"] for r in rows.values())
    for axis, level in (("sequence_length", "1"), ("plan_mode", "on")):
        block = s["per_axis_level"][axis][level]
        assert block["chain"]["full_success"] == 1.0
        assert block["chain"]["average_completed"] == rows[f"{axis}={level}"]["n_subtasks"]


def test_a_sequence_section_beside_a_sequence_grid_is_one_line(tmp_path: Path, files):
    grid = tmp_path / "seq.yaml"
    grid.write_text(SEQUENCE_GRID)
    out = tmp_path / "ev"
    p = subprocess.run([sys.executable, "-m", "bomb_data.cli", "eval", "--policy", "expert", "--config",
                        str(files["config"]), "--grid", str(grid), "--out", str(out), "-q"],
                       cwd=str(REPO), env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                       timeout=300)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: sequence: "), p.stderr
    assert "sequence grid" in lines[0] and "--sgf" not in lines[0] and not out.exists()


# ------------------------------------------------------------------------------------ bad input
def test_a_bad_sgf_source_is_one_line_and_nothing_is_written(tmp_path: Path, files):
    bad = tmp_path / "bad.sgf"
    bad.write_text("(;GM[1]SZ[9];B[ee];W[")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"task: sequence\nsequence:\n  source: sgf\n  sgf: {bad}\n  length: 2\n  move_number: 1\n")
    out = tmp_path / "ev"
    p = subprocess.run([sys.executable, "-m", "bomb_data.cli", "eval", "--policy", "expert", "--config", str(cfg),
                        "--grid", str(files["grid"]), "--out", str(out), "--image-size", str(SIZE), "-q"],
                       cwd=str(REPO), env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                       timeout=300)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    assert "bad.sgf" in lines[0] and "Traceback" not in p.stderr
    assert not out.exists()


# ----------------------------------------------------------------------------- replay of a store
def test_replay_of_a_sequence_store_reproduces_its_chains(tmp_path: Path, sequence_store: Path):
    from bomb_data.store import EpisodeStore

    out = tmp_path / "ev"
    s = evaluate(load_config(), f"replay:{sequence_store}", out, workers=1, videos_per_cell=0)
    rows = read_results(out / "results.jsonl")
    store = EpisodeStore(sequence_store)
    assert len(rows) == len(store.episodes) == 2
    for r, m in zip(sorted(rows, key=lambda r: r["source_index"]), store.episodes):
        assert r["task"] == "sequence" and r["subtasks"] == m["subtasks"]
        assert r["completed"] == m["subtasks_completed"] and r["success"] == m["success"]
        assert [x["instruction"] for x in r["subtask_results"]] == m["subtask_instructions"]
    assert s["task"] == "sequence" and s["replay"]["different_outcome"] == []
