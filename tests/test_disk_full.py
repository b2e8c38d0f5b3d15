"""A disk that fills up during an export or an evaluation (issue 22): one line naming it, the partial
export removed, the evaluation's finished results kept and resumable.

Two ways to fill a disk: a small tmpfs (needs root, as in the container the issue was found in) and
a file size limit (RLIMIT_FSIZE, any user: writes past it fail with EFBIG)."""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def small_disk(parent: Path, size: str) -> Path:
    d = parent / f"disk-{uuid.uuid4().hex[:6]}"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)], capture_output=True,
                       text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()[:80]}); the RLIMIT_FSIZE variant runs instead")
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], check=False)


def cli(*args: str, fsize: int | None = None) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run([sys.executable, "-m", "bomb_data.cli", *args], capture_output=True, text=True,
                          timeout=600, cwd=str(REPO), preexec_fn=limit)


def one_line(p: subprocess.CompletedProcess[str]) -> str:
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr[-3000:]
    return lines[0]


EXPORTS = [("zarr", "out.zarr"), ("hdf5", "out.hdf5")]


@pytest.mark.parametrize(("fmt", "name"), EXPORTS, ids=[f for f, _ in EXPORTS])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_export_onto_a_full_tmpfs_is_one_line_and_leaves_nothing(tiny_store: Path, tmp_path: Path, fmt: str,
                                                                    name: str, workers: str) -> None:
    with small_disk(tmp_path, "256k") as disk:
        p = cli("export", "--format", fmt, "--store", str(tiny_store), "--out", str(disk / name), "--workers",
                workers, "-q")
        line = one_line(p)
        assert p.returncode == 2 and "the disk is full: No space left on device (ENOSPC)" in line, line
        assert "partial export was removed" in line
        assert os.listdir(disk) == []  # nothing staged is left behind


@pytest.mark.parametrize(("fmt", "name"), EXPORTS, ids=[f for f, _ in EXPORTS])
def test_an_export_past_the_file_size_limit_is_one_line_and_leaves_nothing(tiny_store: Path, tmp_path: Path,
                                                                           fmt: str, name: str) -> None:
    out = tmp_path / "o"
    out.mkdir()
    p = cli("export", "--format", fmt, "--store", str(tiny_store), "--out", str(out / name), "--workers", "2", "-q",
            fsize=8192)
    line = one_line(p)
    assert p.returncode == 2 and "the disk is full: File too large (EFBIG)" in line, line
    assert os.listdir(out) == []


def test_an_evaluation_onto_a_full_disk_keeps_its_results_and_resumes(tmp_path: Path) -> None:
    args = ("eval", "--policy", "random", "--episodes-per-cell", "40", "--image-size", "32", "--max-steps", "10",
            "--workers", "1", "--videos-per-cell", "0", "-q")
    with small_disk(tmp_path, "32k") as disk:  # run.json, results.jsonl and a few episodes' states (4 KiB pages)
        out = disk / "ev"
        p = cli(*args, "--out", str(out))
        assert p.returncode == 2 and "the disk is full" in one_line(p)
        from bomb_data.evaluate.runner import read_results

        kept = read_results(out / "results.jsonl")
        assert 0 < len(kept) < 40
        # with room again (a larger disk), the same command resumes and keeps every finished row
        subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)
        p = cli(*args, "--out", str(out))
        assert p.returncode == 0, p.stderr
        rows = read_results(out / "results.jsonl")
        assert len(rows) == 40 and rows[: len(kept)] == kept
