"""`bomb-data eval` (issue 9): built-in policies, replay determinism, resume, report numbers, bad input."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from bomb_data.config import load_config
from bomb_data.errors import BombDataError, ConfigError, PolicyError
from bomb_data.evaluate.adapt import AdapterConfig, decode_gripper, encode_gripper, to_action_chunk
from bomb_data.evaluate.clients.wire import json_dumps, json_loads, packb, unpackb
from bomb_data.evaluate.metrics import aggregate, wilson_interval
from bomb_data.evaluate.policies import parse_policy_spec
from bomb_data.evaluate.protocol import PolicyFailure
from bomb_data.evaluate.runner import CAPTION_PX, _video_frame, evaluate, read_results
from bomb_data.task import FAILURE_REASONS


def small_cfg(max_steps: int | None = None):
    sim = {"image_height": 64, "image_width": 64}
    if max_steps:
        sim["max_steps"] = max_steps
    return load_config(overrides={"sim": sim, "generate": {"n": 3}})


def rows_of(out: Path) -> list[dict]:
    return read_results(out / "results.jsonl")


# ------------------------------------------------------------------------------------- units
def test_wilson_interval_known_values():
    lo, hi = wilson_interval(5, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.2366, 0.7634)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0 and round(hi, 4) == 0.2775
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_wire_formats_round_trip():
    x = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "img": np.zeros((4, 4, 3), np.uint8), "s": "t",
         "l": [np.ones(2)]}
    for back in (unpackb(packb(x)), json_loads(json_dumps(x))):
        assert back["a"].dtype == np.float32 and np.array_equal(back["a"], x["a"])
        assert back["img"].shape == (4, 4, 3) and back["s"] == "t" and np.array_equal(back["l"][0], np.ones(2))


def test_gripper_conventions_and_action_validation():
    g = np.array([-1.0, 1.0])
    for mode in ("canonical", "openvla", "close01", "inverted"):
        assert np.array_equal(decode_gripper(encode_gripper(g, mode), mode, binarize=True), g)
    # OpenVLA: 1 = open -> -1, 0 = closed -> +1 (normalize, binarize, invert as in run_libero_eval.py)
    assert list(decode_gripper(np.array([1.0, 0.0, 0.7]), "openvla", True)) == [-1.0, 1.0, -1.0]
    cfg = AdapterConfig(replan_steps=2)
    assert to_action_chunk(np.zeros((5, 7)), cfg).shape == (2, 7)
    assert to_action_chunk({"actions": np.zeros(7)}, cfg).shape == (1, 7)
    with pytest.raises(PolicyFailure, match="bad_shape"):
        to_action_chunk(np.zeros((4, 5)), cfg)
    with pytest.raises(PolicyFailure, match="nan"):
        to_action_chunk(np.full(7, np.nan), cfg)
    with pytest.raises(PolicyFailure, match="bad_reply"):
        to_action_chunk("error", cfg)


def test_policy_specs():
    assert parse_policy_spec("openpi://127.0.0.1:8000").port == 8000
    assert parse_policy_spec("openvla-oft://h:8777").kind == "openvla-oft"
    assert parse_policy_spec("python:a.b:make").target == "a.b:make"
    for bad in ("gpt5", "openpi://host", "python:nofactory", "replay:"):
        with pytest.raises(PolicyError):
            parse_policy_spec(bad)


# -------------------------------------------------------------------------------- closed loop
def test_expert_reaches_95_percent_on_default_grid_with_dask(tmp_path: Path):
    s = evaluate(small_cfg(), "expert", tmp_path / "ev", grid="nominal", episodes_per_cell=10, workers=2,
                 videos_per_cell=1)
    o = s["overall"]
    assert o["n"] == 10 and o["n_error"] == 0
    assert o["success_rate"] >= 0.95, s["failure_reasons"]
    assert s["comparable"] is False  # the expert reads privileged state: a ceiling, not a competitor
    rows = rows_of(tmp_path / "ev")
    assert len({r["episode_id"] for r in rows}) == 10
    assert all(r["placement_error_mm"] < 10 and r["steps"] > 0 and r["latency_ms_mean"] is not None for r in rows)
    assert all(r["chosen_intersection"] == r["target"] for r in rows if r["success"])
    row0 = rows[[r["j"] for r in rows].index(0)]
    video = tmp_path / "ev" / row0["video"]
    assert video.exists() and video.stat().st_size > 1000
    import av

    with av.open(str(video)) as c:
        n_frames = sum(1 for _ in c.decode(video=0))
        h = c.streams.video[0].height
    # one frame per step, then the final state held half a second (10 Hz -> 5 frames); two caption strips
    assert n_frames == row0["steps"] + 5
    assert h == small_cfg().sim.image_height + 2 * CAPTION_PX
    assert (tmp_path / "ev" / "report.html").exists() and s["complete"]


def test_video_frame_captions_leave_camera_pixels_untouched():
    rng = np.random.default_rng(0)
    obs = {"agentview": rng.integers(0, 256, (64, 64, 3), np.uint8),
           "wrist": rng.integers(0, 256, (64, 64, 3), np.uint8)}
    seen = [rng.integers(0, 256, (32, 32, 3), np.uint8)]
    f = _video_frame(obs, seen, ["image"], "step 3   place the black stone at row 3, column 4")
    assert f.shape == (64 + 2 * CAPTION_PX, 64 * 3, 3)
    body = f[CAPTION_PX:CAPTION_PX + 64]
    assert np.array_equal(body[:, :64], obs["agentview"]) and np.array_equal(body[:, 64:128], obs["wrist"])
    # text was drawn in both strips (pixels brighter than the strip's background)
    assert (f[:CAPTION_PX] > 100).any() and (f[-CAPTION_PX:] > 100).any()
    # a footer far too long for the frame is shortened, not drawn past the edge
    long = _video_frame(obs, [], [], "x" * 500)
    assert long.shape == (64 + 2 * CAPTION_PX, 128, 3) and (long[-CAPTION_PX:] > 100).any()


@pytest.mark.parametrize("policy", ["random", "noop", "python:bomb_data.evaluate.policies:NoopPolicy"])
def test_random_and_noop_fail(tmp_path: Path, policy: str):
    s = evaluate(small_cfg(max_steps=40), policy, tmp_path / "ev", episodes_per_cell=2, workers=1, videos_per_cell=0)
    assert s["overall"]["n"] == 2 and s["overall"]["successes"] == 0
    assert set(s["failure_reasons"]) <= set(FAILURE_REASONS)


def test_replay_reproduces_generated_episodes(tmp_path: Path):
    from bomb_data.generate import generate

    cfg = small_cfg()
    generate(cfg, tmp_path / "store", workers=1, mode="overwrite")
    s = evaluate(cfg, f"replay:{tmp_path / 'store'}", tmp_path / "ev", workers=1, videos_per_cell=0)
    rows = rows_of(tmp_path / "ev")
    assert len(rows) == 3 and s["overall"]["n"] == 3
    for r in rows:
        assert r["success"] == r["source_success"] is True, r
    assert s["replay"] == {"episodes": 3, "same_outcome": 3, "different_outcome": []}
    # an episode that did not reproduce its recorded outcome is named
    rows[1]["source_success"] = False
    assert aggregate(rows)["replay"] == {"episodes": 3, "same_outcome": 2, "different_outcome": [rows[1]["episode_id"]]}


SMALL_GRID = """description: two axes, one held-out level
mode: one-at-a-time
axes:
  n_board_stones:
    levels: [0, 6]
    heldout: [6]
  brightness:
    levels: [0.1]
"""


def test_resume_after_interrupt_and_report_matches_results(tmp_path: Path):
    out = tmp_path / "ev"
    cfg = small_cfg(max_steps=20)
    grid = tmp_path / "small.yaml"
    grid.write_text(SMALL_GRID)
    calls = []

    def stop_after_two(p):
        calls.append(p.done)
        if p.done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        evaluate(cfg, "random", out, grid=str(grid), episodes_per_cell=2, workers=1, videos_per_cell=0,
                 progress=stop_after_two)
    partial = json.loads((out / "summary.json").read_text())
    assert partial["complete"] is False and partial["episodes"] == 2
    assert "Partial results" in (out / "report.html").read_text()
    # rerunning resumes: the two finished episodes are not run again
    s = evaluate(cfg, "random", out, grid=str(grid), episodes_per_cell=2, workers=1, videos_per_cell=0)
    rows = rows_of(out)
    ids = [r["episode_id"] for r in rows]
    assert len(ids) == len(set(ids)) == s["episodes_planned"] == s["episodes"] and s["complete"]
    assert calls[:2] == [1, 2]
    # a different run into the same directory is refused
    with pytest.raises(ConfigError, match="another evaluation") as e:
        evaluate(cfg, "noop", out, grid=str(grid), episodes_per_cell=2, workers=1)
    assert 'policy: "random" there, "noop" here' in str(e.value)
    # ... and the refusal says what differs
    with pytest.raises(ConfigError, match='seed: 0 there, 5 here'):
        evaluate(cfg, "random", out, grid=str(grid), episodes_per_cell=2, workers=1, seed=5)
    with pytest.raises(ConfigError, match=r"image_size: \[64, 64\] there, \[48, 48\] here"):
        evaluate(load_config(overrides={"sim": {"image_height": 48, "image_width": 48, "max_steps": 20}}), "random",
                 out, grid=str(grid), episodes_per_cell=2, workers=1)
    # the report's per-cell numbers equal those recomputed from results.jsonl
    page = (out / "report.html").read_text()
    table = {}
    for m in re.finditer(r"<tr data-cell='([^']+)'>(.*?)</tr>", page):
        table[m.group(1)] = {k: v for k, v in re.findall(r"data-key='(\w+)'(?: data-value='[^']*')?>([^<]*)<",
                                                         m.group(2))}
    cells = {}
    for r in rows:
        cells.setdefault(r["cell_id"], []).append(r)
    assert set(table) == set(cells)
    for cid, rs in cells.items():
        ok = [r for r in rs if r["status"] == "ok"]
        k, n = sum(r["success"] for r in ok), len(ok)
        assert int(table[cid]["n"]) == n and int(table[cid]["successes"]) == k
        p, z = k / n, 1.959963984540054
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        assert table[cid]["ci_high"] == f"{100 * min(1, centre + half):.1f}%"
        assert table[cid]["success_rate"] == f"{100 * p:.1f}%"
    embedded = json.loads(re.search(r"id='bomb-summary'>(.*?)</script>", page, re.S).group(1).replace("<\\/", "</"))
    assert embedded["overall"] == s["overall"]
    # per-axis levels include held-out ones where the grid has them
    assert set(s["per_axis_level"]) == {r["axis"] for r in rows if r["axis"]} == {"n_board_stones", "brightness"}
    assert s["per_axis_level"]["n_board_stones"]["6"]["heldout"] is True
    assert s["per_axis_level"]["n_board_stones"]["nominal"]["n"] == 2
    # results made under another MuJoCo are not resumed into (one rate would mix two simulators)
    run = json.loads((out / "run.json").read_text())
    assert run["versions"]["renderer"]  # the OpenGL renderer is recorded with the versions
    run["versions"]["mujoco"] = "3.0.0"
    (out / "run.json").write_text(json.dumps(run))
    results = (out / "results.jsonl").read_bytes()
    with pytest.raises(ConfigError, match="made with MuJoCo 3.0.0, this run has"):
        evaluate(cfg, "random", out, grid=str(grid), episodes_per_cell=3, workers=1, videos_per_cell=0)
    assert (out / "results.jsonl").read_bytes() == results
    # a damaged run record is one line, and nothing is lost
    (out / "run.json").write_text('{"key": ')
    with pytest.raises(ConfigError, match="run.json is damaged") as e:
        evaluate(cfg, "random", out, grid=str(grid), episodes_per_cell=3, workers=1, videos_per_cell=0)
    assert "\n" not in str(e.value) and (out / "results.jsonl").read_bytes() == results


def test_bad_input_gives_one_line(tmp_path: Path):
    from click.testing import CliRunner

    from bomb_data.cli import main
    from bomb_data.evaluate.cli import eval_cmd

    if "eval" not in main.commands:
        main.add_command(eval_cmd)
    for args, msg in ((["--policy", "gpt5"], "unknown policy"),
                      (["--policy", "openpi://127.0.0.1:9"], "unreachable"),
                      (["--policy", "openvla://127.0.0.1:9"], "unreachable"),
                      (["--policy", "noop", "--grid", "no_such_grid"], "unknown grid")):
        res = CliRunner().invoke(main, ["eval", *args, "--out", str(tmp_path / "x"), "-q"])
        assert res.exit_code == 2, res.output
        lines = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
        assert len(lines) == 1 and msg in lines[0], res.output
        assert "Traceback" not in res.output
    with pytest.raises(BombDataError):
        evaluate(small_cfg(), "noop", tmp_path / "y", adapter={"replan_steps": 0})
