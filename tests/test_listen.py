"""Nothing listens beyond loopback (issue 22, D12): generate and eval with two worker processes start
a local Dask cluster whose scheduler, workers and HTTP endpoints (logs, call stacks, event stream,
unauthenticated) must be unreachable from the network unless ``--dashboard HOST:PORT`` asks."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[1]
LOOPBACK = {"127.0.0.1", "::1"}


def _listening(pid: int) -> dict[int, set[tuple[str, int]]]:
    """LISTEN sockets of process ``pid`` and its descendants, by process."""
    out: dict[int, set[tuple[str, int]]] = {}
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return out
    for p in procs:
        try:
            conns = p.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        socks = {(c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN}
        if socks:
            out[p.pid] = socks
    return out


def _watch(args: list[str], until=None) -> tuple[subprocess.CompletedProcess, set[tuple[str, int]], int]:  # noqa: ANN001
    """Run ``bomb-data ARGS``; return it, every LISTEN socket its process tree opened, and the most
    processes seen listening at once (the cluster must have been up while we looked)."""
    p = subprocess.Popen([sys.executable, "-m", "bomb_data.cli", *args], cwd=str(REPO), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    seen: set[tuple[str, int]] = set()
    most = 0
    while p.poll() is None:
        now = _listening(p.pid)
        most = max(most, len(now))
        for socks in now.values():
            seen |= socks
        if until is not None:
            until(seen)
        time.sleep(0.2)
    out, err = p.communicate(timeout=60)
    return subprocess.CompletedProcess(args, p.returncode, out, err), seen, most


@pytest.mark.parametrize("cmd", ["generate", "eval"])
def test_two_workers_listen_on_loopback_only(tmp_path: Path, cmd: str) -> None:
    if cmd == "generate":
        args = ["generate", "--n", "3", "--image-size", "32", "--workers", "2", "--out", str(tmp_path / "s"), "-q"]
    else:
        args = ["eval", "--policy", "random", "--episodes-per-cell", "3", "--image-size", "32", "--max-steps", "20",
                "--workers", "2", "--videos-per-cell", "0", "--out", str(tmp_path / "e"), "-q"]
    done, seen, most = _watch(args)
    assert done.returncode == 0, done.stderr
    assert most >= 3  # this process (scheduler) and both workers were seen listening
    assert seen and {ip for ip, _ in seen} <= LOOPBACK, sorted(seen)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dashboard_is_served_where_asked(tmp_path: Path) -> None:
    port = _free_port()
    health: list[str] = []

    def probe(seen: set[tuple[str, int]]) -> None:
        if not health and ("127.0.0.1", port) in seen:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                health.append(r.read().decode())

    args = ["eval", "--policy", "random", "--episodes-per-cell", "3", "--image-size", "32", "--max-steps", "20",
            "--workers", "2", "--videos-per-cell", "0", "--out", str(tmp_path / "e"), "-q",
            "--dashboard", f"127.0.0.1:{port}"]
    done, seen, _ = _watch(args, until=probe)
    assert done.returncode == 0, done.stderr
    assert ("127.0.0.1", port) in seen and health == ["ok"]
    assert {ip for ip, _ in seen} <= LOOPBACK


@pytest.mark.parametrize(("value", "said"), [("8787", "expected HOST:PORT"), ("host:http", "expected HOST:PORT"),
                                             ("h:99999", "expected HOST:PORT")])
def test_a_bad_dashboard_address_is_one_line(run_cli, tmp_path: Path, value: str, said: str) -> None:  # noqa: ANN001
    for cmd in (["generate", "--n", "1"], ["eval", "--policy", "noop"]):
        p = run_cli(*cmd, "--dashboard", value, "--out", str(tmp_path / "o"), "-q")
        lines = [x for x in p.stderr.splitlines() if x.startswith("error:")]
        assert p.returncode == 2 and len(lines) == 1 and said in lines[0] and "Traceback" not in p.stderr, p.stderr
    p = run_cli("generate", "--n", "1", "--scheduler", "tcp://127.0.0.1:9", "--dashboard", "127.0.0.1:0",
                "--out", str(tmp_path / "o"), "-q")
    assert p.returncode == 2 and "serves its own dashboard" in p.stderr
    assert not (tmp_path / "o").exists()
