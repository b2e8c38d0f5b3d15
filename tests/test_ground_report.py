"""The grounding section of an evaluation's report.html: written when `bomb-data ground` scores maps
kept in the evaluation directory, with a link to its ground.html; foreign or broken files are passed over."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np


def test_ground_summary_in_the_eval_dir_appears_in_report_html(tmp_path, run_cli):
    from bomb_data.config import load_config
    from bomb_data.env import GoPlaceEnv
    from bomb_data.evaluate.runner import evaluate, finalize
    from bomb_data.ground.truth import TruthRenderer, reset_to_episode
    from bomb_data.perturb.grid import load_grid

    cfg = load_config(overrides={"sim": {"image_height": 48, "image_width": 48, "max_steps": 20}})
    ev = tmp_path / "ev"
    evaluate(cfg, "noop", ev, grid="nominal", episodes_per_cell=1, workers=1, videos_per_cell=0)
    before = (ev / "report.html").read_text()
    assert "id='grounding'" not in before
    row = json.loads((ev / "results.jsonl").read_text().splitlines()[0])
    params = {c.id: c for c in load_grid("nominal").cells()}[row["cell_id"]].params.model_dump(mode="json")
    env = GoPlaceEnv(cfg, render_images=False)
    reset_to_episode(env, {"seed": row["seed"], "params": params, "target": row["target"]})
    tr = TruthRenderer(env)
    disc = tr.frame("agentview")["target"].amodal.astype(np.float32)
    tr.close()
    env.close()
    e = row["episode_id"]
    # maps kept elsewhere, written elsewhere: the report is left alone
    np.savez(tmp_path / "away.npz", **{f"{e}/3/agentview": disc})
    run_cli("ground", str(tmp_path / "away.npz"), "--against", str(ev), "--objects", "target", check=True)
    assert (ev / "report.html").read_text() == before
    # a directory that only looks like a ground output, and a broken one: passed over
    (ev / "junk").mkdir()
    (ev / "junk" / "summary.json").write_text("{not json")
    (ev / "junk" / "ground.html").write_text("x")
    (ev / "other").mkdir()
    (ev / "other" / "summary.json").write_text(json.dumps({"format": "something-else", "objects": {}, "maps": "m"}))
    (ev / "other" / "ground.html").write_text("x")
    # maps in the eval dir: the default output EV/maps.ground/ is found, report.html refreshed
    np.savez(ev / "maps.npz", **{f"{e}/3/agentview": disc, f"{e}/4/agentview": np.roll(disc, 20, axis=1)})
    run_cli("ground", str(ev / "maps.npz"), "--against", str(ev), "--objects", "target,tray", check=True)
    page = (ev / "report.html").read_text()
    assert page.count("id='grounding'") == 1 and "href='maps.ground/ground.html'" in page
    assert (ev / "maps.ground" / "ground.html").exists()
    assert "junk" not in page and "other/ground.html" not in page
    s = json.loads((ev / "maps.ground" / "summary.json").read_text())
    assert s["format"] == "bomb-data-ground"
    row_t = re.search(r"<tr data-ground-object='target'>(.*?)</tr>", page).group(1)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row_t)
    assert cells[0] == "target" and cells[1] == "2" and cells[2] == "1"  # 2 frames of 1 episode
    iou = s["objects"]["target"]["all"]["iou_soft"]["mean"]
    assert 0 < iou < 1 and cells[3].startswith(f"{iou:.3f}")  # one map on the disc, one beside it
    assert "data-ground-object='tray'" in page
    # the report keeps the section when the evaluation rewrites it, and loses it with the directory
    finalize(ev)
    assert "href='maps.ground/ground.html'" in (ev / "report.html").read_text()
    shutil.rmtree(ev / "maps.ground")
    finalize(ev)
    assert "id='grounding'" not in (ev / "report.html").read_text()
