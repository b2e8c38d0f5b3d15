"""``lerobot:`` and ``robomimic:`` in process (issue 24): one side env (``sim_policies``) holds bomb-data
with mujoco at its pin AND lerobot 0.4.4 and robomimic 0.3.0, so ``bomb-data eval --policy lerobot:CKPT``
and ``--policy robomimic:CKPT.pth`` run the checkpoint in the evaluator's own process (no serve).
The checkpoints come from each ecosystem's own trainer in its own side env (lerobot30: lerobot-train
ACT on the v3.0 export; robomimic: train.py BC on the HDF5 export), at the toy sizes of
tests/test_eval_lerobot.py and tests/test_eval_robomimic.py. Also: the episodes equal those of the same
checkpoint served (per-episode reset and seed behave alike), the first observation the in-process
policy gets equals the training dataset's first frame, and bad checkpoints are one line, exit 2,
nothing written, when lerobot/robomimic are importable (the refusals of the main env are tested there).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, side_python
from tests.test_eval_lerobot import EVAL, SIZE, Served, _rows, first_observation, train_act
from tests.test_eval_robomimic import LOW_DIM, RGB, train_bc

pytestmark = pytest.mark.compat


def _sim_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(REPO), MUJOCO_GL="egl", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    return env


def sim_cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """``bomb-data ARGS`` in the sim_policies env (the checkout's code: PYTHONPATH)."""
    return subprocess.run([str(side_python("sim_policies")), "-m", "bomb_data.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=_sim_env(), cwd=str(REPO))


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    side_python("sim_policies")
    lr_py, rm_py = side_python("lerobot30"), side_python("robomimic")
    from tests._stores import export_store, make_store

    d = tmp_path_factory.mktemp("inprocess")
    make_store(d / "store", n=2, H=SIZE, W=SIZE, grid="nominal")
    for fmt in ("lerobot", "hdf5"):
        export_store(d / "store", d / fmt, fmt)
    return {"dir": d, "store": d / "store", "lerobot_ds": d / "lerobot", "hdf5": d / "hdf5" / "bomb_go.hdf5",
            "lerobot": train_act(lr_py, d / "lerobot", d / "act"),
            "robomimic": train_bc(rm_py, d / "hdf5" / "bomb_go.hdf5", d / "bc")}


@pytest.mark.parametrize("kind", ["lerobot", "robomimic"])
def test_in_process_two_episodes_no_error_same_as_served(ckpts, kind: str, tmp_path: Path, run_cli):
    out = tmp_path / "in"
    p = sim_cli("eval", "--policy", f"{kind}:{ckpts[kind]}", "--out", str(out), *EVAL)
    assert p.returncode == 0, p.stderr[-4000:]
    brief = json.loads(p.stdout)
    assert brief["completed"] == 2 and brief["errors"] == 0 and brief["comparable"] is True
    s = json.loads((out / "summary.json").read_text())
    assert s["policy_description"]["kind"] == kind and "server_metadata" not in s["policy_description"]
    assert s["adapter"]["image_size"] == SIZE
    rows = _rows(out)
    assert all(r["status"] == "ok" and r["policy_calls"] == r["steps"] == 20 for r in rows)
    # the same checkpoint served from the same env and evaluated from this one: the same episodes
    srv = Served(side_python("sim_policies"), f"{kind}:{ckpts[kind]}", tmp_path / "serve.log").wait()
    try:
        p = run_cli("eval", "--policy", f"openpi://127.0.0.1:{srv.port}", "--out", str(tmp_path / "sv"), *EVAL)
    finally:
        srv.stop()
    assert p.returncode == 0, p.stderr
    keyed = lambda rs: sorted((r["episode_id"], r["steps"], r["placement_error_mm"], r["success"])  # noqa: E731
                              for r in rs)
    assert keyed(_rows(tmp_path / "sv")) == keyed(rows)


def test_lerobot_in_process_first_observation_equals_training_frame(ckpts, tmp_path: Path):
    """The first observation as eval adapts it for the checkpoint, through the checkpoint's own
    preprocessor in the sim_policies env, vs lerobot 0.4.4's LeRobotDataset frame 0 of that episode."""
    obs, info = first_observation(ckpts["store"], ckpts["lerobot"], tmp_path / "obs.npz")
    p = subprocess.run([str(side_python("sim_policies")), str(REPO / "tests" / "compat" / "check_lerobot_policy.py"),
                        str(ckpts["lerobot"]), str(ckpts["lerobot_ds"]), str(obs), "0"], capture_output=True,
                       text=True, timeout=600, env=_sim_env())
    assert p.returncode == 0, p.stderr[-6000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["line"] == "0.4" and r["task_eval"] == r["task_dataset"] == info["instruction"]
    for k, st in r["state"].items():
        assert st["raw_max_abs"] == 0.0 and st["preprocessed_max_abs"] == 0.0, (k, st)
    for k, im in r["images"].items():
        assert im["shape_eval"] == im["shape_dataset"] == [3, SIZE, SIZE]
        assert im["psnr_db"] > 28 and im["psnr_db"] > im["psnr_db_flipped"] + 6 and \
            im["psnr_db"] > im["psnr_db_bgr"] + 6, (k, im)
    assert np.asarray(r["actions"]).shape == (3, 7) and r["actions_repeat_after_reset"]


def test_robomimic_in_process_first_observation_equals_training_frame(ckpts, tmp_path: Path):
    """The same for robomimic: frame 0 of demo_0 through robomimic's own obs preprocessing."""
    import h5py

    with h5py.File(ckpts["hdf5"], "r") as f:
        index = int(f["data/demo_0"].attrs["store_index"])
    obs, _ = first_observation(ckpts["store"], ckpts["robomimic"], tmp_path / "obs.npz", spec="robomimic",
                               index=index)
    with np.load(obs) as z:
        np.savez(tmp_path / "obs_rm.npz", **{k: z[k] for k in z.files if k in RGB + LOW_DIM})
    p = subprocess.run([str(side_python("sim_policies")),
                        str(REPO / "tests" / "compat" / "check_robomimic_policy.py"), str(ckpts["robomimic"]),
                        str(ckpts["hdf5"]), str(tmp_path / "obs_rm.npz"), "0"], capture_output=True, text=True,
                       timeout=600, env=_sim_env())
    assert p.returncode == 0, p.stderr[-6000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert sorted(r["state"]) == sorted(LOW_DIM) and sorted(r["images"]) == sorted(RGB)
    for k, st in r["state"].items():
        assert st["max_abs"] == 0.0, (k, st)
    for k, im in r["images"].items():
        assert im["shape_eval"] == im["shape_dataset"] == [3, SIZE, SIZE], (k, im)
        assert im["psnr_db"] > 28 and im["psnr_db"] > im["psnr_db_flipped"] + 6 and \
            im["psnr_db"] > im["psnr_db_bgr"] + 6, (k, im)


def _refused(args: list[str], out: Path, says: str) -> None:
    p = sim_cli("eval", *args, "--out", str(out), *EVAL)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-3000:]
    lines = [ln for ln in p.stderr.splitlines() if ln.strip() and "ROBOMIMIC WARNING" not in ln]
    assert len([ln for ln in lines if ln.startswith("error: ")]) == 1 and says in p.stderr, p.stderr[-3000:]
    assert not out.exists()


def test_in_process_bad_checkpoints_one_line_nothing_written(ckpts, tmp_path: Path):
    """With lerobot and robomimic importable: not a checkpoint, another image size, a type lerobot
    cannot load, a v2.1-line (0.3) checkpoint handed to lerobot 0.4."""
    out = tmp_path / "ev"
    _refused(["--policy", f"lerobot:{ckpts['lerobot_ds']}"], out, "not a LeRobot checkpoint")
    _refused(["--policy", f"robomimic:{ckpts['hdf5']}"], out, "not a robomimic checkpoint")
    for kind in ("lerobot", "robomimic"):
        _refused(["--policy", f"{kind}:{ckpts[kind]}", "--policy-image-size", str(2 * SIZE)], out,
                 f"trained on {SIZE}x{SIZE} images")
    bad = tmp_path / "bad_type"
    shutil.copytree(ckpts["lerobot"], bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["type"] = "no_such_policy"
    (bad / "config.json").write_text(json.dumps(cfg))
    _refused(["--policy", f"lerobot:{bad}"], out, "lerobot cannot load this checkpoint")
    # a lerobot 0.3 checkpoint: no processor files, normalisation buffers in the model (their names
    # are what tells the line; the safetensors header is rewritten with 0.3's buffer names)
    old = tmp_path / "line03"
    shutil.copytree(ckpts["lerobot"], old)
    for f in old.glob("policy_*processor*"):
        f.unlink()
    _write_safetensors_header(old / "model.safetensors", {"normalize_inputs.buffer_observation_state.mean": None})
    _refused(["--policy", f"lerobot:{old}"], out, "a checkpoint of lerobot 0.3")


def _write_safetensors_header(path: Path, extra: dict) -> None:
    """Add empty-tensor entries named as ``extra``'s keys to the safetensors file at ``path``."""
    import struct

    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    body = raw[8 + n:]
    for k in extra:
        header[k] = {"dtype": "F32", "shape": [0], "data_offsets": [len(body), len(body)]}
    h = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + body)
