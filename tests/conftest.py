"""Shared fixtures: tiny real stores and side environments of other ecosystems."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SIDE_ENVS = REPO / ".venvs"

os.environ.setdefault("MUJOCO_GL", "egl")


#: Test files that share a session fixture too costly to make twice: run on one pytest-xdist worker.
XDIST_GROUPS = {"test_explain_act": "trained_act", "test_probe_act": "trained_act"}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under pytest-xdist's ``--dist loadfile`` (scripts/test.sh) each test file runs whole on one worker,
    so its module fixtures (stores, trained checkpoints, servers) are made once, and the files of
    ``XDIST_GROUPS`` share one worker. (``--dist loadgroup`` cannot do this: pytest 9.2 ignores the node
    id suffix xdist 3.8 gives a group.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class FileGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = nodeid.split("::", 1)[0]
            return XDIST_GROUPS.get(Path(file).stem, file)

    return FileGroups(config, log)


def _make_tiny_store(path: Path, n: int) -> Path:
    from tests._stores import make_store

    make_store(path, n=n)
    return path


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path to a small real store: 5 expert episodes at 64x64 on the randomized grid, splits
    heldout, train, train, val, val; made once per session."""
    return _make_tiny_store(tmp_path_factory.mktemp("tiny") / "store", n=5)


def side_python(name: str) -> Path:
    """Python of the side environment ``.venvs/<name>`` made by ``scripts/setup_side_envs.sh``.

    Locally a missing side environment skips the test with the command to make it; under CI
    (``CI`` set) it fails, so CI can never pass by skipping a compatibility check.
    """
    py = SIDE_ENVS / name / "bin" / "python"
    if not py.exists():
        msg = f"side environment {name!r} missing: run `bash scripts/setup_side_envs.sh {name}`"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return py


def run_side(name: str, script: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run ``script`` with the side environment's python; fail the test with its stderr on error."""
    py = side_python(name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run([str(py), str(script), *args], capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        pytest.fail(f"{script.name} failed in side env {name}:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


@pytest.fixture
def run_cli():
    """Run ``bomb-data`` as a user would (a subprocess), returning the CompletedProcess."""

    def _run(*args: str, timeout: float = 600, check: bool = False) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "bomb_data.cli", *args], capture_output=True, text=True,
                              timeout=timeout, cwd=str(REPO))
        if check and proc.returncode != 0:
            pytest.fail(f"bomb-data {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc

    return _run


#: The GoSequence store of ``sequence_store``: two 3-subtask episodes (place, place, remove), 16 px,
#: one in train and one in val (root seed 2 with val_fraction 0.5 splits k = 0, 1 that way).
SEQUENCE_STORE_CONFIG = ("task: sequence\ngenerate:\n  seed: 2\n  val_fraction: 0.5\n"
                         "sequence:\n  length: 2\n  move_number: 24\n  capture_bias: 1.0\n")


@pytest.fixture(scope="session")
def sequence_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path to a small real GoSequence store (``SEQUENCE_STORE_CONFIG``, 2 episodes at 16x16), made once
    per session by ``bomb-data generate``."""
    out = tmp_path_factory.mktemp("sequence") / "store"
    cfg = out.parent / "sequence.yaml"
    cfg.write_text(SEQUENCE_STORE_CONFIG)
    env = {**os.environ, "PYTHONPATH": str(REPO), "MUJOCO_GL": "egl"}
    proc = subprocess.run([sys.executable, "-m", "bomb_data", "generate", "--config", str(cfg), "--n", "2", "--out",
                           str(out), "--image-size", "16", "--workers", "1", "-q"], capture_output=True, text=True,
                          env=env, timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"generating the sequence store failed:\n{proc.stderr[-4000:]}")
    return out


#: The tiny ACT that test_explain_act and test_probe_act share: trained once on a LeRobot v3.0 export of
#: a 3-episode 32x32 nominal-grid store, ``ACT_STEPS`` steps of batch 4 (tests/compat/check_probe_act.py).
ACT_SIZE, ACT_STEPS, ACT_PROBE_SCENES, ACT_PROBE_GRID = 32, 400, 200, "randomized"


@pytest.fixture(scope="session")
def trained_act(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """ACT trained once in the side env ``lerobot30``, then probed and explained in that same process:
    ``res`` (the probe's JSON line; the explanation's under ``"explain"``), ``scenes``/``images``/``features``
    (the probe scenes: the randomized grid at root seed 1, at the size ACT was trained on; features of the
    trained backbone and of its initialisation), ``dir`` and ``explain_out``."""
    import numpy as np

    from bomb_data.ground.features import iter_scenes
    from tests._stores import export_store, make_store

    d = tmp_path_factory.mktemp("act")
    make_store(d / "store", n=3, H=ACT_SIZE, W=ACT_SIZE, grid="nominal")
    export_store(d / "store", d / "lerobot", "lerobot")
    # probe scenes: the randomized grid (its tray moves: the active stone's region varies; on the nominal
    # grid it never does)
    scenes = list(iter_scenes(ACT_PROBE_GRID, ACT_PROBE_SCENES, seed=1, size=ACT_SIZE))
    images = np.stack([sc["obs"]["agentview"] for sc in scenes])
    np.savez(d / "images.npz", images=images)
    proc = run_side("lerobot30", REPO / "tests" / "compat" / "check_probe_act.py", str(d / "lerobot"),
                    str(d / "images.npz"), str(d / "act"), "--steps", str(ACT_STEPS), "--batch", "4",
                    "--explain-out", str(d / "explain"), timeout=1500)
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    with np.load(d / "act" / "features.npz") as z:
        feats = {k: z[k] for k in z.files}
    return {"res": res, "scenes": scenes, "images": images, "features": feats, "dir": d,
            "explain_out": d / "explain"}
