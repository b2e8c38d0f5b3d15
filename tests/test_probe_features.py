"""Linear probes of a policy's features: a toy policy that encodes the target is found, features
that know nothing are not, and the CLI fails in one line on policies that break the interface."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bomb_data.ground.features import iter_scenes, probe_features
from bomb_data.perturb.language import parse_target
from tests._toy_features import Noise, TargetOneHot

N, SIZE = 200, 64


@pytest.fixture(scope="module")
def scenes() -> list[dict]:
    return list(iter_scenes("nominal", N, seed=0, size=SIZE))


def test_scenes_split_by_seed_and_labels_from_geometry(scenes):
    from bomb_data.config import load_config
    from bomb_data.env import GoPlaceEnv
    from bomb_data.perturb.grid import load_grid
    from bomb_data.sim.scene import intersection_world

    seeds = {}
    for sc in scenes:
        seeds.setdefault(sc["scene_seed"], set()).add(sc["split"])
        r, c = (int(x) for x in sc["labels"]["target_cell"].split(","))
        assert parse_target(sc["instruction"], sc["board_size"]) == (r, c)
    assert len(seeds) == N and all(len(s) == 1 for s in seeds.values())
    test_share = sum(sc["split"] == "test" for sc in scenes) / N
    assert 0.2 < test_share < 0.4
    # the region label of the target, recomputed from the board geometry for a few scenes
    env = GoPlaceEnv(load_config(overrides={"sim": {"image_height": SIZE, "image_width": SIZE}}))
    try:
        for i, sc in enumerate(scenes[:10]):
            env.reset(seed=sc["scene_seed"], options={"params": load_grid("nominal").episode_params(0, i)[1]})
            r, c = (int(x) for x in sc["labels"]["target_cell"].split(","))
            u, v = env.project("agentview", intersection_world(env.scene, env.params.scene, r, c))
            lab = sc["labels"]["target_region"]
            if lab is not None:
                assert lab == int(v // (SIZE / 3)) * 3 + int(u // (SIZE / 3))
    finally:
        env.close()


def test_probe_finds_the_target_in_toy_features_and_nothing_in_noise(scenes):
    s = probe_features(TargetOneHot(), "nominal", N, scenes=scenes, seed=0, size=SIZE)
    cell = s["labels"]["target_cell"]
    assert cell["classes_train"] == 25 and cell["n_test"] == s["scenes_test"] > 40
    assert cell["probe"]["accuracy"] >= 0.95, cell
    for lab in ("target_cell", "target_region"):
        r = s["labels"][lab]
        assert r["probe"]["accuracy"] >= 0.95, (lab, r)
        # the controls learn nothing: no better than chance's upper Wilson bound
        assert r["random_features"]["accuracy"] <= r["chance"]["ci95"][1], (lab, r)
        assert r["shuffled_labels"]["accuracy"] <= r["chance"]["ci95"][1], (lab, r)
    noise = probe_features(Noise(), "nominal", N, scenes=scenes, seed=0, size=SIZE)
    for lab, r in noise["labels"].items():
        if r["probe"]["accuracy"] is not None:
            assert r["probe"]["accuracy"] <= r["chance"]["ci95"][1], (lab, r)
    # the picture at reset does not show the target (the scene is drawn before it): pixels cannot find it
    pix = probe_features("pixels", "nominal", N, scenes=scenes, seed=0, size=SIZE)
    assert pix["feature_dim"] == 16 * 16 * 3
    r = pix["labels"]["target_cell"]
    assert r["probe"]["accuracy"] <= r["chance"]["ci95"][1], r


def test_cli_writes_the_probe_and_refuses_bad_policies(tmp_path, run_cli):
    out = tmp_path / "probe"
    base = ["probe", "features", "--grid", "nominal", "--n", "12", "--size", "48"]
    p = run_cli(*base, "--policy", "python:tests._toy_features:target_onehot", "--out", str(out), check=True)
    short = json.loads(p.stdout)
    assert short["feature_dim"] == 25 and short["scenes_train"] + short["scenes_test"] == 12
    summary = json.loads((out / "probe.json").read_text())
    assert set(summary["labels"]) == {"target_cell", "target_region", "active_stone_region"}
    with np.load(out / "features.npz") as z:
        assert z["X"].shape == (12, 25) and len(z["target_cell"]) == 12

    def one_line_error(p, text: str) -> None:
        err = p.stderr.strip()
        assert p.returncode == 2 and len(err.splitlines()) == 1 and text in err and "Traceback" not in err, err

    one_line_error(run_cli(*base, "--policy", "python:tests._toy_features:target_onehot", "--out", str(out)),
                   "not empty")
    one_line_error(run_cli(*base, "--policy", "python:tests._toy_features:bad", "--out", str(tmp_path / "b")),
                   "length")
    one_line_error(run_cli(*base, "--policy", "expert", "--out", str(tmp_path / "c")), "in-process")
    one_line_error(run_cli(*base, "--policy", "python:tests._toy_features:Noise.nope", "--out", str(tmp_path / "d")),
                   "no callable")
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()
    assert json.loads((out / "probe.json").read_text()) == summary  # the earlier probe is untouched


def test_lerobot_backbone_hook(scenes, tmp_path):
    """LeRobotBackbone on a real lerobot ACT policy (ResNet-18 backbone, random weights: nothing is
    downloaded) in the lerobot30 side environment: 512 pooled features, deterministic, image-dependent."""
    from tests.conftest import REPO, run_side

    imgs = tmp_path / "imgs.npz"
    np.savez(imgs, images=np.stack([sc["obs"]["agentview"] for sc in scenes[:4]]))
    proc = run_side("lerobot30", REPO / "tests" / "compat" / "check_lerobot_features.py", str(imgs))
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["module"] == "model.backbone" and out["dim"] == 512 and out["finite"]
    assert out["repeat_max_abs_diff"] == 0.0 and out["min_pairwise_distance"] > 0
