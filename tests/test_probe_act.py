"""The LeRobot backbone hook on trained weights (issue 26): ACT trained a few hundred steps on a bomb-data
LeRobot v3.0 export in the side env ``lerobot30`` (tests/compat/check_probe_act.py), loaded back from its
checkpoint with ``LeRobotBackbone.from_pretrained``, and its backbone's features probed for the target
cell, the target region and the active stone's region against the random-feature and shuffled-label
controls.

What is asserted is what holds for any honest run: the hook's features have the documented shape, are the
features the policy itself computes (its own pre-processor, reloaded weights), the controls learn
nothing. The probe's accuracy is reported (``probe.json``, and printed), not asserted to beat chance:
a backbone trained on three episodes has no reason to encode the scene.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from bomb_data.ground.features import probe_features
from tests._toy_features import Recorded
from tests.conftest import ACT_PROBE_GRID, ACT_PROBE_SCENES, ACT_SIZE, ACT_STEPS

N, SIZE, STEPS, GRID = ACT_PROBE_SCENES, ACT_SIZE, ACT_STEPS, ACT_PROBE_GRID


@pytest.fixture(scope="module")
def trained(trained_act) -> dict:
    return trained_act  # conftest: trained once, shared with test_explain_act


@pytest.mark.compat
def test_hook_on_the_trained_checkpoint(trained):
    r = trained["res"]
    assert r["steps"] == STEPS and r["loss_last"] < 0.9 * r["loss_first"], r  # it did train
    assert r["module"] == "model.backbone" and r["shape"] == [N, 512] and r["finite"]
    d = r["describe"]
    assert d["normalisation"] == "checkpoint mean/std" and len(d["mean"]) == len(d["std"]) == 3
    # the reloaded checkpoint is the trained policy; the hook's normalisation is lerobot's pre-processor's
    assert r["reload_rel_diff"] < 1e-5 and r["preprocessor_rel_diff"] < 1e-5, r
    assert r["trained_vs_init_rel_diff"] > 1e-2, r  # training changed the backbone
    f = trained["features"]["trained"]
    assert f.shape == (N, 512) and np.linalg.norm(f[0] - f[1]) > 0  # image-dependent


@pytest.mark.compat
def test_probe_of_the_trained_backbone_against_controls(trained):
    from bomb_data.ground.score import wilson

    out = trained["dir"] / "probe"
    report = {"training": {k: trained["res"][k] for k in ("steps", "loss_first", "loss_last", "train_seconds")}}
    test = [sc["split"] == "test" for sc in trained["scenes"]]
    for name in ("trained", "init"):
        pol = Recorded(trained["images"], trained["features"][name])
        s = probe_features(pol, GRID, N, out / name, scenes=trained["scenes"], seed=1, size=SIZE)
        assert s["feature_dim"] == 512 and s["scenes_train"] + s["scenes_test"] == N
        assert json.loads((out / name / "probe.json").read_text())["labels"] == s["labels"]
        for lab, v in s["labels"].items():
            assert v["classes_train"] >= 2 and v["n_test"] >= 20, (name, lab, v)
            ys = [str(sc["labels"][lab]) for sc, t in zip(trained["scenes"], test, strict=True)
                  if t and sc["labels"][lab] is not None]
            assert len(ys) == v["n_test"]
            # the controls learn nothing: no better than the best constant answer on the test scenes,
            # within its Wilson 95% interval (computed here from the labels, not by the probe)
            hi = wilson(max(ys.count(y) for y in set(ys)), len(ys))[1]
            assert v["random_features"]["accuracy"] <= hi and v["shuffled_labels"]["accuracy"] <= hi, (name, lab, v)
            assert v["probe"]["accuracy"] is not None
            report[f"{name}/{lab}"] = {k: v[k]["accuracy"] for k in ("probe", "chance", "random_features",
                                                                      "shuffled_labels")} | {"n_test": v["n_test"]}
        # the picture at reset does not show the target (it is drawn before the instruction): no image
        # feature names the target cell beyond chance
        c = s["labels"]["target_cell"]
        assert c["probe"]["accuracy"] <= c["chance"]["ci95"][1], (name, c)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
