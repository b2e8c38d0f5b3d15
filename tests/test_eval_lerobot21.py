"""Close the loop on the v2.1 export (issue 24): lerobot 0.3.3's own train script (the line that reads
format v2.1, side env lerobot21_train) trains ACT for a few steps on a tiny v2.1 export; the
checkpoint (normalisation inside the model, no processor files) is served by ``bomb-data serve`` in
that env and evaluated by ``bomb-data eval --policy openpi://`` from this one with no other flag; the
first observation it gets equals the first frame of the same episode in its training dataset after
the model's own normalisation; a 0.3 checkpoint handed to lerobot 0.4, another image size and a type
lerobot cannot load are refused with one line.

The commands are the v2.1 recipe of docs/formats/lerobot.md, at toy sizes (as tests/test_eval_lerobot.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, side_python
from tests.test_eval_lerobot import EVAL, SIZE, Served, _rows, _side_env

pytestmark = pytest.mark.compat


def train_act_v21(py: Path, dataset: Path, out: Path, steps: int = 2) -> Path:
    """lerobot 0.3.3's ``python -m lerobot.scripts.train``, ACT on ``dataset``; the checkpoint directory."""
    cmd = [str(py), "-m", "lerobot.scripts.train", "--dataset.repo_id=bomb/go", f"--dataset.root={dataset}",
           "--dataset.video_backend=pyav", "--policy.type=act", "--policy.device=cpu", "--policy.push_to_hub=false",
           "--policy.pretrained_backbone_weights=null", "--policy.chunk_size=5", "--policy.n_action_steps=5",
           "--policy.dim_model=32", "--policy.n_heads=2", "--policy.dim_feedforward=64",
           "--policy.n_encoder_layers=1", "--policy.n_decoder_layers=1", "--policy.use_vae=false",
           f"--steps={steps}", "--batch_size=2", "--num_workers=0", f"--save_freq={steps}", "--log_freq=1",
           "--wandb.enable=false", f"--output_dir={out}"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, env=_side_env(), cwd=str(out.parent))
    if p.returncode != 0:
        pytest.fail(f"lerobot 0.3.3 train failed:\n{p.stdout[-3000:]}\n{p.stderr[-6000:]}")
    ckpt = out / "checkpoints" / "last" / "pretrained_model"
    assert (ckpt / "model.safetensors").is_file() and not (ckpt / "policy_preprocessor.json").exists()
    return ckpt


@pytest.fixture(scope="module")
def trained21(tmp_path_factory) -> dict[str, Path]:
    py = side_python("lerobot21_train")
    from tests._stores import export_store, make_store

    d = tmp_path_factory.mktemp("lerobot21_loop")
    make_store(d / "store", n=2, H=SIZE, W=SIZE, grid="nominal")
    # lerobot 0.3's trainer finds its action under "action" and state under "observation.*": the
    # lerobot preset's names (the openpi preset's "actions"/"state" are openpi's, for its own trainer)
    export_store(d / "store", d / "lerobot", "lerobot", "--lerobot-version", "v2.1", "--preset", "lerobot")
    return {"py": py, "store": d / "store", "dataset": d / "lerobot",
            "ckpt": train_act_v21(py, d / "lerobot", d / "train"), "dir": d}


@pytest.fixture(scope="module")
def server21(trained21):
    s = Served(trained21["py"], f"lerobot:{trained21['ckpt']}", trained21["dir"] / "serve.log").wait()
    yield s
    s.stop()


def test_v21_checkpoint_served_runs_two_episodes_without_error(trained21, server21, tmp_path: Path, run_cli):
    assert json.loads((trained21["dataset"] / "meta" / "info.json").read_text())["codebase_version"] == "v2.1"
    p = run_cli("eval", "--policy", f"openpi://127.0.0.1:{server21.port}", "--out", str(tmp_path / "a"), *EVAL)
    assert p.returncode == 0, p.stderr
    brief = json.loads(p.stdout)
    assert brief["completed"] == 2 and brief["errors"] == 0 and brief["comparable"] is True
    s = json.loads((tmp_path / "a" / "summary.json").read_text())
    a = s["adapter"]  # from the server's metadata, i.e. from the 0.3 checkpoint's config.json
    assert a["image_keys"] == {"agentview": "observation.images.agentview", "wrist": "observation.images.wrist"}
    assert (a["image_size"], a["state_key"], a["send_episode_id"]) == (SIZE, "observation.state", True)
    meta = s["policy_description"]["server_metadata"]["bomb_data"]
    assert meta["type"] == "act" and meta["input_features"]["observation.state"]["shape"] == [8]
    rows = _rows(tmp_path / "a")
    assert all(r["status"] == "ok" and r["policy_calls"] == r["steps"] == 20 for r in rows)
    # the same command again gives the same episodes (per-episode reset and seed on the server)
    p = run_cli("eval", "--policy", f"openpi://127.0.0.1:{server21.port}", "--out", str(tmp_path / "b"), *EVAL)
    assert p.returncode == 0, p.stderr
    keyed = lambda rs: [(r["episode_id"], r["steps"], r["placement_error_mm"], r["success"]) for r in rs]  # noqa: E731
    assert keyed(_rows(tmp_path / "b")) == keyed(rows)


def test_v21_other_image_size_refused_before_any_episode(trained21, server21, tmp_path: Path, run_cli):
    out = tmp_path / "ev"
    p = run_cli("eval", "--policy", f"openpi://127.0.0.1:{server21.port}", "--out", str(out), *EVAL,
                "--policy-image-size", str(2 * SIZE))
    assert p.returncode == 2 and p.stderr.count("error: ") == 1 and "Traceback" not in p.stderr, p.stderr
    assert f"trained on {SIZE}x{SIZE} images" in p.stderr and not out.exists()


def test_v21_first_observation_equals_training_frame(trained21, tmp_path: Path):
    """The evaluator's first observation (as eval adapts it for this checkpoint) vs lerobot 0.3.3's
    LeRobotDataset frame 0 of the same episode, both through the model's own normalize_inputs."""
    from tests.test_eval_lerobot import first_observation

    obs, info_ = first_observation(trained21["store"], trained21["ckpt"], tmp_path / "obs.npz")
    p = subprocess.run([str(trained21["py"]), str(REPO / "tests" / "compat" / "check_lerobot_policy.py"),
                        str(trained21["ckpt"]), str(trained21["dataset"]), str(obs), "0"], capture_output=True,
                       text=True, timeout=600, env=_side_env())
    assert p.returncode == 0, p.stderr[-6000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["line"] == "0.3" and r["task_eval"] == r["task_dataset"] == info_["instruction"]
    for k, st in r["state"].items():  # state exact, before and after the model's normalisation
        assert st["raw_max_abs"] == 0.0 and st["preprocessed_max_abs"] == 0.0, (k, st)
    for k, im in r["images"].items():
        assert im["shape_eval"] == im["shape_dataset"] == [3, SIZE, SIZE]
        assert im["psnr_db"] > 28, (k, im)  # within the AV1 error at 32x32
        assert im["psnr_db"] > im["psnr_db_flipped"] + 6 and im["psnr_db"] > im["psnr_db_bgr"] + 6, (k, im)
    acts = np.asarray(r["actions"])
    assert acts.shape == (3, 7) and np.all(np.isfinite(acts)) and r["actions_repeat_after_reset"]


def _serve_fails(py: Path, policy: str) -> str:
    p = subprocess.run([str(py), "-m", "bomb_data.cli", "serve", "--policy", policy, "--port", "0"],
                       capture_output=True, text=True, timeout=600, env=_side_env(), cwd=str(REPO))
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-3000:]
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len([ln for ln in lines if ln.startswith("error: ")]) == 1, p.stderr[-3000:]
    return p.stderr


def test_v21_bad_checkpoints_one_line(trained21, tmp_path: Path):
    """A 0.3 checkpoint served by lerobot 0.4 (side env lerobot30), a type lerobot 0.3 cannot load,
    a 0.3 checkpoint whose model file lost its normalisation: one line each, exit 2."""
    err = _serve_fails(side_python("lerobot30"), f"lerobot:{trained21['ckpt']}")
    assert "a checkpoint of lerobot 0.3" in err and "this environment has lerobot 0.4" in err, err
    bad = tmp_path / "bad_type"
    shutil.copytree(trained21["ckpt"], bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["type"] = "no_such_policy"
    (bad / "config.json").write_text(json.dumps(cfg))
    assert "lerobot cannot load this checkpoint" in _serve_fails(trained21["py"], f"lerobot:{bad}")
    (bad / "model.safetensors").write_bytes(b"\x00" * 64)  # not a safetensors file: no line can be told
    assert "not a checkpoint lerobot-train wrote" in _serve_fails(trained21["py"], f"lerobot:{bad}")
