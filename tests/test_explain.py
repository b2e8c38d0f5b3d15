"""`bomb-data explain` (issue 25): spans from the writer, known-answer policies, bad input, resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bomb_data.config import load_config
from bomb_data.errors import ConfigError
from bomb_data.evaluate.metrics import wilson_interval
from bomb_data.evaluate.runner import read_results
from bomb_data.explain import (
    ExplainSettings,
    effect_map,
    explain,
    mask_span,
    patch_grid,
    phase_of_steps,
    positive_mass_inside,
)
from bomb_data.params import LanguageParams
from bomb_data.perturb.language import SPAN_NAMES, parse_target, write_instruction, write_instruction_spans
from tests.explain_policies import REGION

REPO = Path(__file__).resolve().parents[1]
POL = "python:tests.explain_policies:"


def tiny_cfg(max_steps: int = 12):
    return load_config(overrides={"sim": {"image_height": 32, "image_width": 32, "max_steps": max_steps}})


def frame_rows(out: Path) -> list[dict]:
    return [r for r in read_results(out / "results.jsonl") if r["unit"] == "frame"]


# -------------------------------------------------------------------------------------------- spans
@pytest.mark.parametrize("conv", ["zero_based", "one_based", "go_letters"])
@pytest.mark.parametrize("tset", ["train", "unseen"])
def test_spans_come_from_the_writer(conv, tset):
    for seed in range(6):
        p = LanguageParams(convention=conv, template_set=tset, distractor_words=seed % 2 == 1)
        row, col, n = seed % 5, (seed * 3) % 5, 5
        text, _, spans = write_instruction_spans(row, col, n, "white", p, np.random.default_rng(seed))
        assert write_instruction(row, col, n, "white", p, np.random.default_rng(seed))[0] == text
        assert set(spans) <= set(SPAN_NAMES)
        assert [text[a:b] for a, b in spans["color"]] == ["white"]
        assert [text[a:b] for a, b in spans["stone"]][0] in ("stone", "piece")
        assert spans["verb"]
        (c0, c1), = spans["coordinate"]
        for part in ("row", "column"):
            (a, b), = spans[part]
            assert c0 <= a < b <= c1
        assert ("distractor" in spans) == p.distractor_words
        assert parse_target(text, n, conv) == (row, col)
        for part in ("row", "column", "coordinate"):  # without the span the sentence no longer names the point
            with pytest.raises(ValueError):
                parse_target(mask_span(text, spans[part], "delete"), n, conv)


def test_env_keeps_the_spans_of_its_instruction():
    from bomb_data.env import GoPlaceEnv

    env = GoPlaceEnv(tiny_cfg())
    try:
        _, info = env.reset(seed=3)
        t = info["instruction"]
        (a, b), = env.instruction_spans["row"]
        assert t[a:b].startswith("row ") and t[a:b].endswith("edge")
    finally:
        env.close()


# ------------------------------------------------------------------------------------------ units
def test_patch_grid_covers_the_image_and_refuses_a_patch_larger_than_it():
    ps = patch_grid(32, 40, 16)
    assert ps == [(0, 0), (0, 16), (0, 24), (16, 0), (16, 16), (16, 24)]
    cover = np.zeros((32, 40), int)
    for y, x in ps:
        cover[y:y + 16, x:x + 16] += 1
    assert cover.min() >= 1
    with pytest.raises(ConfigError, match="larger than the image"):
        patch_grid(32, 32, 33)
    m = effect_map(np.array([1.0, 0, 0, 0, 0, 3.0]), ps, 16, 32, 40)
    assert m[0, 0] == 1 and m[31, 39] == 3 and m.dtype == np.float32
    # columns 24..31 of the lower row are covered by two patches (3 and 0): 1.5 there
    assert m[20, 28] == 1.5 and m[20, 20] == 0
    assert positive_mass_inside(m, m > 2) == pytest.approx(3 * 128 / (256 + 1.5 * 128 + 3 * 128))


def test_phases_from_gripper_and_stone_height():
    cmd = np.array([-1, -1, -1, 1, 1, 1, 1, 1, -1, -1], float)
    z = np.array([0.1, 0.1, 0.1, 0.1, 0.1, 0.105, 0.12, 0.13, 0.13, 0.11])
    assert phase_of_steps(cmd, z) == ["approach"] * 3 + ["grasp"] * 3 + ["transport"] * 2 + ["release"] * 2
    assert set(phase_of_steps(-np.ones(5), np.zeros(5))) == {"approach"}


# ----------------------------------------------------------------------------------- known answers
@pytest.mark.parametrize("policy,mode", [("region", "black"), ("RegionWhiteBox", "white")])
def test_region_policy_puts_its_patch_effect_on_its_region(tmp_path, policy, mode):
    # the default stride (= k, the ViT grid), the region on it; overlapping patches (stride < k) spread
    # each effect over the whole patch, i.e. up to k - stride pixels past the region's edge
    s = ExplainSettings(patch=8, phases=False, steps=(0, 5), spans=("row",), rollout_spans=(),
                        counterfactuals=0, pictures=policy == "region")
    summary = explain(tiny_cfg(), POL + policy, tmp_path / "x", settings=s)
    assert summary["scorer"]["mode"] == mode
    mask = np.zeros((32, 32), bool)
    mask[REGION] = True
    with np.load(tmp_path / "x" / "maps.npz") as z:
        assert sorted(k for k in z.files if not k.endswith("mj_state")) == [
            "nominal/0/0/agentview", "nominal/0/0/wrist", "nominal/0/5/agentview", "nominal/0/5/wrist"]
        for step in (0, 5):
            m = z[f"nominal/0/{step}/agentview"]
            assert m.shape == (32, 32) and m.dtype == np.float32
            assert m.max() > 0
            assert positive_mass_inside(m, mask) >= 0.90
            assert np.all(z[f"nominal/0/{step}/wrist"] == 0)  # the wrist image is never read
    if policy == "region":
        assert (tmp_path / "x" / "pictures" / "nominal_0" / "00000_agentview.png").stat().st_size > 0
        assert "00000_agentview.png" in (tmp_path / "x" / "explain.html").read_text()


def test_batched_and_one_at_a_time_effects_agree(tmp_path):
    from bomb_data.evaluate.protocol import EpisodeStart
    from bomb_data.explain import Scorer
    from tests.explain_policies import RegionWhiteBox

    class NoBatch:
        def __init__(self):
            self.w = RegionWhiteBox()
            self.name = "nobatch"

        def reset(self, start):
            pass

        def act(self, obs):
            return self.w.act(obs)

        def score(self, obs, actions):
            return self.w.score(obs, actions)

    rng = np.random.default_rng(0)
    obs = [{"agentview": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)} for _ in range(5)]
    start = EpisodeStart("e/0", 1, "x")
    for mode in ("white", "black"):
        a, b = Scorer(RegionWhiteBox(), mode, batch_size=2), Scorer(NoBatch(), mode)
        assert a.batched and not b.batched
        a.start(start, obs[0])
        b.start(start, obs[0])
        assert np.allclose(a.effects(obs[1:]), b.effects(obs[1:]))


def test_policy_ignoring_the_instruction_has_no_text_effect_and_follows_at_chance(tmp_path):
    s = ExplainSettings(patch=16, phases=False, steps=(0,), rollout_spans=("coordinate",), counterfactuals=1,
                        pictures=False)
    summary = explain(tiny_cfg(max_steps=10), POL + "ignore", tmp_path / "x", episodes_per_cell=16, settings=s)
    for r in frame_rows(tmp_path / "x"):
        for name, d in r["text"].items():
            for mode in ("delete", "neutral"):
                assert d[mode] <= r["noise_floor"], (name, mode)
    inf = summary["instruction_following"]
    assert inf["n"] == 16
    lo, hi = wilson_interval(inf["nearer_counterfactual"], inf["n"])
    assert lo <= 0.5 <= hi, inf
    rows = read_results(tmp_path / "x" / "results.jsonl")
    cf = [r for r in rows if r["unit"] == "rollout" and r["variant"] == "cf:0"]
    orig = {r["episode_id"]: r for r in rows if r["unit"] == "rollout" and r["variant"] == "original"}
    for r in cf:  # same scene, the policy ignores the target: the stone ends where it ended before
        assert r["dist_original_m"] == orig[r["episode_id"]]["dist_original_m"]
        assert r["cf_target"] != r["target"]


def test_noise_floor_of_a_stochastic_policy(tmp_path):
    s = ExplainSettings(patch=16, phases=False, steps=(0,), spans=("row",), repeats=6, rollout_spans=(),
                        counterfactuals=0, pictures=False)
    explain(tiny_cfg(max_steps=10), POL + "ignore_noisy", tmp_path / "x", settings=s)
    (r,) = frame_rows(tmp_path / "x")
    assert 0.0005 < r["noise_floor"] < 0.01  # |N(0, 1e-3) - N(0, 1e-3)| over 6 repeats


def test_row_reader_shows_text_effect_only_where_the_row_is(tmp_path):
    s = ExplainSettings(patch=32, phases=False, steps=(0,), rollout_spans=(), counterfactuals=0, pictures=False)
    explain(tiny_cfg(max_steps=10), POL + "row_reader", tmp_path / "x", episodes_per_cell=3, settings=s)
    rows = frame_rows(tmp_path / "x")
    assert len(rows) == 3
    for r in rows:
        for mode in ("delete", "neutral"):
            assert r["text"]["row"][mode] > r["noise_floor"]
            assert r["text"]["coordinate"][mode] > r["noise_floor"]  # the coordinate holds the row
            for name in ("column", "color", "stone", "verb"):
                assert r["text"][name][mode] == 0.0, (name, mode)


def test_expert_follows_counterfactual_instructions(tmp_path):
    s = ExplainSettings(phases=False, rollout_spans=(), counterfactuals=1, pictures=False)
    summary = explain(load_config(overrides={"sim": {"image_height": 32, "image_width": 32}}), "expert",
                      tmp_path / "x", episodes_per_cell=10, settings=s)
    inf = summary["instruction_following"]
    assert inf["n"] == 10 and inf["score"] >= 0.95, inf
    assert summary["rollouts"]["original"]["success_original"] >= 9


# ---------------------------------------------------------------------------------------- bad input
def _cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    e = {**os.environ, "PYTHONPATH": str(REPO), "MUJOCO_GL": "egl", **(env or {})}
    return subprocess.run([sys.executable, "-m", "bomb_data.cli", "explain", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=str(REPO), env=e)


@pytest.mark.parametrize("args,msg", [
    (["--score", "white"], "has no score(obs, actions)"),
    (["--spans", "row,hue"], "unknown span 'hue'"),
    (["--steps", "50"], "--steps 50: past the end of episode nominal/0"),
    (["--patch", "48"], "--patch 48: larger than the image"),
    (["--cells", "nowhere"], "unknown cell 'nowhere'"),
    (["--grid", "sequence"], "grid sequence is a sequence (task: sequence), which explain does not support"),
])
def test_bad_input_is_one_line(tmp_path, args, msg):
    p = _cli("--policy", POL + "region", "--image-size", "32", "--max-steps", "10", "--out", str(tmp_path / "x"),
             "-q", *args)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and msg in lines[0], p.stderr


def test_out_with_foreign_files_or_another_run_is_refused(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("mine")
    s = ExplainSettings(patch=32, phases=False, steps=(0,), spans=("row",), rollout_spans=(), counterfactuals=0)
    with pytest.raises(ConfigError, match="holds other files"):
        explain(tiny_cfg(10), POL + "region", tmp_path / "x", settings=s)
    explain(tiny_cfg(10), POL + "region", tmp_path / "y", settings=s)
    with pytest.raises(ConfigError, match="another explanation"):
        explain(tiny_cfg(10), POL + "region", tmp_path / "y", seed=1, settings=s)
    explain(tiny_cfg(10), POL + "region", tmp_path / "y", seed=1, settings=s, overwrite=True)
    assert json.loads((tmp_path / "y" / "run.json").read_text())["key"]["seed"] == 1


def test_crash_mid_run_resumes_without_recomputing_finished_frames(tmp_path):
    out, log = tmp_path / "x", tmp_path / "calls.log"
    args = ["--policy", POL + "crashing", "--image-size", "32", "--max-steps", "10", "--out", str(out), "-q",
            "--patch", "16", "--steps", "0,2,4,6", "--no-phases", "--spans", "row", "--text-modes", "delete",
            "--rollout-spans", "", "--counterfactuals", "0", "--repeats", "0", "--no-pictures"]
    # per frame: 1 clean + 4 patches x 2 cameras + 1 span = 10 calls; recording rollout: 10 calls
    p = _cli(*args, env={"E25_CRASH_AT": "35", "E25_CALL_LOG": str(log)})
    assert p.returncode == -9 or p.returncode == 9, p.stderr
    first = frame_rows(out)
    assert 1 <= len(first) < 4
    stamps = {f: f.stat().st_mtime_ns for f in (out / "frames").glob("*/*.npz")}
    log.unlink()
    p = _cli(*args, env={"E25_CALL_LOG": str(log)})
    assert p.returncode == 0, p.stderr
    rows = frame_rows(out)
    assert sorted(r["step"] for r in rows) == [0, 2, 4, 6]
    assert rows[:len(first)] == first
    assert all(f.stat().st_mtime_ns == t for f, t in stamps.items())
    calls = len(log.read_text().splitlines())
    assert calls == 10 + 10 * (4 - len(first))  # the recording rollout again, then only the missing frames
    with np.load(out / "maps.npz") as z:
        assert {k.rsplit("/", 2)[1] for k in z.files} == {"0", "2", "4", "6"}


def test_store_episodes_are_replayed_and_keyed_by_position(tmp_path):
    from tests._stores import make_store

    st = make_store(tmp_path / "s", n=2, H=32, W=32, grid="nominal")
    s = ExplainSettings(patch=16, spans=("row",), text_modes=("delete",), rollout_spans=(), counterfactuals=0,
                        pictures=False)
    explain(tiny_cfg(), POL + "region", tmp_path / "x", store=str(tmp_path / "s"), episodes="1", settings=s)
    rows = read_results(tmp_path / "x" / "results.jsonl")
    (plan,) = [r for r in rows if r["unit"] == "episode"]
    assert plan["episode_id"] == "1" and plan["driver"] == "recorded actions"
    # the expert's demonstration has every phase, one key frame each
    assert [r.split(":")[1] for r in plan["frame_reasons"]] == ["approach", "grasp", "transport", "release"]
    recorded = st.episode(1).mj_state
    with np.load(tmp_path / "x" / "maps.npz") as z:
        for t in plan["frames"]:  # the replay reproduces the recorded states exactly
            assert np.array_equal(z[f"1/{t}/mj_state"], recorded[t])
            assert z[f"1/{t}/agentview"].shape == (32, 32)
    with pytest.raises(ConfigError, match="--episodes 7"):
        explain(tiny_cfg(), POL + "region", tmp_path / "y", store=str(tmp_path / "s"), episodes="7", settings=s)


def test_attention_masking_needs_the_interface_and_hits_only_the_row(tmp_path):
    s = ExplainSettings(patch=32, phases=False, steps=(0,), text_modes=("delete", "attention"), rollout_spans=(),
                        counterfactuals=0, pictures=False)
    explain(tiny_cfg(10), POL + "RowWhiteBox", tmp_path / "x", settings=s)
    (r,) = frame_rows(tmp_path / "x")
    assert r["score_mode"] == "white"
    assert r["text"]["row"]["attention"] > 0 and r["text"]["coordinate"]["attention"] > 0
    for name in ("column", "color", "stone", "verb"):
        assert r["text"][name]["attention"] == 0.0
    with pytest.raises(ConfigError, match="has no score_masked"):
        explain(tiny_cfg(10), POL + "region", tmp_path / "y", settings=s)


@pytest.mark.compat
def test_activation_patching_restores_all_and_nothing():
    """R = 1 with every block restored and 0 with none, on a tiny torch transformer in the lerobot side env."""
    from tests.conftest import run_side

    proc = run_side("lerobot30", REPO / "tests" / "compat" / "check_patching.py", timeout=300)
    r = json.loads(proc.stdout)
    whole, tok = r["whole"], r["at_token"]
    assert whole["L_clean"] > whole["L_corr"]
    assert whole["R_all_blocks"] == pytest.approx(1.0, abs=1e-6) and whole["R_none"] == 0.0
    # a residual block's output is the whole stream: restoring any one block at every position restores all
    assert all(v == pytest.approx(1.0, abs=1e-6) for v in whole["blocks"].values())
    assert tok["R_none"] == 0.0 and 0 < tok["R_all_blocks"] < 1  # only the corrupted token restored
    assert all(len(v) == 4 and all(np.isfinite(v)) for v in whole["heads"].values())


@pytest.mark.compat
def test_patching_runs_per_frame_on_the_strongest_patch():
    """explain_frame with patching on a white-box torch policy (side env; no simulator needed)."""
    from tests.conftest import run_side

    proc = run_side("lerobot30", REPO / "tests" / "compat" / "check_patching.py", "frame", timeout=300)
    out = json.loads(proc.stdout)
    row, p = out["row"], out["row"]["patching"]
    assert out["map_shape"] == [32, 32] and row["score_mode"] == "white"
    strongest = int(np.argmax(row["patch"]["agentview"]["effects"]))
    assert p["corruption"]["patch"] == row["patch"]["agentview"]["corners"][strongest]
    assert p["L_clean"] - p["L_corr"] == pytest.approx(p["corruption"]["effect"], rel=1e-4)
    assert p["R_all_blocks"] == pytest.approx(1.0, abs=1e-6) and p["R_none"] == 0.0
    assert set(p["heads"]) == {"layer0", "layer1"} and all(len(v) == 4 for v in p["heads"].values())


def test_patching_needs_the_interface(tmp_path):
    s = ExplainSettings(patch=32, phases=False, steps=(0,), rollout_spans=(), counterfactuals=0, patching=True)
    with pytest.raises(ConfigError, match="explain_modules"):
        explain(tiny_cfg(10), POL + "RegionWhiteBox", tmp_path / "x", settings=s)
