"""``bomb-data probe ask`` against a stand-in chat-completions server (real HTTP on 127.0.0.1):
round trip through ``probe score``, bad replies as scored misses with reasons, kill -9 and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bomb_data.ground.ask import ask_probe_set
from bomb_data.ground.probe import make_probe_set, score_probe_set
from tests.conftest import REPO

SERVER = REPO / "tests" / "_standin_vlm.py"


@pytest.fixture(scope="module")
def probe_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ask") / "set"
    make_probe_set("nominal", 3, out, seed=5, size=64)
    return out


def _items(d: Path) -> list[dict]:
    return [json.loads(x) for x in (d / "items.jsonl").read_text().splitlines()]


class Server:
    def __init__(self, set_dir: Path, tmp: Path, faults: dict | None = None, delay: float = 0.0):
        self.port_file = tmp / f"port-{time.monotonic_ns()}"
        args = [sys.executable, str(SERVER), str(set_dir), str(self.port_file), "--delay", str(delay)]
        if faults:
            fp = tmp / "faults.json"
            fp.write_text(json.dumps(faults))
            args += ["--faults", str(fp)]
        self.proc = subprocess.Popen(args, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while not self.port_file.exists():
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"stand-in server did not start: {self.proc.stderr.read().decode()}")
            time.sleep(0.05)
        self.endpoint = f"http://127.0.0.1:{int(self.port_file.read_text())}/v1"

    def counts(self) -> dict[str, int]:
        return json.loads(Path(str(self.port_file) + ".counts.json").read_text())

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def server_factory(tmp_path):
    servers: list[Server] = []

    def make(set_dir: Path, **kw) -> Server:
        s = Server(set_dir, tmp_path, **kw)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()


def test_round_trip_and_bad_replies_are_scored_misses(probe_set, tmp_path, server_factory):
    items = _items(probe_set)
    points = [it["id"] for it in items if it["type"] == "point"]
    others = [it["id"] for it in items if it["type"] != "point"]
    assert len(points) >= 3 and len(others) >= 6
    faults = {points[0]: "no_point", points[1]: "out_of_image", points[2]: "timeout", others[0]: "http500",
              others[1]: "malformed", others[2]: "flaky500", others[3]: "drop"}
    srv = server_factory(probe_set, faults=faults)
    out = tmp_path / "answers.jsonl"
    s = ask_probe_set(probe_set, srv.endpoint, "standin", out, concurrency=4, retries=2, timeout=1.0, backoff=0.01)
    assert s["items"] == s["asked_this_run"] == len(items)
    assert s["errors"] == {"timeout": 1, "server_error": 1, "bad_reply": 1}
    counts = srv.counts()
    # retried: the timeout and the 500 three times each (1 + 2 retries), the flaky one and the drop twice;
    # a malformed reply is not retried (the server answered)
    assert counts[points[2]] == 3 and counts[others[0]] == 3 and counts[others[2]] == 2 and counts[others[3]] == 2
    assert counts[others[1]] == 1 and max(v for k, v in counts.items() if k not in faults) == 1
    lines = out.read_text().splitlines()
    assert [json.loads(x)["id"] for x in lines] == [it["id"] for it in items]  # in item order
    sc = score_probe_set(probe_set, out)
    bad = {"no_point", "out_of_image", "timeout", "http500", "malformed"}
    n_bad = sum(1 for f in faults.values() if f in bad)
    assert sc["all"]["n"] == len(items)
    assert sc["all"]["accuracy"] == pytest.approx((len(items) - n_bad) / len(items), abs=1e-4)
    reasons = sc["all"]["misses_by_reason"]
    assert reasons == {"unparsed": 1, "out_of_image": 1, "timeout": 1, "server_error": 1, "bad_reply": 1}
    by_id = {r["id"]: r for r in json.loads(Path(sc["out"]).read_text())["items"]}
    assert by_id[points[2]]["reason"] == "timeout" and by_id[others[0]]["reason"] == "server_error"
    assert by_id[others[2]]["correct"] and by_id[others[3]]["correct"]
    # a rerun asks nothing; --retry-failed asks the failed ones again (their last line wins)
    again = ask_probe_set(probe_set, srv.endpoint, "standin", out, retries=0, timeout=1.0)
    assert again["asked_this_run"] == 0 and out.read_text().splitlines() == lines
    again = ask_probe_set(probe_set, srv.endpoint, "standin", out, retries=0, timeout=0.5, retry_failed=True)
    assert again["asked_this_run"] == 3


def test_killed_run_resumes_to_the_same_bytes(probe_set, tmp_path, server_factory, run_cli):
    srv = server_factory(probe_set, delay=0.03)
    items = _items(probe_set)
    whole = tmp_path / "whole.jsonl"
    run_cli("probe", "ask", str(probe_set), "--endpoint", srv.endpoint, "--model", "standin", "--out", str(whole),
            "--concurrency", "3", check=True)
    assert len(whole.read_text().splitlines()) == len(items)
    out = tmp_path / "killed.jsonl"
    args = [sys.executable, "-m", "bomb_data.cli", "probe", "ask", str(probe_set), "--endpoint", srv.endpoint,
            "--model", "standin", "--out", str(out), "--concurrency", "3"]
    proc = subprocess.Popen(args, cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and (not out.exists() or len(out.read_bytes().splitlines()) < 8):
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n_before = len(out.read_bytes().splitlines())
    assert 8 <= n_before < len(items)
    with open(out, "ab") as f:  # as if killed in the middle of a write
        f.write(b'{"answer": "(3')
    p = run_cli("probe", "ask", str(probe_set), "--endpoint", srv.endpoint, "--model", "standin", "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["asked_this_run"] == len(items) - n_before
    assert out.read_bytes() == whole.read_bytes()
    assert score_probe_set(probe_set, out)["all"]["accuracy"] == 1.0


def test_errors_are_one_line_and_keep_answers(probe_set, tmp_path, server_factory, run_cli):
    srv = server_factory(probe_set)
    out = tmp_path / "a.jsonl"

    def one_line_error(p: subprocess.CompletedProcess, text: str) -> None:
        err = p.stderr.strip()
        assert p.returncode == 2 and len(err.splitlines()) == 1 and text in err and "Traceback" not in err, err

    base = ["probe", "ask", str(probe_set), "--out", str(out)]
    run_cli(*base, "--endpoint", srv.endpoint, "--model", "standin", "--limit", "5", check=True)
    kept = out.read_bytes()
    assert len(kept.splitlines()) == 5
    # nothing listens there: one line, the answers so far stay
    one_line_error(run_cli(*base, "--endpoint", "http://127.0.0.1:9/v1", "--model", "standin", "--retries", "1",
                           "--backoff", "0"), "cannot connect")
    assert out.read_bytes() == kept
    one_line_error(run_cli(*base, "--endpoint", srv.endpoint, "--model", "other"), "another model")
    one_line_error(run_cli(*base, "--endpoint", "127.0.0.1:80", "--model", "standin"), "--endpoint")
    one_line_error(run_cli(*base, "--endpoint", srv.endpoint, "--model", "standin", "--prompt-template", "{nope}"),
                   "--prompt-template")
    assert out.read_bytes() == kept
    junk = tmp_path / "junk.jsonl"
    junk.write_text("hello\n")
    one_line_error(run_cli("probe", "ask", str(probe_set), "--out", str(junk), "--endpoint", srv.endpoint,
                           "--model", "standin"), "not written by probe ask")
    assert junk.read_text() == "hello\n"
    # a server that refuses the model name (HTTP 400): misses with reason http_error, not a crash
    s = ask_probe_set(probe_set, srv.endpoint, "wrong-model", tmp_path / "b.jsonl", limit=3, retries=0)
    assert s["errors"] == {"http_error": 3}


def test_ctrl_c_ends_the_run_at_once(probe_set, tmp_path, server_factory):
    """Requests in flight (the server takes 20 s to answer) do not hold the process after Ctrl-C."""
    srv = server_factory(probe_set, delay=20.0)
    out = tmp_path / "c.jsonl"
    args = [sys.executable, "-m", "bomb_data.cli", "probe", "ask", str(probe_set), "--endpoint", srv.endpoint,
            "--model", "standin", "--out", str(out), "--concurrency", "4", "--timeout", "60"]
    proc = subprocess.Popen(args, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    counts = Path(str(srv.port_file) + ".counts.json")
    deadline = time.time() + 120
    while time.time() < deadline and not (counts.exists() and sum(srv.counts().values()) >= 4):
        time.sleep(0.05)
    t0 = time.time()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert time.time() - t0 < 5, err
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    assert out.read_text() == ""  # nothing answered yet, nothing torn
    assert json.loads(Path(str(out) + ".ask.json").read_text())["status"] == "interrupted"
