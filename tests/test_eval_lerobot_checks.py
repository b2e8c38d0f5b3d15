"""``lerobot:`` checks that need no lerobot (issue 24): what a checkpoint expects is read from its
config.json, and what the evaluation would not send as trained is refused with one line, exit 2,
before anything is written. Real lerobot-train checkpoints: tests/test_eval_lerobot.py (compat)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bomb_data.errors import BombDataError
from bomb_data.evaluate.policies import parse_policy_spec, plan_adapter

SMALL = ["--image-size", "64", "--max-steps", "12", "--episodes-per-cell", "1", "--videos-per-cell", "0",
         "--workers", "1", "-q"]


def checkpoint(root: Path, size: int = 64, images=("observation.images.agentview", "observation.images.wrist"),
               state: int | None = 8, action: int = 7, extra: dict | None = None, files=True) -> Path:
    """A pretrained_model directory laid out as lerobot 0.4 writes it (config fields as lerobot-train's)."""
    d = root / "outputs" / "train" / "run" / "checkpoints" / "last" / "pretrained_model"
    d.mkdir(parents=True)
    feats = {k: {"type": "VISUAL", "shape": [3, size, size]} for k in images}
    if state:
        feats["observation.state"] = {"type": "STATE", "shape": [state]}
    feats.update(extra or {})
    (d / "config.json").write_text(json.dumps({"type": "act", "input_features": feats, "n_obs_steps": 1,
                                               "output_features": {"action": {"type": "ACTION", "shape": [action]}},
                                               "chunk_size": 5, "n_action_steps": 5}))
    if files:
        (d / "model.safetensors").write_bytes(b"")
        (d / "policy_preprocessor.json").write_text(json.dumps({"name": "policy_preprocessor", "steps": []}))
    return d


def test_preset_from_the_checkpoint(tmp_path: Path):
    d = checkpoint(tmp_path, size=48)
    for target in (d, tmp_path / "outputs" / "train" / "run", d.parent):  # pretrained_model, run dir, step dir
        acfg, priv = plan_adapter(parse_policy_spec(f"lerobot:{target}"), 64)
        assert acfg.image_keys == {"agentview": "observation.images.agentview", "wrist": "observation.images.wrist"}
        assert (acfg.image_size, acfg.resize_mode, acfg.state_key, acfg.state_layout, acfg.instruction_key) == \
            (48, "stretch", "observation.state", "eef_axisangle_fingers", "task")
        assert priv == {"sent": False, "declared": False}
    acfg, _ = plan_adapter(parse_policy_spec(f"lerobot:{checkpoint(tmp_path / 'o', images=('image', 'wrist_image'))}"))
    assert acfg.image_keys == {"agentview": "image", "wrist": "wrist_image"}  # the openpi preset's names


@pytest.mark.parametrize("make,args,says", [
    (lambda r: r, [], "not a LeRobot checkpoint"),
    (lambda r: checkpoint(r, files=False), [], "no model.safetensors"),
    (lambda r: checkpoint(r, action=6), [], "6 dimensions"),
    (lambda r: checkpoint(r, extra={"observation.environment_state": {"type": "ENV", "shape": [4]}}), [],
     "environment_state"),
    (lambda r: checkpoint(r, images=("observation.images.front",)), [], "not a camera bomb-data renders"),
    (lambda r: checkpoint(r, size=64), ["--policy-image-size", "128"], "trained on 64x64 images"),
    (lambda r: checkpoint(r, size=128), [], "upsampled"),
    (lambda r: checkpoint(r, state=9), [], "needs state 'observation.state' of [9]"),
    (lambda r: checkpoint(r), ["--state-key", ""], "needs state"),
])
def test_bad_checkpoint_or_mismatch_one_line_nothing_written(tmp_path: Path, run_cli, make, args, says):
    d = make(tmp_path / "ck")
    d.mkdir(parents=True, exist_ok=True)
    out = tmp_path / "ev"
    p = run_cli("eval", "--policy", f"lerobot:{d}", "--out", str(out), *SMALL, *args)
    assert p.returncode == 2 and p.stderr.startswith("error: ") and says in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and not out.exists()


def test_unnamed_camera_mapped_by_the_user(tmp_path: Path):
    d = checkpoint(tmp_path, images=("observation.images.front",))
    acfg, _ = plan_adapter(parse_policy_spec(f"lerobot:{d}"), 64, image_keys={"agentview": "observation.images.front"})
    assert acfg.image_keys == {"agentview": "observation.images.front"} and acfg.image_size == 64
    with pytest.raises(BombDataError, match="needs image 'observation.images.front'"):
        plan_adapter(parse_policy_spec(f"lerobot:{d}"), 64, image_keys={"wrist": "observation.images.other"})


def _safetensors(path: Path, names: list[str]) -> None:
    """A safetensors file holding empty float tensors named ``names`` (the header is what is read)."""
    import struct

    header = json.dumps({n: {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for n in names}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header)


def test_lerobot_03_checkpoint_told_by_its_files(tmp_path: Path, run_cli):
    """A lerobot 0.3 checkpoint (v2.1 line: no processor files, normalize_inputs buffers in the model) is
    read as such: same preset from its config.json; in an env without lerobot one line names the line
    to install or to serve it from. Neither processor files nor buffers: not a checkpoint."""
    from bomb_data.evaluate.lerobot_policy import read_checkpoint

    d = checkpoint(tmp_path / "a", files=False)
    _safetensors(d / "model.safetensors", ["model.x", "normalize_inputs.buffer_observation_state.mean"])
    info = read_checkpoint(d)
    assert info.line == "0.3" and info.describe()["lerobot_line"] == "0.3"
    acfg, _ = plan_adapter(parse_policy_spec(f"lerobot:{d}"), 64)
    assert acfg.image_keys == {"agentview": "observation.images.agentview", "wrist": "observation.images.wrist"}
    assert read_checkpoint(checkpoint(tmp_path / "b")).line == "0.4"
    out = tmp_path / "ev"
    p = run_cli("eval", "--policy", f"lerobot:{d}", "--out", str(out), *SMALL)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and not out.exists(), p.stderr
    assert "a checkpoint of lerobot 0.3" in p.stderr and "lerobot==0.3.3" in p.stderr and "bomb-data serve" in p.stderr
    e = checkpoint(tmp_path / "c", files=False)
    _safetensors(e / "model.safetensors", ["model.x"])
    p = run_cli("eval", "--policy", f"lerobot:{e}", "--out", str(out), *SMALL)
    assert p.returncode == 2 and "not a checkpoint lerobot-train wrote" in p.stderr and not out.exists(), p.stderr
