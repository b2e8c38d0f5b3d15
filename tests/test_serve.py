"""`bomb-data serve` (issue 24): any policy bomb-data loads, behind the openpi protocol, with metadata
that eval follows without flags and an opt-in opaque episode id on which a stateful server resets."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bomb_data.config import load_config
from bomb_data.evaluate.protocol import policy_seed
from bomb_data.evaluate.runner import evaluate, read_results
from bomb_data.evaluate.serve import make_server
from tests.conftest import REPO


def small_cfg():
    return load_config(overrides={"sim": {"image_height": 64, "image_width": 64, "max_steps": 12}})


class Recorder:
    """Factory for ``python:tests.test_serve:Recorder``: records its resets and calls, holds still."""

    instances: list[Recorder] = []

    def __init__(self):
        self.seeds: list[int] = []
        self.calls = 0
        self.keys: set[str] = set()
        Recorder.instances.append(self)

    def reset(self, start):
        self.seeds.append(start.seed)

    def act(self, obs):
        self.calls += 1
        self.keys |= set(obs)
        return np.array([0, 0, 0, 0, 0, 0, -1.0])


@pytest.mark.parametrize("workers", [1, 2])
def test_served_policy_resets_per_episode_with_the_policy_seed(tmp_path: Path, workers: int):
    Recorder.instances.clear()
    with make_server("python:tests.test_serve:Recorder", port=0, cfg=small_cfg()) as srv:
        s = evaluate(small_cfg(), f"openpi://127.0.0.1:{srv.port}", tmp_path / "ev", episodes_per_cell=3,
                     workers=workers, concurrency=2, videos_per_cell=0)
    rows = read_results(tmp_path / "ev" / "results.jsonl")
    assert s["overall"]["n_error"] == 0 and len(rows) == 3
    assert s["adapter"]["send_episode_id"] is True and s["adapter"]["image_keys"] == {"agentview": "agentview",
                                                                                       "wrist": "wrist"}
    # one policy state per episode (the factory made once at load, then once per episode), reset once, with
    # the seed the policy gets in process; interleaved episodes (2 clients) never share one
    per_episode = [p for p in Recorder.instances if p.seeds]
    assert sorted(p.seeds[0] for p in per_episode) == sorted(policy_seed(r["seed"]) for r in rows)
    assert all(len(p.seeds) == 1 for p in per_episode)
    assert sorted(p.calls for p in per_episode) == sorted(r["steps"] for r in rows)
    sent = set().union(*(p.keys for p in per_episode))
    assert sent == {"agentview", "wrist", "state", "instruction", "bomb/episode_id"}  # nothing privileged


def test_episode_id_is_opaque(tmp_path: Path):
    from bomb_data.evaluate.adapt import AdapterConfig, adapt_observation

    obs = {"agentview": np.zeros((8, 8, 3), np.uint8), "wrist": np.zeros((8, 8, 3), np.uint8),
           "state": np.zeros(8, np.float32), "instruction": "x"}
    a = adapt_observation(obs, AdapterConfig(send_episode_id=True), seed=12345)
    assert a["bomb/episode_id"] == f"{policy_seed(12345):016x}" and str(12345) not in a["bomb/episode_id"]
    assert "bomb/episode_id" not in adapt_observation(obs, AdapterConfig(), seed=12345)  # opt-in


@pytest.mark.parametrize("spec,says", [
    ("expert", "reads privileged state"),
    ("replay:data/none", "replay: needs each episode's store index"),
    ("openpi://127.0.0.1:1", "already a server"),
    ("lerobot:/nonexistent/ckpt", "no such directory"),
    ("python:no_such_module:f", "cannot import"),
])
def test_serve_refuses_with_one_line(spec: str, says: str, run_cli):
    p = run_cli("serve", "--policy", spec, "--port", "0", timeout=120)
    assert p.returncode == 2 and p.stderr.startswith("error: ") and says in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_serve_cli_noop_then_eval_with_no_flags(tmp_path: Path, run_cli):
    log = tmp_path / "serve.log"
    proc = subprocess.Popen([sys.executable, "-m", "bomb_data.cli", "serve", "--policy", "noop", "--port", "0"],
                            stdout=subprocess.DEVNULL, stderr=log.open("w"), cwd=str(REPO))
    try:
        t0, port = time.monotonic(), None
        while port is None and time.monotonic() - t0 < 120 and proc.poll() is None:
            m = re.search(r"ws://127\.0\.0\.1:(\d+)", log.read_text())
            port = int(m.group(1)) if m else None
            time.sleep(0.2)
        assert port, log.read_text()
        p = run_cli("eval", "--policy", f"openpi://127.0.0.1:{port}", "--out", str(tmp_path / "ev"), "--image-size",
                    "64", "--max-steps", "12", "--episodes-per-cell", "1", "--videos-per-cell", "0", "--workers", "1",
                    "-q")
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout)["errors"] == 0
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serving_imports_no_simulator():
    """bomb-data serve runs in a model's own environment: no mujoco, dask or torch for a non-torch policy."""
    code = ("import sys\n"
            "from bomb_data.evaluate.serve import make_server\n"
            "srv = make_server('noop', port=0).start()\n"
            "srv.stop()\n"
            "print(','.join(m for m in ('mujoco', 'dask', 'distributed', 'torch') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=str(REPO), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "", (out.stdout, out.stderr[-2000:])
