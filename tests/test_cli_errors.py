"""Bad input on the command line: one line on stderr, no traceback, the right exit status, nothing
already written damaged (damaged stores, paths the system refuses, bad grids and config files)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


def _one_line(p) -> str:  # noqa: ANN001
    lines = [x for x in p.stderr.splitlines() if x.strip() and not x.startswith(("generate:", "export"))]
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    return lines[0]


@pytest.mark.parametrize("damage", ["truncate_episodes", "garble_commit", "drop_data", "drop_chunk"])
def test_a_damaged_store_is_one_line(run_cli, tiny_store: Path, tmp_path: Path, damage: str) -> None:  # noqa: ANN001
    store = tmp_path / "store"
    shutil.copytree(tiny_store, store)
    if damage == "truncate_episodes":
        p = store / "meta" / "episodes.jsonl"
        p.write_text(p.read_text()[:100])
    elif damage == "garble_commit":
        (store / "meta" / "commit.json").write_text("{{")
    elif damage == "drop_data":
        shutil.rmtree(store / "data")
    else:  # one chunk file of the actions: zarr alone would read its rows as zeros
        shutil.rmtree(store / "data" / "action" / "c")
    before = sorted(str(x.relative_to(store)) for x in store.rglob("*"))
    export = ("export", "--format", "zarr", "--store", str(store), "--out", str(tmp_path / "o"))
    for args in (("info", str(store)), export):
        p = run_cli(*args)
        assert p.returncode == 2 and "is damaged" in _one_line(p)
    assert sorted(str(x.relative_to(store)) for x in store.rglob("*")) == before
    assert not (tmp_path / "o").exists()


def test_paths_the_system_refuses_are_one_line(run_cli, tmp_path: Path) -> None:  # noqa: ANN001
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    p = run_cli("generate", "--n", "1", "--image-size", "32", "--out", str(afile / "store"), "-q")
    assert p.returncode == 2 and "Not a directory" in _one_line(p)
    p = run_cli("grid", "show", str(tmp_path))  # a directory where a grid file is expected
    assert p.returncode == 2
    _one_line(p)
    assert afile.read_text() == "keep me"


def test_bad_grid_and_config_are_one_line_with_status_2(run_cli, tmp_path: Path) -> None:  # noqa: ANN001
    p = run_cli("grid", "show", "NOPE")
    assert p.returncode == 2 and "unknown grid 'NOPE'" in _one_line(p)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("sim: 5\n")
    p = run_cli("generate", "--n", "1", "--config", str(cfg), "--out", str(tmp_path / "s"), "-q")
    assert p.returncode == 2 and "section 'sim' must be a mapping" in _one_line(p)
    p = run_cli("generate", "--n", "1", "--config", str(tmp_path), "--out", str(tmp_path / "s"), "-q")
    assert p.returncode == 2 and "cannot be read" in _one_line(p)
    assert not (tmp_path / "s").exists()


def test_an_unreachable_scheduler_fails_before_overwrite_empties_anything(run_cli, tiny_store: Path,
                                                                          tmp_path: Path) -> None:  # noqa: ANN001
    store = tmp_path / "store"
    shutil.copytree(tiny_store, store)
    before = sorted((str(x.relative_to(store)), x.stat().st_size) for x in store.rglob("*") if x.is_file())
    for address in ("tcp://127.0.0.1:1", "garbage"):
        p = run_cli("generate", "--n", "2", "--image-size", "32", "--out", str(store), "--overwrite",
                    "--scheduler", address, "-q", timeout=120)
        assert p.returncode == 2 and "cannot reach the Dask scheduler" in _one_line(p)
    assert sorted((str(x.relative_to(store)), x.stat().st_size) for x in store.rglob("*") if x.is_file()) == before


def test_eval_never_writes_its_results_into_a_store(run_cli, tiny_store: Path, tmp_path: Path) -> None:  # noqa: ANN001
    store = tmp_path / "store"
    shutil.copytree(tiny_store, store)
    before = sorted(str(x.relative_to(store)) for x in store.rglob("*"))
    for extra in ((), ("--overwrite",)):
        p = run_cli("eval", "--policy", "noop", "--out", str(store), "--episodes-per-cell", "1", "--workers", "1",
                    "--image-size", "32", "-q", *extra)
        assert p.returncode == 2 and "choose an --out of its own" in _one_line(p)
    assert sorted(str(x.relative_to(store)) for x in store.rglob("*")) == before


@pytest.mark.parametrize("args, said", [
    (["export", "--format", "nope"], "Invalid value for '--format'"),
    (["generate", "--bogus"], "No such option '--bogus'"),
    (["export", "--image-size", "100000"], "not in the range 1<=x<=2048"),
    (["grid", "show"], "Missing argument 'NAME'"),
    (["nocmd"], "No such command 'nocmd'"),
])
def test_usage_errors_are_one_line(run_cli, args: list[str], said: str) -> None:  # noqa: ANN001
    p = run_cli(*args)
    assert p.returncode == 2 and said in _one_line(p) and "--help" in p.stderr


def test_a_group_alone_still_shows_its_help(run_cli) -> None:  # noqa: ANN001
    p = run_cli("grid")
    assert p.returncode == 2 and "Commands:" in p.stderr and "show" in p.stderr
