"""Two evaluations writing one --out at once cannot interleave: the second gets one error line, exit 2,
and writes (or, with --overwrite, deletes) nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO

EVAL = ["eval", "--policy", "noop", "--grid", "nominal", "--image-size", "16", "--max-steps", "20",
        "--workers", "1", "--videos-per-cell", "0", "-q"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bomb_data.cli", *args], capture_output=True, text=True,
                          timeout=600, cwd=str(REPO))


def snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def one_line_error(p: subprocess.CompletedProcess[str], text: str) -> None:
    err = p.stderr.strip()
    assert p.returncode == 2 and len(err.splitlines()) == 1 and text in err and "Traceback" not in err, err


def test_second_eval_on_a_locked_out_writes_nothing(tmp_path):
    from bomb_data.evaluate.lock import LOCK_FILE, EvalLock

    out = tmp_path / "run"
    p = cli(*EVAL, "--episodes-per-cell", "1", "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert not (out / LOCK_FILE).exists()  # released at the end
    before = snapshot(out)
    lock = EvalLock(out)  # another evaluation holds --out
    try:
        for extra in ([], ["--overwrite"], ["--episodes-per-cell", "2"]):
            p = cli(*EVAL, "--episodes-per-cell", "1", "--out", str(out), *extra)
            one_line_error(p, f"being written by another evaluation (pid {os.getpid()})")
            assert snapshot(out) == {**before, LOCK_FILE: f"{os.getpid()}\n".encode()}
    finally:
        lock.release()
    p = cli(*EVAL, "--episodes-per-cell", "2", "--out", str(out))  # free again: it resumes
    assert p.returncode == 0, p.stderr
    assert len((out / "results.jsonl").read_text().splitlines()) == 2


def test_two_real_evals_at_once(tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "bomb_data.cli", *EVAL, "--episodes-per-cell", "6",
                              "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=str(REPO))
    try:
        deadline = time.time() + 300
        while not (out / ".eval.lock").exists() or not (out / ".eval.lock").read_text().strip():
            assert first.poll() is None and time.time() < deadline, "the first eval ended before it was seen"
            time.sleep(0.05)
        second = cli(*EVAL, "--episodes-per-cell", "6", "--out", str(out))
        one_line_error(second, f"pid {first.pid}")
        assert first.wait(timeout=600) == 0, first.stderr.read()
    finally:
        if first.poll() is None:
            first.kill()
    rows = (out / "results.jsonl").read_text().splitlines()
    assert len(rows) == 6 and len({json.loads(r)["episode_id"] for r in rows}) == 6  # each episode once
