"""Fail loudly (issue 24): a run whose first policy call fails on what the policy was sent stops with
one line before counting anything; a run where every episode (or more than --max-error-rate of them)
ended in a policy error exits non-zero naming the first error, its results kept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bomb_data.config import load_config
from bomb_data.errors import PolicyError
from bomb_data.evaluate.gate import error_rate_failure
from bomb_data.evaluate.runner import evaluate, read_results
from bomb_data.evaluate.servers import Faults, OpenPIServer, served_policy

SMALL = ["--image-size", "64", "--max-steps", "20", "--episodes-per-cell", "2", "--videos-per-cell", "0",
         "--workers", "1", "-q", "--timeout", "5", "--retries", "0"]


def small_cfg():
    return load_config(overrides={"sim": {"image_height": 64, "image_width": 64, "max_steps": 20}})


def wants_lerobot_keys():
    """Factory for ``python:tests.test_eval_gate:wants_lerobot_keys``: a policy trained on other keys."""

    def act(obs):
        return np.zeros(7) + obs["observation.images.agentview"].mean()

    return act


def fails_in_second_episode():
    """Factory: fine in the first episode it sees, raises from the second one on."""
    state = {"episodes": 0}

    class P:
        def reset(self, start):
            state["episodes"] += 1

        def act(self, obs):
            if state["episodes"] > 1:
                raise RuntimeError("weights went NaN")
            return np.array([0, 0, 0, 0, 0, 0, -1.0])

    return P()


def _one_error_line(stderr: str) -> str:
    """The one ``error:`` line, last on stderr (per-episode WARNING lines may precede it), no traceback."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in stderr, stderr
    return errors[0]


def test_key_mismatch_behind_server_stops_at_first_call_nothing_written(tmp_path: Path, run_cli):
    sp = served_policy("python:tests.test_eval_gate:wants_lerobot_keys", "openpi", cfg=small_cfg())
    out = tmp_path / "ev"
    with OpenPIServer(sp) as srv:
        p = run_cli("eval", "--policy", f"openpi://127.0.0.1:{srv.port}", "--out", str(out), *SMALL)
    assert p.returncode == 2, p.stderr
    line = _one_error_line(p.stderr)
    assert "first call failed" in line and "KeyError" in line and "observation.images.agentview" in line, line
    assert not out.exists()  # nothing counted, nothing written
    assert sp.requests == 1  # stopped after the one call, not after every episode failed


def test_first_call_mismatch_in_process_leaves_nothing(tmp_path: Path):
    fresh = tmp_path / "fresh"
    with pytest.raises(PolicyError, match="first call failed.*KeyError"):
        evaluate(small_cfg(), "python:tests.test_eval_gate:wants_lerobot_keys", fresh, episodes_per_cell=1,
                 workers=1, videos_per_cell=0)
    assert not fresh.exists()
    mine = tmp_path / "mine"  # a directory the user made stays, empty
    mine.mkdir()
    with pytest.raises(PolicyError, match="first call failed"):
        evaluate(small_cfg(), "python:tests.test_eval_gate:wants_lerobot_keys", mine, episodes_per_cell=1,
                 workers=2, videos_per_cell=0)  # on Dask workers too
    assert mine.is_dir() and list(mine.iterdir()) == []


def test_every_episode_an_error_exits_3_with_results_kept(tmp_path: Path, run_cli):
    sp = served_policy("noop", "openpi", faults=Faults(drop_after=3, drop_always=True), cfg=small_cfg())
    out = tmp_path / "ev"
    with OpenPIServer(sp) as srv:
        p = run_cli("eval", "--policy", f"openpi://127.0.0.1:{srv.port}", "--out", str(out), *SMALL,
                    "--max-error-rate", "1")
    assert p.returncode == 3, p.stderr
    line = _one_error_line(p.stderr)
    assert "2 of 2 episodes ended in a policy error" in line and "disconnected" in line, line
    rows = read_results(out / "results.jsonl")
    assert len(rows) == 2 and all(r["error_kind"] == "disconnected" for r in rows)
    assert json.loads(p.stdout)["errors"] == 2 and (out / "summary.json").exists()


def test_error_rate_threshold(tmp_path: Path, run_cli):
    # episode 1 completes, episode 2 fails: 50% errors passes the default 0.5 and fails 0.4
    args = ["eval", "--policy", "python:tests.test_eval_gate:fails_in_second_episode", *SMALL]
    p = run_cli(*args, "--out", str(tmp_path / "a"))
    assert p.returncode == 0, p.stderr
    rows = read_results(tmp_path / "a" / "results.jsonl")
    assert [r["status"] for r in rows] == ["ok", "error"]
    p = run_cli(*args, "--out", str(tmp_path / "b"), "--max-error-rate", "0.4")
    assert p.returncode == 3 and "1 of 2 episodes" in _one_error_line(p.stderr) and "weights went NaN" in p.stderr
    assert error_rate_failure(rows, 0.5) is None and error_rate_failure(rows, 0.49) is not None
    assert error_rate_failure(rows[1:], 1.0) is not None  # all errors fail whatever the threshold
    assert error_rate_failure([], 0.0) is None
