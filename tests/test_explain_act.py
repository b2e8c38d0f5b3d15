"""A real architecture explained end to end (issue 25): LeRobot's ACT trained on a bomb-data LeRobot v3.0
export in the side env ``lerobot30`` (tests/compat/check_explain_act.py), E_patch on both cameras,
activation patching over its layers and heads; plus the R(u) heat-map pictures and the report links."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bomb_data.explain.report import heat_colors, write_patching_png

REPO = Path(__file__).resolve().parents[1]
SIZE = 32


@pytest.fixture(scope="module")
def act_run(trained_act) -> dict:
    # conftest: trained once (400 steps, batch 4), probed, then explained in the same process
    return {"res": trained_act["res"]["explain"], "out": trained_act["explain_out"]}


@pytest.mark.compat
def test_act_trains_and_its_heads_split_without_changing_it(act_run):
    r = act_run["res"]
    assert r["steps"] == 400 and r["loss_last"] < 0.7 * r["loss_first"], (r["loss_first"], r["loss_last"])
    assert r["split_diff"] < 1e-5  # the same action chunk through the head-split attention
    assert r["units"]["blocks"] == ["encoder0", "encoder1", "decoder0"]
    assert r["units"]["heads"] == [["encoder0", 4], ["encoder1", 4], ["decoder0.self", 4], ["decoder0.cross", 4]]


@pytest.mark.compat
def test_act_activation_patching_all_one_none_zero(act_run):
    frames = act_run["res"]["frames"]
    assert len(frames) == 3
    for f in frames:
        gap = f["L_clean"] - f["L_corr"]
        # the strongest patch's E_patch (float32 sums in batches of other sizes: equal to 1e-3)
        assert gap > 0 and gap == pytest.approx(f["corruption"]["effect"], rel=1e-3)
        assert f["corruption"]["effect"] == pytest.approx(max(f["max_e_patch"].values()), rel=1e-3)
        assert f["R_all_blocks"] == pytest.approx(1.0, abs=1e-6)  # every unit restored
        assert f["R_none"] == 0.0  # none restored
        # the last layer's output is everything the action head reads: restoring it alone restores all
        assert f["blocks"]["decoder0"] == pytest.approx(1.0, abs=1e-6)
        assert all(len(v) == 4 for v in f["heads"].values())
        # ACT's first decoder layer attends over its fixed queries only: its self-attention heads do not
        # depend on the image, so restoring them restores nothing
        assert f["heads"]["decoder0.self"] == [0.0] * 4
        # the cross-attention heads read the (corrupted) encoder output: some of them carry the difference
        assert max(abs(v) for v in f["heads"]["decoder0.cross"]) > 0.05


@pytest.mark.compat
def test_act_explanation_directory(act_run):
    out = act_run["out"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 3 and "no language" in summary["e_text_not_applicable"]
    assert summary["e_text"] == {}
    page = (out / "explain.html").read_text()
    assert "E_text is not applicable" in page and page.count("_patching.png") == 3
    with np.load(out / "maps.npz") as z:
        keys = sorted(z.files)
        assert len(keys) == 6 and all(z[k].shape == (SIZE, SIZE) and z[k].dtype == np.float32 for k in keys)
    from PIL import Image

    for row in map(json.loads, (out / "results.jsonl").read_text().splitlines()):
        assert row["text"] == {} and "patching" in row
        pic = out / "pictures" / row["episode_id"].replace("/", "_") / f"{row['step']:05d}_patching.png"
        assert Image.open(pic).size[1] > 4 * 40  # 4 unit rows (encoder0, encoder1, decoder0.self, .cross)...


def _count(img: np.ndarray, rgb) -> int:
    return int(np.all(img == np.asarray(rgb, np.uint8), axis=-1).sum())


def test_patching_heat_map_encodes_the_values(tmp_path: Path):
    from PIL import Image

    p = {"blocks": {"layer0": 1.0, "layer1": 0.0}, "heads": {"layer0": [0.0, 1.0, 1.0], "layer1": [None, 0.5, 2.0]}}
    img = np.asarray(Image.open(write_patching_png(tmp_path / "a.png", p)).convert("RGB"))
    red, blue, grey = heat_colors(np.array(1.0)), heat_colors(np.array(0.0)), (200, 200, 200)
    cell = 39 * 39  # a cell is 39 x 39 px, less its printed value
    assert 4 * cell * 0.8 < _count(img, red) < 4 * cell + 500  # 1.0 three times and 2.0 (clipped) once
    assert 2 * cell * 0.8 < _count(img, blue) < 2 * cell + 500  # 0.0 twice (+ the scale's end)
    assert 0.9 * cell < _count(img, grey) < cell + 50  # None: one grey cell, no value printed
    assert _count(img, heat_colors(np.array(0.5))) > 0.8 * cell
    only_blocks = np.asarray(Image.open(write_patching_png(tmp_path / "b.png", {"blocks": {"x": 0.5}, "heads": {}})))
    assert only_blocks.shape[1] < img.shape[1]  # no head columns


def test_report_and_explanation_link_each_other(tmp_path: Path):
    """eval into D, explain into D-explain: explain.html links D/report.html; rerunning the (finished)
    eval rewrites report.html with a link to D-explain/explain.html."""
    from bomb_data.config import load_config
    from bomb_data.explain import ExplainSettings, explain

    ev = ["eval", "--policy", "expert", "--grid", "nominal", "--episodes-per-cell", "1", "--image-size", "32",
          "--max-steps", "10", "--workers", "1", "--videos-per-cell", "0", "--out", str(tmp_path / "run"), "-q"]
    p = subprocess.run([sys.executable, "-m", "bomb_data.cli", *ev], capture_output=True, text=True, timeout=600,
                       cwd=str(REPO))
    assert p.returncode == 0, p.stderr
    assert "-explain" not in (tmp_path / "run" / "report.html").read_text()
    cfg = load_config(overrides={"sim": {"image_height": 32, "image_width": 32, "max_steps": 10}})
    s = ExplainSettings(patch=32, phases=False, steps=(0,), spans=("row",), rollout_spans=(), counterfactuals=0)
    explain(cfg, "expert", tmp_path / "run-explain", settings=s)
    assert "href='../run/report.html'" in (tmp_path / "run-explain" / "explain.html").read_text()
    p = subprocess.run([sys.executable, "-m", "bomb_data.cli", *ev], capture_output=True, text=True, timeout=600,
                       cwd=str(REPO))
    assert p.returncode == 0, p.stderr
    page = (tmp_path / "run" / "report.html").read_text()
    assert "<h2>Explanations</h2>" in page and "href='../run-explain/explain.html'" in page


@pytest.mark.compat
def test_split_heads_matches_the_fused_attention():
    """split_mha_heads on torch's nn.MultiheadAttention (sequence and batch first, padding mask)."""
    from tests.conftest import run_side

    res = json.loads(run_side("lerobot30", REPO / "tests" / "compat" / "check_patching.py", "mha",
                              timeout=300).stdout)
    assert set(res) == {"batch_first=False", "batch_first=True"}
    for r in res.values():
        assert r["split_diff"] < 1e-6  # the same output as the fused call
        # zeroing head 1 at out_proj's input removes exactly W[:, 4:8] @ head1 from the output
        assert r["head1_zeroed_diff"] < 1e-5 and r["head1_effect"] > 0.05
        assert r["original_after_copy_changed"] == 0.0 and r["copy_differs"] > 1e-3  # a deep copy is its own
