"""Adapter presets per export (issue 24): ``--adapter robomimic`` sends the HDF5 export's obs/* keys
(several low-dim keys, not one state vector) to an in-process or a served policy, computed as the
export computes them; a preset the user names replaces the server's metadata; unknown names are
refused by the CLI with one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bomb_data.config import load_config
from bomb_data.evaluate.adapt import LOWDIM_DIMS, AdapterConfig, adapt_observation, adapter_for
from bomb_data.evaluate.runner import evaluate
from bomb_data.evaluate.serve import make_server
from bomb_data.rotations import quat_wxyz_to_axis_angle

ROBOMIMIC_KEYS = {"agentview_rgb", "eye_in_hand_rgb", *LOWDIM_DIMS}


def small_cfg():
    return load_config(overrides={"sim": {"image_height": 32, "image_width": 32, "max_steps": 10}})


class Keys:
    """Factory for ``python:tests.test_adapter_presets:Keys``: records the first observation, holds still."""

    seen: list[dict] = []

    def reset(self, start):
        pass

    def act(self, obs):
        if not Keys.seen:
            Keys.seen.append({k: np.asarray(v).copy() if not isinstance(v, str) else v for k, v in obs.items()})
        return np.array([0, 0, 0, 0, 0, 0, -1.0])


def _check_robomimic_obs(obs: dict) -> None:
    assert {k for k in obs if not k.startswith("bomb/")} == ROBOMIMIC_KEYS | {"instruction"}
    for k, n in LOWDIM_DIMS.items():
        assert obs[k].dtype == np.float32 and obs[k].shape == (n,), k
    assert np.array_equal(obs["ee_states"], np.concatenate([obs["ee_pos"], obs["ee_ori"]]))
    assert obs["agentview_rgb"].shape == (32, 32, 3) and obs["agentview_rgb"].dtype == np.uint8


def test_lowdim_values_as_the_export_computes_them():
    rng = np.random.default_rng(0)
    q = rng.normal(size=4).astype(np.float32)
    q /= np.linalg.norm(q)
    obs = {"agentview": np.zeros((16, 16, 3), np.uint8), "wrist": np.ones((16, 16, 3), np.uint8),
           "eef_pos": rng.normal(size=3).astype(np.float32), "eef_quat": q,
           "gripper_qpos": np.array([0.01, 0.02], np.float32), "joint_pos": rng.normal(size=7).astype(np.float32),
           "state": np.zeros(8, np.float32), "instruction": "x"}
    a = adapt_observation(obs, adapter_for("robomimic"))
    assert np.array_equal(a["ee_ori"], quat_wxyz_to_axis_angle(q)) and np.array_equal(a["ee_pos"], obs["eef_pos"])
    assert np.array_equal(a["joint_states"], obs["joint_pos"]) and "state" not in a
    assert np.array_equal(a["eye_in_hand_rgb"], obs["wrist"])
    with pytest.raises(ValueError):
        AdapterConfig(lowdim_keys={"x": "joint_velocities"})


@pytest.mark.parametrize("served", [False, True])
def test_adapter_preset_robomimic_in_process_and_served(tmp_path: Path, served: bool):
    Keys.seen.clear()
    if served:  # the server's metadata asks for the canonical observation; --adapter robomimic replaces it
        with make_server("python:tests.test_adapter_presets:Keys", port=0, cfg=small_cfg()) as srv:
            s = evaluate(small_cfg(), f"openpi://127.0.0.1:{srv.port}", tmp_path / "ev", episodes_per_cell=1,
                         workers=1, videos_per_cell=0, adapter={"preset": "robomimic"})
    else:
        s = evaluate(small_cfg(), "python:tests.test_adapter_presets:Keys", tmp_path / "ev", episodes_per_cell=1,
                     workers=1, videos_per_cell=0, adapter={"preset": "robomimic"})
    assert s["overall"]["n_error"] == 0
    assert s["adapter"]["lowdim_keys"] == {k: k for k in LOWDIM_DIMS} and s["adapter"]["state_key"] is None
    _check_robomimic_obs(Keys.seen[0])  # the served policy runs in this process: it recorded what it got
    assert ("bomb/episode_id" in Keys.seen[0]) is served


def test_unknown_adapter_preset_one_line(tmp_path: Path, run_cli):
    p = run_cli("eval", "--policy", "noop", "--adapter", "libero_v9", "--out", str(tmp_path / "ev"), timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "libero_v9" in p.stderr, p.stderr
    assert not (tmp_path / "ev").exists()


def test_adapter_flag_from_the_cli(tmp_path: Path, run_cli):
    p = run_cli("eval", "--policy", "noop", "--adapter", "robomimic", "--image-size", "32", "--max-steps", "10",
                "--episodes-per-cell", "1", "--videos-per-cell", "0", "--workers", "1", "-q", "--out",
                str(tmp_path / "ev"))
    assert p.returncode == 0, p.stderr
    s = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert s["adapter"]["image_keys"] == {"agentview": "agentview_rgb", "wrist": "eye_in_hand_rgb"}
