"""Close the loop with LeRobot (issue 24): lerobot's own trainer (0.4.4, side env lerobot30) trains
ACT for a few steps on a tiny v3.0 export; the checkpoint is served by ``bomb-data serve`` in that env
and evaluated by ``bomb-data eval --policy openpi://`` from this one with no other flag; the first
observation the policy gets equals the first frame of the same episode in its training dataset
after the checkpoint's own preprocessing; bad checkpoints are refused with one line.

The commands are the recipe of docs/formats/lerobot.md ("Train with lerobot, evaluate the
checkpoint"), at toy sizes (32x32 images, 2 training steps, a 1-layer ACT without a pretrained
backbone) to fit CI on 2 cores.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, side_python

pytestmark = pytest.mark.compat
SIZE = 32
EVAL = ["--image-size", str(SIZE), "--max-steps", "20", "--episodes-per-cell", "2", "--videos-per-cell", "0",
        "--workers", "1", "-q", "--timeout", "120"]


def _side_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", WANDB_MODE="disabled")
    return env


def train_act(py: Path, dataset: Path, out: Path, steps: int = 2) -> Path:
    """lerobot-train ACT on ``dataset`` (the recipe's command, toy sizes); the checkpoint directory."""
    cmd = [str(py), "-m", "lerobot.scripts.lerobot_train", "--dataset.repo_id=bomb/go", f"--dataset.root={dataset}",
           "--dataset.video_backend=pyav", "--policy.type=act", "--policy.device=cpu", "--policy.push_to_hub=false",
           "--policy.pretrained_backbone_weights=null", "--policy.chunk_size=5", "--policy.n_action_steps=5",
           "--policy.dim_model=32", "--policy.n_heads=2", "--policy.dim_feedforward=64",
           "--policy.n_encoder_layers=1", "--policy.n_decoder_layers=1", "--policy.use_vae=false",
           f"--steps={steps}", "--batch_size=2", "--num_workers=0", f"--save_freq={steps}", "--log_freq=1",
           "--wandb.enable=false", f"--output_dir={out}"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, env=_side_env(), cwd=str(out.parent))
    if p.returncode != 0:
        pytest.fail(f"lerobot-train failed:\n{p.stdout[-3000:]}\n{p.stderr[-6000:]}")
    ckpt = out / "checkpoints" / "last" / "pretrained_model"
    assert (ckpt / "model.safetensors").is_file() and (ckpt / "policy_preprocessor.json").is_file()
    return ckpt


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    py = side_python("lerobot30")
    from tests._stores import export_store, make_store

    d = tmp_path_factory.mktemp("lerobot_loop")
    make_store(d / "store", n=2, H=SIZE, W=SIZE, grid="nominal")
    export_store(d / "store", d / "lerobot", "lerobot")
    return {"py": py, "store": d / "store", "dataset": d / "lerobot",
            "ckpt": train_act(py, d / "lerobot", d / "train"), "dir": d}


class Served:
    """``bomb-data serve`` as a user runs it, in the side env; stopped by its own pid."""

    def __init__(self, py: Path, policy: str, log: Path):
        self.log = log
        self.proc = subprocess.Popen([str(py), "-m", "bomb_data.cli", "serve", "--policy", policy, "--port", "0"],
                                     stdout=subprocess.DEVNULL, stderr=log.open("w"), env=_side_env(), cwd=str(REPO))
        self.port = 0

    def wait(self, timeout: float = 300) -> Served:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            m = re.search(r"serving .* on ws://127\.0\.0\.1:(\d+)", self.log.read_text())
            if m:
                self.port = int(m.group(1))
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.5)
        self.stop()
        pytest.fail(f"bomb-data serve did not start:\n{self.log.read_text()[-4000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def server(trained):
    s = Served(trained["py"], f"lerobot:{trained['ckpt']}", trained["dir"] / "serve.log").wait()
    yield s
    s.stop()


def _rows(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines() if x.strip()]


def test_served_checkpoint_runs_two_episodes_without_error(trained, server, tmp_path: Path, run_cli):
    p = run_cli("eval", "--policy", f"openpi://127.0.0.1:{server.port}", "--out", str(tmp_path / "a"), *EVAL)
    assert p.returncode == 0, p.stderr
    brief = json.loads(p.stdout)
    assert brief["completed"] == 2 and brief["errors"] == 0 and brief["comparable"] is True
    s = json.loads((tmp_path / "a" / "summary.json").read_text())
    a = s["adapter"]  # everything came from the server's metadata: no flag was given
    assert a["image_keys"] == {"agentview": "observation.images.agentview", "wrist": "observation.images.wrist"}
    assert (a["image_size"], a["state_key"], a["instruction_key"], a["send_episode_id"]) == \
        (SIZE, "observation.state", "task", True)
    assert a["replan_steps"] is None and not a["send_privileged"]
    meta = s["policy_description"]["server_metadata"]["bomb_data"]
    assert meta["type"] == "act" and meta["input_features"]["observation.state"]["shape"] == [8]
    rows = _rows(tmp_path / "a")
    assert all(r["status"] == "ok" and r["policy_calls"] == r["steps"] == 20 for r in rows)  # select_action per step
    # the same command again gives the same episodes: per-episode reset and seed on the server
    p = run_cli("eval", "--policy", f"openpi://127.0.0.1:{server.port}", "--out", str(tmp_path / "b"), *EVAL)
    assert p.returncode == 0, p.stderr
    keyed = lambda rs: [(r["episode_id"], r["steps"], r["placement_error_mm"], r["success"]) for r in rs]  # noqa: E731
    assert keyed(_rows(tmp_path / "b")) == keyed(rows)


def test_other_image_size_refused_before_any_episode(trained, server, tmp_path: Path, run_cli):
    out = tmp_path / "ev"
    p = run_cli("eval", "--policy", f"openpi://127.0.0.1:{server.port}", "--out", str(out), *EVAL,
                "--policy-image-size", str(2 * SIZE))
    assert p.returncode == 2 and p.stderr.count("error: ") == 1 and "Traceback" not in p.stderr, p.stderr
    assert f"trained on {SIZE}x{SIZE} images" in p.stderr and not out.exists()
    p = run_cli("eval", "--policy", f"openpi://127.0.0.1:{server.port}", "--out", str(out), *EVAL[2:],
                "--image-size", str(SIZE // 2))  # renders smaller than trained: would upsample
    assert p.returncode == 2 and "upsampled" in p.stderr and not out.exists(), p.stderr


def first_observation(store_dir: Path, ckpt: Path, npz: Path, spec: str = "lerobot", index: int = 0
                      ) -> tuple[Path, dict]:
    """env.reset of the episode store episode ``index`` (0: the dataset's episode 0, every episode
    exported) was generated from, adapted for the checkpoint as eval adapts it, saved to ``npz``; and the reset info."""
    from bomb_data.config import load_config
    from bomb_data.env import GoPlaceEnv
    from bomb_data.evaluate.adapt import adapt_observation
    from bomb_data.evaluate.policies import parse_policy_spec, plan_adapter
    from bomb_data.evaluate.runner import store_episodes
    from bomb_data.params import EpisodeParams
    from bomb_data.store import EpisodeStore

    ep = store_episodes(EpisodeStore(store_dir), 0)[index]
    acfg, _ = plan_adapter(parse_policy_spec(f"{spec}:{ckpt}"), SIZE)
    env = GoPlaceEnv(load_config(overrides={"sim": {"image_height": SIZE, "image_width": SIZE}}))
    try:
        obs, info = env.reset(seed=ep.seed, options={"params": EpisodeParams.model_validate(ep.params),
                                                     "target": ep.target})
    finally:
        env.close()
    pobs = adapt_observation(obs, acfg, seed=ep.seed)
    np.savez(npz, **{k: np.asarray(v) for k, v in pobs.items()})
    return npz, info


def test_first_observation_equals_training_frame(trained, tmp_path: Path):
    """env.reset of the episode the dataset's episode 0 was generated from, adapted for the checkpoint
    as eval adapts it, vs lerobot's LeRobotDataset frame 0, both through the checkpoint's preprocessor."""
    info = json.loads((trained["dataset"] / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    obs, info_ = first_observation(trained["store"], trained["ckpt"], tmp_path / "obs.npz")
    py = trained["py"]
    p = subprocess.run([str(py), str(REPO / "tests" / "compat" / "check_lerobot_policy.py"), str(trained["ckpt"]),
                        str(trained["dataset"]), str(obs), "0"], capture_output=True, text=True,
                       timeout=600, env=_side_env())
    assert p.returncode == 0, p.stderr[-6000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["task_eval"] == r["task_dataset"] == info_["instruction"]
    for k, st in r["state"].items():  # state exact, before and after normalisation
        assert st["raw_max_abs"] == 0.0 and st["preprocessed_max_abs"] == 0.0, (k, st)
    for k, im in r["images"].items():
        assert im["shape_eval"] == im["shape_dataset"] == [3, SIZE, SIZE]
        assert im["psnr_db"] > 28, (k, im)  # within the video codec's error (AV1 on 32x32 frames; ~33 dB at 64x64)
        # the check can see orientation and channel order: both are far worse than the real frame
        assert im["psnr_db"] > im["psnr_db_flipped"] + 6 and im["psnr_db"] > im["psnr_db_bgr"] + 6, (k, im)
    acts = np.asarray(r["actions"])
    assert acts.shape == (3, 7) and np.all(np.isfinite(acts)) and r["actions_repeat_after_reset"]


def test_bad_checkpoints_one_line_nothing_written(trained, tmp_path: Path, run_cli):
    """Not a checkpoint, a type lerobot cannot load (served from the side env), in process without lerobot."""
    out = tmp_path / "ev"
    p = run_cli("eval", "--policy", f"lerobot:{trained['dataset']}", "--out", str(out), *EVAL)
    assert p.returncode == 2 and "not a LeRobot checkpoint" in p.stderr and not out.exists(), p.stderr
    bad = tmp_path / "bad_type"
    shutil.copytree(trained["ckpt"], bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["type"] = "no_such_policy"
    (bad / "config.json").write_text(json.dumps(cfg))
    p = subprocess.run([str(trained["py"]), "-m", "bomb_data.cli", "serve", "--policy", f"lerobot:{bad}", "--port",
                        "0"], capture_output=True, text=True, timeout=600, env=_side_env(), cwd=str(REPO))
    assert p.returncode == 2 and "lerobot cannot load this checkpoint" in p.stderr and "Traceback" not in p.stderr, \
        p.stderr[-3000:]
    assert len([ln for ln in p.stderr.splitlines() if ln.startswith("error: ")]) == 1
    try:
        import torch  # noqa: F401
    except ImportError:  # this env has no lerobot: in process, one line says to serve it instead
        p = run_cli("eval", "--policy", f"lerobot:{trained['ckpt']}", "--out", str(out), *EVAL)
        assert p.returncode == 2 and "bomb-data serve --policy lerobot:" in p.stderr and not out.exists(), p.stderr
