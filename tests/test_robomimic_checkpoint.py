"""Reading what a robomimic checkpoint expects without torch (bomb_data.evaluate.robomimic_policy):
the tests in test_eval_robomimic.py read real checkpoints of robomimic's train.py; here the reader
is attacked with files that are not checkpoints, or are hostile, in the main environment."""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from bomb_data.errors import PolicyError
from bomb_data.evaluate.policies import parse_policy_spec, plan_adapter
from bomb_data.evaluate.robomimic_policy import read_checkpoint


class Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _config(low_dim=("ee_pos", "gripper_states"), rgb=("agentview_rgb",), goal=()) -> str:
    return json.dumps({"algo": {"rnn": {"enabled": False}},
                       "observation": {"modalities": {"obs": {"low_dim": list(low_dim), "rgb": list(rgb)},
                                                      "goal": {"low_dim": list(goal)}}}})


def _ckpt(path: Path, payload: dict) -> Path:
    """A torch.save-style zip (``NAME/data.pkl``) holding ``payload``."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{path.stem}/data.pkl", pickle.dumps(payload, protocol=2))
        z.writestr(f"{path.stem}/version", "3\n")
    return path


def _good(**kw) -> dict:
    shapes = OrderedDict([("agentview_rgb", [3, 48, 48]), ("ee_pos", [3]), ("gripper_states", [2]),
                          ("joint_states", [7])])
    return {"model": {"nets": {"policy": np.zeros(4)}}, "config": _config(**kw), "algo_name": "bc",
            "env_metadata": {"env_name": "x"}, "obs_normalization_stats": {"ee_pos": {"mean": np.zeros(3)}},
            "shape_metadata": {"ac_dim": 7, "all_shapes": shapes, "all_obs_keys": list(shapes), "use_images": True}}


def test_reads_keys_and_sizes_and_never_runs_what_the_pickle_names(tmp_path: Path):
    marker = tmp_path / "ran"
    info = read_checkpoint(_ckpt(tmp_path / "m.pth", {**_good(), "extra": Evil(marker)}))
    assert not marker.exists()  # os.system was named in the pickle and not called
    assert info.type == "bc" and info.images == {"agentview_rgb": (3, 48, 48)}
    assert info.state == {"ee_pos": (3,), "gripper_states": (2,)} and info.action_dim == 7
    acfg, _ = plan_adapter(parse_policy_spec(f"robomimic:{tmp_path / 'm.pth'}"), 64)
    assert acfg.image_size == 48 and acfg.image_keys == {"agentview": "agentview_rgb"}
    assert acfg.lowdim_keys == {"ee_pos": "ee_pos", "gripper_states": "gripper_states"} and acfg.state_key is None


@pytest.mark.parametrize("make,says", [
    (lambda p: p.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(200)), "not a robomimic checkpoint"),
    (lambda p: _ckpt(p, {"state_dict": {}}), "no model, config, algo_name, shape_metadata"),
    (lambda p: _ckpt(p, {**_good(), "config": "{"}), "without a readable config"),
    (lambda p: _ckpt(p, _good(low_dim=("robot0_eef_pos",))), "'robot0_eef_pos' is not an obs key"),
    (lambda p: _ckpt(p, _good(goal=("ee_pos",))), "goal-conditioned"),
    (lambda p: _ckpt(p, {**_good(), "shape_metadata": {**_good()["shape_metadata"], "ac_dim": 10}}), "10 dimensions"),
    (lambda p: p.write_bytes(_ckpt(p, _good()).read_bytes()[:300]), "not a robomimic checkpoint"),
])
def test_refused_with_one_line(tmp_path: Path, make, says: str):
    p = tmp_path / "m.pth"
    make(p)
    with pytest.raises(PolicyError) as e:
        read_checkpoint(p)
    assert says in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_image_size_mismatch_refused_before_any_episode(tmp_path: Path, run_cli):
    ck = _ckpt(tmp_path / "m.pth", _good())
    out = tmp_path / "ev"
    for args, says in [(["--image-size", "32"], "upsampled"),
                       (["--image-size", "64", "--policy-image-size", "64"], "trained on 48x48 images")]:
        p = run_cli("eval", "--policy", f"robomimic:{ck}", "--out", str(out), "--episodes-per-cell", "1", *args,
                    timeout=120)
        assert p.returncode == 2 and p.stderr.count("error: ") == 1 and says in p.stderr, p.stderr
        assert "Traceback" not in p.stderr and not out.exists()
