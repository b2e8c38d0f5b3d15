"""Fault injection (issue 22): ``generate`` and ``export`` killed with SIGKILL at chosen points of the
commit protocol (``BOMB_FAULT``, bomb_data/_fault.py) and at random times (fixed seed); a plain rerun
must then produce exactly what an uninterrupted run produces, and nothing half-written is ever
visible. The default tier runs one kill per kind of step; ``-m slow`` runs every point and more
random kills."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import converters
from bomb_data.config import load_config
from bomb_data.generate import generate
from bomb_data.store.fsck import check_store

REPO = Path(__file__).resolve().parents[1]
N = 2
GEN = ("generate", "--n", str(N), "--image-size", "32", "--workers", "1", "-q")


def cfg():
    return load_config(overrides={"generate": {"n": N}, "sim": {"image_height": 32, "image_width": 32}})


def lines(store: Path) -> list[str]:
    """Each episode's metadata and the checksums of all its arrays: equal lines = equal episodes."""
    return (store / "meta/episodes.jsonl").read_text().splitlines()


def files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def ref(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "store"
    generate(cfg(), out, workers=1, mode="overwrite")
    return out


def killed(*args: str, fault: str | None = None, after: float | None = None) -> int:
    """Run ``bomb-data ARGS`` with ``BOMB_FAULT=fault``, or SIGKILL it ``after`` seconds; its exit status."""
    env = {**os.environ, "BOMB_FAULT": fault} if fault else dict(os.environ)
    p = subprocess.Popen([sys.executable, "-m", "bomb_data.cli", *args], cwd=str(REPO), env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    if after is not None:
        try:
            p.wait(timeout=after)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, 9)
    p.wait(timeout=300)
    return p.returncode


def resumed_equals_ref(out: Path, ref: Path) -> None:
    generate(cfg(), out, workers=1, mode="resume")  # the plain rerun
    assert lines(out) == lines(ref)
    r = check_store(out)
    assert r["damage"] == [] and r["verified"] == r["committed"] == N
    assert not list((out / "shards").iterdir()) and not list(out.glob(".lock*"))
    assert not [p for p in out.rglob(".*") if p.is_file() and ".tmp-" in p.name]


# (point, the store exists before the run: True = a copy of ref rerun with --overwrite)
POINTS = [
    ("lock-written", False),  # between writing the lock and putting it in place
    ("create-described", False),  # during the first creation
    ("append-meta@2", False),  # rows and metadata line of episode 1 written, not committed
    ("after-rename-commit.json@2", False),  # episode 0 committed, nothing after
    ("create-emptying@3", True),  # during --overwrite's deletion of the old store
]
SLOW_POINTS = [
    ("lock-taken", False),
    ("create-done", False),
    ("append-rows", False),
    ("append-images@2", False),
    ("before-rename-commit.json@2", False),
    ("before-rename-commit.json@3", False),
    ("after-rename-commit.json@3", False),
    ("create-emptying", True),
    ("create-described", True),
    ("before-rename-.creating", True),
]


def _run_point(point: str, exists: bool, ref: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    args = GEN + ("--out", str(out))
    if exists:
        shutil.copytree(ref, out)
        args += ("--overwrite",)
    assert killed(*args, fault=point) == -9, f"{point} was never reached"
    resumed_equals_ref(out, ref)


@pytest.mark.parametrize(("point", "exists"), POINTS, ids=[p for p, _ in POINTS])
def test_generate_killed_at_a_point_then_rerun(point: str, exists: bool, ref: Path, tmp_path: Path) -> None:
    _run_point(point, exists, ref, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize(("point", "exists"), SLOW_POINTS, ids=[f"{p}{'-overwrite' * e}" for p, e in SLOW_POINTS])
def test_generate_killed_at_every_point_then_rerun(point: str, exists: bool, ref: Path, tmp_path: Path) -> None:
    _run_point(point, exists, ref, tmp_path)


def _random_kills(k: int, ref: Path, tmp_path: Path) -> None:
    rng = random.Random(22)
    for i in range(k):
        out = tmp_path / f"r{i}"
        delay = rng.uniform(2.0, 9.0)
        killed(*GEN, "--out", str(out), after=delay)
        resumed_equals_ref(out, ref)


def test_generate_killed_at_a_random_time_then_rerun(ref: Path, tmp_path: Path) -> None:
    _random_kills(1, ref, tmp_path)


@pytest.mark.slow
def test_generate_killed_at_random_times_then_rerun(ref: Path, tmp_path: Path) -> None:
    _random_kills(8, ref, tmp_path)


@pytest.mark.slow
def test_generate_with_workers_killed_after_a_commit_then_rerun(ref: Path, tmp_path: Path) -> None:
    # with worker processes, a kill between a commit and its shard's removal leaves the shard (D4)
    out = tmp_path / "store"
    assert killed(*GEN[:-3], "--workers", "2", "-q", "--out", str(out), fault="committed") == -9
    assert list((out / "shards").glob("ep*.npz"))
    resumed_equals_ref(out, ref)


EXPORT_POINTS = ["export-written", "export-moved-aside", "export-swapped"]


@pytest.mark.parametrize("point", EXPORT_POINTS)
def test_export_killed_at_a_point_then_rerun(point: str, ref: Path, tmp_path: Path) -> None:
    # an earlier export sits at --out; a killed --overwrite never leaves a half-written one there,
    # and the rerun makes the same export as an uninterrupted run and leaves no hidden sibling
    zarr_export = converters.get("zarr")
    want = tmp_path / "want"
    zarr_export.export(ref, want, workers=1)
    out = tmp_path / "out"
    zarr_export.export(ref, out, workers=1)
    args = ("export", "--format", "zarr", "--store", str(ref), "--out", str(out), "--overwrite", "--workers", "1", "-q")
    assert killed(*args, fault=point) == -9
    assert not out.exists() or files(out) == files(want)  # the old or the new export, whole
    zarr_export.export(ref, out, workers=1, overwrite=True)
    assert files(out) == files(want)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "want"]


def test_export_killed_at_a_random_time_then_rerun(ref: Path, tmp_path: Path) -> None:
    zarr_export = converters.get("zarr")
    want = tmp_path / "want"
    zarr_export.export(ref, want, workers=1)
    out = tmp_path / "out"
    t = time.time()
    killed("export", "--format", "zarr", "--store", str(ref), "--out", str(out), "--workers", "1", "-q",
           after=random.Random(22).uniform(1.0, 4.0))
    assert not out.exists() or files(out) == files(want), time.time() - t
    zarr_export.export(ref, out, workers=1, overwrite=out.exists())
    assert files(out) == files(want)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "want"]
