"""`bomb-data eval` against real servers on 127.0.0.1 (issue 9): openpi websocket, OpenVLA and
OpenVLA-OFT REST driving the scripted expert give the in-process results; servers that drop the
connection, answer NaN or the wrong shape mark episodes ``error`` with the reason and the run completes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bomb_data.config import load_config
from bomb_data.evaluate.gate import FirstCallFailure
from bomb_data.evaluate.runner import evaluate, read_results
from bomb_data.evaluate.servers import Faults, OpenPIServer, OpenVLAServer, served_policy

PRIV = {"send_privileged": True}


def small_cfg(max_steps: int | None = None):
    sim = {"image_height": 64, "image_width": 64}
    if max_steps:
        sim["max_steps"] = max_steps
    return load_config(overrides={"sim": sim})


def key_rows(out: Path) -> list[tuple]:
    return [(r["episode_id"], r["seed"], r["status"], r["success"], r["steps"])
            for r in read_results(out / "results.jsonl")]


@pytest.fixture(scope="module")
def inprocess(tmp_path_factory) -> list[tuple]:
    out = tmp_path_factory.mktemp("inproc") / "ev"
    evaluate(small_cfg(), "expert", out, episodes_per_cell=2, workers=1, videos_per_cell=0)
    return key_rows(out)


def _server(protocol: str, faults: Faults | None = None, cfg=None):
    sp = served_policy("expert", protocol, faults=faults, cfg=cfg or small_cfg())
    return OpenPIServer(sp) if protocol == "openpi" else OpenVLAServer(sp, oft=protocol == "openvla-oft")


@pytest.mark.parametrize("protocol", ["openpi", "openvla", "openvla-oft"])
def test_expert_behind_server_matches_in_process(tmp_path: Path, inprocess, protocol: str):
    with _server(protocol) as srv:
        s = evaluate(small_cfg(), f"{protocol}://127.0.0.1:{srv.port}", tmp_path / "ev", episodes_per_cell=2,
                     workers=1, videos_per_cell=1, adapter=PRIV)
    assert key_rows(tmp_path / "ev") == inprocess  # same episodes, same success, same number of steps
    assert s["overall"]["successes"] == sum(r[3] for r in inprocess) and s["overall"]["n_error"] == 0
    assert s["latency"]["latency_ms_mean"] > 0
    # privileged state went to a server the client cannot see into: the run is marked, not refused
    assert s["comparable"] is False and "remote policy" in s["not_comparable_reason"]
    if protocol == "openpi":
        assert s["policy_description"]["server_metadata"]["protocol"] == "openpi"


def test_two_concurrent_clients_against_one_server(tmp_path: Path, inprocess):
    with _server("openpi") as srv:
        evaluate(small_cfg(), f"openpi://127.0.0.1:{srv.port}", tmp_path / "ev", episodes_per_cell=2,
                 concurrency=2, workers=2, videos_per_cell=0, adapter=PRIV)
    assert sorted(key_rows(tmp_path / "ev")) == sorted(inprocess)


def test_server_restart_mid_episode_is_retried(tmp_path: Path, inprocess):
    with _server("openpi", Faults(drop_after=10)) as srv:  # drops once, then serves again
        s = evaluate(small_cfg(), f"openpi://127.0.0.1:{srv.port}", tmp_path / "ev", episodes_per_cell=2,
                     workers=1, videos_per_cell=0, adapter=PRIV, backoff_s=0.05)
    assert key_rows(tmp_path / "ev") == inprocess and s["overall"]["n_error"] == 0


@pytest.mark.parametrize("protocol,faults,kind", [
    ("openpi", Faults(drop_after=3, drop_always=True), "disconnected"),
    ("openvla", Faults(drop_after=3, drop_always=True), "disconnected"),
    ("openvla", Faults(nan_after=3), "nan"),
    ("openpi", Faults(nan_after=3), "nan"),
    ("openpi", Faults(wrong_shape_after=3), "bad_shape"),
    ("openvla-oft", Faults(wrong_shape_after=3), "bad_shape"),
])
def test_faulty_server_marks_episodes_error_and_run_completes(tmp_path: Path, protocol: str, faults: Faults, kind: str):
    cfg = small_cfg(max_steps=20)
    with _server(protocol, faults, cfg) as srv:
        s = evaluate(cfg, f"{protocol}://127.0.0.1:{srv.port}", tmp_path / "ev", episodes_per_cell=2, workers=1,
                     videos_per_cell=0, adapter=PRIV, retries=1, backoff_s=0.05, timeout_s=5)
    rows = read_results(tmp_path / "ev" / "results.jsonl")
    assert len(rows) == 2 and s["complete"]
    assert all(r["status"] == "error" and r["error_kind"] == kind and r["failure_reason"] == "policy_error"
               for r in rows), [(r["status"], r["error"]) for r in rows]
    assert rows[0]["steps"] == 3  # three good replies were executed before the fault
    assert s["error_kinds"] == {kind: 2} and s["overall"]["n"] == 0 and s["overall"]["n_error"] == 2
    assert (tmp_path / "ev" / "report.html").exists()


def test_slow_server_times_out(tmp_path: Path):
    cfg = small_cfg(max_steps=20)
    with _server("openvla", Faults(delay_s=1.0), cfg) as srv:
        s = evaluate(cfg, f"openvla://127.0.0.1:{srv.port}", tmp_path / "ev", episodes_per_cell=1, workers=1,
                     videos_per_cell=0, adapter=PRIV, retries=0, timeout_s=0.3)
    assert s["error_kinds"] == {"timeout": 1}


def bad_python_policy():
    """Factory for ``python:tests.test_eval_protocols:bad_python_policy``: raises on the 2nd call."""
    calls = []

    def act(obs):
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("model exploded")
        return np.zeros(7)

    return act


def test_python_policy_exception_marks_error(tmp_path: Path):
    s = evaluate(small_cfg(max_steps=20), "python:tests.test_eval_protocols:bad_python_policy", tmp_path / "ev",
                 episodes_per_cell=1, workers=1, videos_per_cell=0)
    r = read_results(tmp_path / "ev" / "results.jsonl")[0]
    assert r["error_kind"] == "policy_exception" and "model exploded" in r["error"] and s["complete"]


@pytest.mark.parametrize("protocol,malformed", [
    ("openpi", "object_dtype"),    # once a segfault (exit 139) of the process decoding it
    ("openpi", "string_dtype"),
    ("openpi", "no_dtype"),
    ("openpi", "short_data"),
    ("openvla", "object_dtype"),
    ("openvla", "no_dtype"),       # once a KeyError that aborted the run
    ("openvla", "empty_scalar"),   # once an IndexError that aborted the run
    ("openvla", "string_dtype"),
    ("openvla-oft", "no_dtype"),
    ("openvla-oft", "object_dtype"),
])
def test_malformed_arrays_from_a_server_are_policy_errors(tmp_path: Path, protocol: str, malformed: str):
    cfg = small_cfg(max_steps=20)
    with _server(protocol, Faults(malformed=malformed, malformed_after=2), cfg) as srv:
        s = evaluate(cfg, f"{protocol}://127.0.0.1:{srv.port}", tmp_path / "ev", episodes_per_cell=2, workers=1,
                     videos_per_cell=0, adapter=PRIV, retries=0, timeout_s=5)
    rows = read_results(tmp_path / "ev" / "results.jsonl")
    assert len(rows) == 2 and s["complete"]
    assert all(r["status"] == "error" and r["error_kind"] == "bad_reply" for r in rows), [r["error"] for r in rows]
    assert rows[0]["steps"] == 2  # two good replies were executed before the malformed one


def test_object_dtype_reply_with_dask_workers_is_a_policy_error(tmp_path: Path):
    # the default path (worker processes): the reply must not crash the worker and abort the run
    # Every reply is bad from the first one, so the run stops at the first call ('fail loudly'): the
    # worker decoded the reply into a named bad_reply (a segfaulting worker would give no such line)
    cfg = small_cfg(max_steps=20)
    with _server("openpi", Faults(malformed="object_dtype", malformed_after=0), cfg) as srv:
        with pytest.raises(FirstCallFailure, match=r"bad_reply: .*dtype object"):
            evaluate(cfg, f"openpi://127.0.0.1:{srv.port}", tmp_path / "ev", episodes_per_cell=2, workers=2,
                     concurrency=2, videos_per_cell=0, adapter=PRIV, retries=0, timeout_s=5)
