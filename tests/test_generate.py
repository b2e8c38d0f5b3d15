"""`bomb-data generate`: determinism, resume after SIGKILL, shard validation, config mismatch (issue 4)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bomb_data.config import load_config
from bomb_data.errors import ConfigError, StoreError
from bomb_data.generate import generate
from bomb_data.schema import CAMERAS, STEP_FEATURES
from bomb_data.store import EpisodeStore, read_shard, write_shard

REPO = Path(__file__).resolve().parents[1]


def small_cfg(n: int, **gen):
    return load_config(overrides={"generate": {"n": n, **gen}, "sim": {"image_height": 48, "image_width": 48}})


def assert_same_stores(a: EpisodeStore, b: EpisodeStore) -> None:
    assert len(a) == len(b)
    for i in range(len(a)):
        ea, eb = a[i], b[i]
        assert ea.meta == eb.meta
        for f in STEP_FEATURES:
            assert np.array_equal(ea[f.key], eb[f.key], equal_nan=True), (i, f.key)
        assert np.array_equal(ea.mj_state, eb.mj_state)
        for c in CAMERAS:
            assert ea.jpeg(c) == eb.jpeg(c)


def test_one_and_two_workers_give_identical_stores(tmp_path: Path):
    cfg = small_cfg(6)
    s1 = generate(cfg, tmp_path / "w1", workers=1, mode="overwrite")
    seen = []
    s2 = generate(cfg, tmp_path / "w2", workers=2, mode="overwrite", progress=seen.append)
    # committed successes never outrun finished successful attempts (the bar's success rate is the
    # latter over attempts); all are committed at the end
    assert all(p.successes <= p.successful_attempts <= p.attempts for p in seen)
    assert seen[-1].successes == seen[-1].successful_attempts == 6
    assert s1["successful_in_store"] == s2["successful_in_store"] == 6
    a, b = EpisodeStore(tmp_path / "w1"), EpisodeStore(tmp_path / "w2")
    assert [m["episode_index"] for m in a.episodes] == list(range(6))
    assert_same_stores(a, b)
    # rerunning the same command on a complete store does nothing and keeps it
    s3 = generate(cfg, tmp_path / "w1", workers=1, mode="resume")
    assert s3["generated_this_run"] == 0
    assert_same_stores(a, EpisodeStore(tmp_path / "w1"))


def _cli(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bomb_data.cli", *args], cwd=str(REPO), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, **kw)


def _wait_for_first_commit(p: subprocess.Popen, store: Path) -> None:
    """Return once the running ``generate`` ``p`` has committed an episode to ``store``."""
    commit = store / "meta/commit.json"
    deadline = time.time() + 240
    while time.time() < deadline:
        if commit.exists() and json.loads(commit.read_text())["episodes"] >= 1:
            return
        if p.poll() is not None:
            pytest.fail(f"generate ended early: {p.stderr.read()}")
        time.sleep(0.05)
    pytest.fail("generate committed nothing in 240 s")


def test_sigkill_then_resume_gives_exactly_n(tmp_path: Path):
    out = tmp_path / "store"
    args = ("generate", "--n", "5", "--out", str(out), "--image-size", "48", "--workers", "1", "--quiet")
    p = _cli(*args)
    commit = out / "meta/commit.json"
    _wait_for_first_commit(p, out)  # kill as soon as something is committed, mid-run
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    killed_at = json.loads(commit.read_text())["episodes"]
    assert killed_at < 5
    p2 = _cli(*args)
    _, err = p2.communicate(timeout=300)
    assert p2.returncode == 0, err
    s = EpisodeStore(out)
    ks = [m["episode_index"] for m in s.episodes]
    assert ks == list(range(5)) and len(set(ks)) == 5
    for ep in s:
        assert ep.images("agentview").shape == (ep.length, 48, 48, 3)
        assert ep["action"].shape == (ep.length, 7) and ep.meta["success"]
    # the same as an uninterrupted run
    ref = generate(small_cfg(5), tmp_path / "ref", workers=1, mode="overwrite")
    assert ref["successful_in_store"] == 5
    assert_same_stores(s, EpisodeStore(tmp_path / "ref"))


def test_ctrl_c_with_worker_processes_is_one_line_then_resumes(tmp_path: Path):
    # Ctrl-C in a terminal signals the whole process group: the Dask worker processes too
    out = tmp_path / "store"
    args = ("generate", "--n", "6", "--out", str(out), "--image-size", "48", "--quiet")
    p = _cli(*args, "--workers", "2")
    _wait_for_first_commit(p, out)
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130
    assert err.strip().splitlines() == ["interrupted: everything committed so far is kept; rerun the same command "
                                        "to resume (an export starts again)"]
    p2 = _cli(*args, "--workers", "1")
    _, err = p2.communicate(timeout=300)
    assert p2.returncode == 0, err
    assert [m["episode_index"] for m in EpisodeStore(out).episodes] == list(range(6))


def test_truncated_shard_is_detected_and_redone(tmp_path: Path):
    out = tmp_path / "store"
    generate(small_cfg(2), out, workers=1, mode="overwrite")
    ref = EpisodeStore(out)
    # Leave behind a truncated shard for episode 2 (as a crash mid-write on a shared disk would)
    # and a whole one for episode 3 (a finished task whose commit was lost).
    from bomb_data.store.record import EpisodeRecord

    e1 = ref[1]
    rec = EpisodeRecord(steps={f.key: e1[f.key] for f in STEP_FEATURES}, mj_state=e1.mj_state,
                        jpeg={c: e1.jpeg(c) for c in CAMERAS}, meta=dict(e1.meta))
    good = out / "shards" / "ep0000002-a00.npz"
    write_shard(rec, good)
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt shard"):
        read_shard(good)
    generate(small_cfg(4), out, workers=1, mode="resume")
    s = EpisodeStore(out)
    assert [m["episode_index"] for m in s.episodes] == [0, 1, 2, 3]
    assert s[2].meta["seed"] != e1.meta["seed"]  # redone from its own seed, not the planted data
    assert not list((out / "shards").glob("*.npz"))
    # equals a clean run of 4
    generate(small_cfg(4), tmp_path / "ref", workers=1, mode="overwrite")
    assert_same_stores(s, EpisodeStore(tmp_path / "ref"))


def test_a_configuration_that_never_succeeds_stops_with_one_error(tmp_path: Path):
    # 10 steps are too few to pick and place: without a bound, failed episodes would be replaced forever
    cfg = load_config(overrides={"generate": {"n": 1, "max_attempts": 2},
                                 "sim": {"image_height": 32, "image_width": 32, "max_steps": 10}})
    with pytest.raises(ConfigError, match=r"no episode succeeded in 100 attempts \(missed_grasp x100\)"):
        generate(cfg, tmp_path / "store", workers=1, mode="overwrite")
    assert len(EpisodeStore(tmp_path / "store")) == 0


def test_mismatched_config_is_refused(tmp_path: Path):
    out = tmp_path / "store"
    generate(small_cfg(1), out, workers=1, mode="overwrite")
    with pytest.raises(StoreError, match="different configuration"):
        generate(small_cfg(1, seed=1), out, workers=1, mode="resume")
    assert len(EpisodeStore(out)) == 1  # untouched


@pytest.mark.parametrize(("key", "theirs", "said"), [
    ("mujoco", "3.0.0", "MuJoCo 3.0.0"),
    ("renderer", "NVIDIA GeForce RTX 4090/PCIe/SSE2; OpenGL 4.6.0 NVIDIA 550.54", "the renderer NVIDIA GeForce")])
def test_resume_under_another_mujoco_or_renderer_is_refused(tmp_path: Path, key: str, theirs: str, said: str):
    import zarr

    out = tmp_path / "store"
    generate(small_cfg(1), out, workers=1, mode="overwrite")
    g = zarr.open_group(out, mode="r+", zarr_format=3)
    attrs = dict(g.attrs["bomb_data"])
    assert attrs["versions"]["renderer"]  # this machine renders through EGL, so the renderer is recorded
    attrs["versions"] = {**attrs["versions"], key: theirs}  # as if made under another MuJoCo or renderer
    g.attrs["bomb_data"] = attrs
    before = sorted(p.name for p in out.rglob("*"))
    with pytest.raises(StoreError, match=f"made with {re.escape(said)}.*, this run has"):
        generate(small_cfg(2), out, workers=1, mode="resume")
    assert len(EpisodeStore(out)) == 1 and sorted(p.name for p in out.rglob("*")) == before  # untouched
    # --overwrite replaces it
    generate(small_cfg(2), out, workers=1, mode="overwrite")
    assert len(EpisodeStore(out)) == 2


def test_cli_errors_are_one_line(run_cli, tmp_path: Path):
    r = run_cli("info", str(tmp_path / "missing"))
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "no store at" in r.stderr
    (tmp_path / "c.yaml").write_text("sim:\n  image_height: 0\n")
    r = run_cli("generate", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "sim.image_height" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "notastore").mkdir()
    (tmp_path / "notastore" / "precious.txt").write_text("keep me")
    r = run_cli("generate", "--n", "1", "--out", str(tmp_path / "notastore"), "--overwrite")
    assert r.returncode == 2 and (tmp_path / "notastore" / "precious.txt").exists()


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux affinity masks")
def test_default_workers_follow_the_affinity_mask():
    # a process held to one core (taskset, a cgroup cpuset) gets one worker, not one per machine core
    code = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "from bomb_data._cpus import default_workers, usable_cpus; print(default_workers(), len(usable_cpus()))")
    out = subprocess.run([sys.executable, "-c", code], cwd=str(REPO), capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1"]


def test_cli_generate_output_is_only_ours(run_cli, tmp_path: Path):
    # A user's terminal shows the progress bar and our lines, not Dask's INFO logging of the local
    # cluster, and no "Port 8787 is already in use" when another cluster (here: a listening socket)
    # holds the dashboard's default port. -vv (DEBUG) lets Dask's lines through.
    import socket

    busy = socket.socket()
    try:
        busy.bind(("127.0.0.1", 8787))
        busy.listen()
    except OSError:  # already taken by something else: the condition under test holds anyway
        pass
    try:
        args = ("generate", "--n", "1", "--image-size", "48", "--workers", "2", "-q", "--out")
        r = run_cli(*args, str(tmp_path / "s"), check=True)
        assert "distributed" not in r.stderr and "8787" not in r.stderr, r.stderr
        r = run_cli("-vv", *args, str(tmp_path / "s2"), check=True)
        assert "distributed.scheduler" in r.stderr
    finally:
        busy.close()
