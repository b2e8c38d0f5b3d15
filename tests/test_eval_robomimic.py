"""Close the loop with robomimic (issue 24): robomimic 0.3.0's own ``train.py`` (side env robomimic)
trains BC for one epoch on a tiny HDF5 export; the checkpoint is evaluated by ``bomb-data eval``
with no flag beyond the policy, served by ``bomb-data serve --policy robomimic:CKPT`` in that env
(``--policy openpi://``) and in process where robomimic is importable; the first observation the
policy gets equals the first frame of the same demo in its training data after robomimic's own
preprocessing; bad checkpoints are refused with one line before anything is written.

The commands are the recipe of docs/formats/hdf5.md ("Train with robomimic, evaluate the
checkpoint"), at toy sizes (32x32 images, 1 epoch of 2 steps) to fit CI on 2 cores. robomimic's
ResNet18Conv is built with ``pretrained=False`` by default (torchvision ``weights=None``): nothing
is downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import REPO, side_python
from tests.test_eval_lerobot import Served

pytestmark = pytest.mark.compat
SIZE = 32
EVAL = ["--image-size", str(SIZE), "--max-steps", "20", "--episodes-per-cell", "2", "--videos-per-cell", "0",
        "--workers", "1", "-q", "--timeout", "120"]
LOW_DIM = ["ee_pos", "ee_ori", "gripper_states", "joint_states"]
RGB = ["agentview_rgb", "eye_in_hand_rgb"]


def _side_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(REPO))
    return env


def bc_config(dataset: Path, out: Path, low_dim: list[str] = LOW_DIM, rgb: list[str] = RGB, rnn: bool = False
              ) -> dict:
    """The recipe's config: robomimic's BC (BC-RNN with ``rnn``) with the export's obs keys; everything else
    robomimic's default."""
    extra = {"algo": {"rnn": {"enabled": True, "horizon": 4, "hidden_dim": 32}}} if rnn else {}
    return {"algo_name": "bc", **extra,
            "experiment": {"name": "bomb_bc", "validate": False, "save": {"enabled": True, "every_n_epochs": 1},
                           "epoch_every_n_steps": 2, "rollout": {"enabled": False}, "logging": {"log_tb": False}},
            "train": {"data": str(dataset), "output_dir": str(out), "num_epochs": 1, "batch_size": 4,
                      "seq_length": 4 if rnn else 1, "frame_stack": 1, "cuda": False, "hdf5_cache_mode": "low_dim",
                      "hdf5_filter_key": "train", "hdf5_load_next_obs": False},
            "observation": {"modalities": {"obs": {"low_dim": low_dim, "rgb": rgb}}}}


def train_bc(py: Path, dataset: Path, out: Path, **kw: Any) -> Path:
    """robomimic's train.py with ``bc_config``; the checkpoint it wrote."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "bc.json").write_text(json.dumps(bc_config(dataset, out, **kw), indent=2))
    p = subprocess.run([str(py), "-m", "robomimic.scripts.train", "--config", str(out / "bc.json")],
                       capture_output=True, text=True, timeout=1200, env=_side_env(), cwd=str(out))
    # train.py prints its exception and exits 0: its last line says whether the run succeeded
    if p.returncode != 0 or "finished run successfully!" not in p.stdout:
        pytest.fail(f"robomimic train.py failed:\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}")
    ckpts = sorted(out.glob("bomb_bc/*/models/model_epoch_1.pth"))
    assert len(ckpts) == 1, list(out.rglob("*.pth"))
    return ckpts[0]


def _export(store: Path, out: Path, *extra: str) -> Path:
    from tests._stores import export_store

    return export_store(store, out, "hdf5", *extra) / "bomb_go.hdf5"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    py = side_python("robomimic")
    from tests._stores import make_store

    d = tmp_path_factory.mktemp("robomimic_loop")
    make_store(d / "store", n=2, H=SIZE, W=SIZE, grid="nominal")
    h5 = _export(d / "store", d / "hdf5")
    return {"py": py, "store": d / "store", "hdf5": h5, "ckpt": train_bc(py, h5, d / "train"), "dir": d}


@pytest.fixture(scope="module")
def server(trained):
    s = Served(trained["py"], f"robomimic:{trained['ckpt']}", trained["dir"] / "serve.log").wait()
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
    assert a["image_keys"] == {"agentview": "agentview_rgb", "wrist": "eye_in_hand_rgb"}
    assert a["lowdim_keys"] == {k: k for k in LOW_DIM} and a["state_key"] is None
    assert (a["image_size"], a["send_episode_id"], a["send_privileged"]) == (SIZE, True, False)
    meta = s["policy_description"]["server_metadata"]["bomb_data"]
    assert meta["type"] == "bc" and meta["input_features"]["agentview_rgb"]["shape"] == [3, SIZE, SIZE]
    rows = _rows(tmp_path / "a")
    assert all(r["status"] == "ok" and r["policy_calls"] == r["steps"] == 20 for r in rows)
    # the same command again gives the same episodes: per-episode start_episode and seed on the server
    p = run_cli("eval", "--policy", f"openpi://127.0.0.1:{server.port}", "--out", str(tmp_path / "b"), *EVAL)
    assert p.returncode == 0, p.stderr
    keyed = lambda rs: [(r["episode_id"], r["steps"], r["placement_error_mm"], r["success"]) for r in rs]  # noqa: E731
    assert keyed(_rows(tmp_path / "b")) == keyed(rows)


def test_bc_rnn_served_resets_its_hidden_state_per_episode(trained, tmp_path: Path, run_cli):
    """BC-RNN (robomimic's RolloutPolicy keeps the RNN state and resets it in start_episode): 2 episodes,
    0 errors, and the same rows again with the episodes interleaved on the server (concurrency 2)."""
    ck = train_bc(trained["py"], trained["hdf5"], tmp_path / "rnn", rnn=True)
    s = Served(trained["py"], f"robomimic:{ck}", tmp_path / "serve_rnn.log").wait()
    try:
        runs = []
        for name, conc in (("a", "1"), ("b", "2")):
            p = run_cli("eval", "--policy", f"openpi://127.0.0.1:{s.port}", "--out", str(tmp_path / name), *EVAL,
                        "--concurrency", conc)
            assert p.returncode == 0 and json.loads(p.stdout)["errors"] == 0, p.stderr
            runs.append(sorted((r["episode_id"], r["steps"], r["placement_error_mm"]) for r in _rows(tmp_path / name)))
    finally:
        s.stop()
    meta = json.loads((tmp_path / "a" / "summary.json").read_text())["policy_description"]["server_metadata"]
    assert meta["bomb_data"]["algo"]["rnn"]["enabled"] is True
    assert len(runs[0]) == 2 and runs[0] == runs[1]


def test_in_process_where_robomimic_is_importable(trained, server, tmp_path: Path):
    """eval --policy robomimic:CKPT in process gives the episodes the served checkpoint gave; here in the
    side env when it can also run the simulator, else (this repo's CI) the main env must say to serve it."""
    try:
        import robomimic  # noqa: F401
    except ImportError:
        p = subprocess.run([sys.executable, "-m", "bomb_data.cli", "eval", "--policy", f"robomimic:{trained['ckpt']}",
                            "--out", str(tmp_path / "ev"), *EVAL], capture_output=True, text=True, timeout=600,
                           cwd=str(REPO))
        assert p.returncode == 2 and p.stderr.count("error: ") == 1 and "Traceback" not in p.stderr, p.stderr
        assert "bomb-data serve --policy robomimic:" in p.stderr and not (tmp_path / "ev").exists()
        return
    p = subprocess.run([sys.executable, "-m", "bomb_data.cli", "eval", "--policy", f"robomimic:{trained['ckpt']}",
                        "--out", str(tmp_path / "ev"), *EVAL], capture_output=True, text=True, timeout=600,
                       cwd=str(REPO))
    assert p.returncode == 0 and json.loads(p.stdout)["errors"] == 0, p.stderr


def test_first_observation_equals_training_frame(trained, tmp_path: Path):
    """env.reset of the episode demo_0 was generated from, adapted for the checkpoint as eval adapts it,
    vs robomimic's SequenceDataset frame 0 of demo_0, both through robomimic's preprocessing."""
    import h5py

    from bomb_data.config import load_config
    from bomb_data.env import GoPlaceEnv
    from bomb_data.evaluate.adapt import adapt_observation
    from bomb_data.evaluate.policies import parse_policy_spec, plan_adapter
    from bomb_data.evaluate.runner import store_episodes
    from bomb_data.params import EpisodeParams
    from bomb_data.store import EpisodeStore

    with h5py.File(trained["hdf5"], "r") as f:
        index = int(f["data/demo_0"].attrs["store_index"])
    ep = store_episodes(EpisodeStore(trained["store"]), 0)[index]
    acfg, _ = plan_adapter(parse_policy_spec(f"robomimic:{trained['ckpt']}"), SIZE)
    env = GoPlaceEnv(load_config(overrides={"sim": {"image_height": SIZE, "image_width": SIZE}}))
    try:
        obs, _ = env.reset(seed=ep.seed, options={"params": EpisodeParams.model_validate(ep.params),
                                                  "target": ep.target})
    finally:
        env.close()
    pobs = adapt_observation(obs, acfg, seed=ep.seed)
    np.savez(tmp_path / "obs.npz", **{k: np.asarray(v) for k, v in pobs.items() if k in RGB + LOW_DIM})
    p = subprocess.run([str(trained["py"]), str(REPO / "tests" / "compat" / "check_robomimic_policy.py"),
                        str(trained["ckpt"]), str(trained["hdf5"]), str(tmp_path / "obs.npz"), "0"],
                       capture_output=True, text=True, timeout=600, env=_side_env())
    assert p.returncode == 0, p.stderr[-6000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert sorted(r["state"]) == sorted(LOW_DIM) and sorted(r["images"]) == sorted(RGB)
    for k, st in r["state"].items():  # state exact
        assert st["max_abs"] == 0.0 and st["shape_eval"] == st["shape_dataset"], (k, st)
    for k, im in r["images"].items():  # CHW float in [0, 1] on both sides
        assert im["shape_eval"] == im["shape_dataset"] == [3, SIZE, SIZE], (k, im)
        assert 0.0 <= im["range_eval"][0] and im["range_eval"][1] <= 1.0 and im["range_eval"][1] > 0.2, (k, im)
        assert im["psnr_db"] > 28, (k, im)  # within the store's image compression error
        # the check can see orientation and channel order: both are far worse than the real frame
        assert im["psnr_db"] > im["psnr_db_flipped"] + 6 and im["psnr_db"] > im["psnr_db_bgr"] + 6, (k, im)
    acts = np.asarray(r["actions"])
    assert acts.shape == (3, 7) and np.all(np.isfinite(acts)) and r["actions_repeat_after_reset"]


def test_bad_checkpoints_one_line_nothing_written(trained, tmp_path: Path, run_cli):
    """Not a checkpoint (a directory, the HDF5 export, a truncated .pth), a checkpoint trained at another
    image size than the evaluation would send, one trained on keys the export does not have."""
    out = tmp_path / "ev"
    junk = tmp_path / "truncated.pth"
    junk.write_bytes(trained["ckpt"].read_bytes()[:5000])
    for path, says in [(trained["ckpt"].parent.parent, "a directory"), (trained["hdf5"], "not a robomimic checkpoint"),
                       (junk, "not a robomimic checkpoint"), (tmp_path / "none.pth", "no such file")]:
        p = run_cli("eval", "--policy", f"robomimic:{path}", "--out", str(out), *EVAL)
        assert p.returncode == 2 and p.stderr.count("error: ") == 1 and says in p.stderr, (path, p.stderr)
        assert "Traceback" not in p.stderr and not out.exists()
    # trained at 32x32; the evaluation would send 64x64, or render 16x16 (upsampled): refused before any episode
    p = run_cli("eval", "--policy", f"robomimic:{trained['ckpt']}", "--out", str(out), *EVAL,
                "--policy-image-size", str(2 * SIZE))
    assert p.returncode == 2 and f"trained on {SIZE}x{SIZE} images" in p.stderr and not out.exists(), p.stderr
    p = run_cli("eval", "--policy", f"robomimic:{trained['ckpt']}", "--out", str(out), *EVAL[2:],
                "--image-size", str(SIZE // 2))
    assert p.returncode == 2 and "upsampled" in p.stderr and not out.exists(), p.stderr
    # a checkpoint trained on a 64x64 export, evaluated against the 32x32 renders
    h5_64 = _export(trained["store"], tmp_path / "h64", "--image-size", str(2 * SIZE))
    ck64 = train_bc(trained["py"], h5_64, tmp_path / "t64", low_dim=["ee_pos"], rgb=["agentview_rgb"])
    p = run_cli("eval", "--policy", f"robomimic:{ck64}", "--out", str(out), *EVAL)
    assert p.returncode == 2 and "upsampled" in p.stderr and p.stderr.count("error: ") == 1, p.stderr
    assert not out.exists()
    # the same through serve: the server's metadata says 64x64, eval refuses before any episode
    s = Served(trained["py"], f"robomimic:{ck64}", tmp_path / "serve64.log").wait()
    try:
        p = run_cli("eval", "--policy", f"openpi://127.0.0.1:{s.port}", "--out", str(out), *EVAL)
    finally:
        s.stop()
    assert p.returncode == 2 and "upsampled" in p.stderr and p.stderr.count("error: ") == 1, p.stderr
    assert not out.exists()
    # a checkpoint naming a key the export does not have (robosuite's default robot0_eef_pos)
    bad = tmp_path / "robosuite_keys"
    shutil.copytree(trained["hdf5"].parent, bad)
    import h5py

    with h5py.File(bad / "bomb_go.hdf5", "a") as f:
        for demo in f["data"]:
            f[f"data/{demo}/obs"].move("ee_pos", "robot0_eef_pos")
    ckr = train_bc(trained["py"], bad / "bomb_go.hdf5", tmp_path / "trs", low_dim=["robot0_eef_pos"], rgb=[])
    p = run_cli("eval", "--policy", f"robomimic:{ckr}", "--out", str(out), *EVAL)
    assert p.returncode == 2 and "'robot0_eef_pos' is not an obs key" in p.stderr and not out.exists(), p.stderr
