"""No exporter can destroy the store or anything that is not its own export: an --out that is,
holds or lies inside the store is refused, and --overwrite never replaces a foreign directory or file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import converters
from bomb_data.errors import ExportError
from bomb_data.store import EpisodeStore

LAYOUTS = [("rlds", {}), ("lerobot", {}), ("hdf5", {"layout": "robomimic"}), ("hdf5", {"layout": "aloha"}),
           ("hdf5", {"layout": "robotwin"}), ("zarr", {})]
IDS = [f"{f}-{o['layout']}" if o else f for f, o in LAYOUTS]


def _files(root: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize(("fmt", "opts"), LAYOUTS, ids=IDS)
def test_out_over_the_store_is_refused(tiny_store: Path, tmp_path: Path, fmt: str, opts: dict) -> None:
    store = tmp_path / "data" / "store"
    shutil.copytree(tiny_store, store)
    before = _files(store)
    exporter = converters.get(fmt)
    for out, where in ((store, "is"), (store.parent, "contains"), (store / "exports", "is inside")):
        with pytest.raises(ExportError, match=f"{where} the store"):
            exporter.export(store, out, overwrite=True, **opts)
    assert _files(store) == before and len(EpisodeStore(store)) == 5
    assert sorted(p.name for p in store.parent.iterdir()) == ["store"]


@pytest.mark.parametrize(("fmt", "opts"), [c for c in LAYOUTS if c[1].get("layout") != "robomimic"],
                         ids=[i for i in IDS if i != "hdf5-robomimic"])
def test_overwrite_never_replaces_a_foreign_directory(tiny_store: Path, tmp_path: Path, fmt: str, opts: dict) -> None:
    # (robomimic writes one file inside --out, so it never replaces the directory)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("keep me")
    with pytest.raises(ExportError, match="refusing to replace"):
        converters.get(fmt).export(tiny_store, out, overwrite=True, **opts)
    assert [p.name for p in out.iterdir()] == ["thesis.tex"] and (out / "thesis.tex").read_text() == "keep me"


@pytest.mark.parametrize(("fmt", "opts"), [c for c in LAYOUTS if c[1].get("layout") != "robomimic"],
                         ids=[i for i in IDS if i != "hdf5-robomimic"])
def test_a_file_where_a_directory_is_written_is_refused(tiny_store: Path, tmp_path: Path, fmt: str,
                                                        opts: dict) -> None:
    out = tmp_path / "notes.txt"
    out.write_text("keep me")
    with pytest.raises(ExportError, match="is a file; this export writes a directory"):
        converters.get(fmt).export(tiny_store, out, overwrite=True, **opts)
    assert out.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_robomimic_never_replaces_a_foreign_file_or_a_directory(tiny_store: Path, tmp_path: Path) -> None:
    hdf5 = converters.get("hdf5")
    notes = tmp_path / "notes.h5"
    notes.write_text("not an HDF5 file")
    with pytest.raises(ExportError, match="is not a robomimic HDF5 file from bomb-data; refusing to replace it"):
        hdf5.export(tiny_store, notes, overwrite=True, layout="robomimic")
    assert notes.read_text() == "not an HDF5 file"
    folder = tmp_path / "runs.hdf5"
    folder.mkdir()
    (folder / "keep.txt").write_text("keep me")
    with pytest.raises(ExportError, match="is a directory; this export writes a file"):
        hdf5.export(tiny_store, folder, overwrite=True, layout="robomimic")
    assert [p.name for p in folder.iterdir()] == ["keep.txt"]
    # an earlier robomimic export is an HDF5 file: replaced with --overwrite
    mine = tmp_path / "mine.hdf5"
    hdf5.export(tiny_store, mine, layout="robomimic")
    hdf5.export(tiny_store, mine, overwrite=True, layout="robomimic")


def test_zarr_never_replaces_a_foreign_zarr_group(tiny_store: Path, tmp_path: Path) -> None:
    # a zarr group written by someone else has a .zattrs too; only our replay buffer is replaced
    out = tmp_path / "their.zarr"
    out.mkdir()
    (out / ".zgroup").write_text('{"zarr_format": 2}')
    (out / ".zattrs").write_text('{"owner": "someone else"}')
    with pytest.raises(ExportError, match="is not a Diffusion Policy replay buffer from bomb-data"):
        converters.get("zarr").export(tiny_store, out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [".zattrs", ".zgroup"]


@pytest.mark.parametrize(("fmt", "opts"), LAYOUTS, ids=IDS)
def test_an_out_that_appears_during_the_export_is_checked_again(tiny_store: Path, tmp_path: Path, fmt: str,
                                                                opts: dict) -> None:
    # someone else fills --out while the export runs: it is refused at the end, and nothing is left behind
    out = tmp_path / ("late.hdf5" if opts.get("layout") == "robomimic" else "late")

    def squat(_: int) -> None:
        if not out.exists():
            if opts.get("layout") == "robomimic":
                out.write_text("keep me")
            else:
                out.mkdir()
                (out / "keep.txt").write_text("keep me")

    with pytest.raises(ExportError, match="refusing to replace"):
        converters.get(fmt).export(tiny_store, out, overwrite=True, progress=squat, **opts)
    kept = out if out.is_file() else out / "keep.txt"
    assert kept.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no partial or old directory left


def test_rlds_never_replaces_a_shared_data_root(tiny_store: Path, tmp_path: Path) -> None:
    # --out pointed at a TFDS data root holding bomb_go and other datasets: replacing it would delete them
    root = tmp_path / "tensorflow_datasets"
    converters.get("rlds").export(tiny_store, root)
    (root / "libero_spatial_no_noops" / "1.0.0").mkdir(parents=True)
    (root / "libero_spatial_no_noops" / "1.0.0" / "dataset_info.json").write_text("{}")
    with pytest.raises(ExportError, match="holds other entries besides the bomb_go export"):
        converters.get("rlds").export(tiny_store, root, overwrite=True)
    assert (root / "libero_spatial_no_noops" / "1.0.0" / "dataset_info.json").is_file()


def test_overwrite_never_replaces_another_programs_dataset(tiny_store: Path, tmp_path: Path) -> None:
    import h5py

    theirs = tmp_path / "libero.hdf5"  # an HDF5 file, but not one of ours
    with h5py.File(theirs, "w") as f:
        f.create_group("data").attrs["env_args"] = "{}"
    with pytest.raises(ExportError, match="is not a robomimic HDF5 file from bomb-data"):
        converters.get("hdf5").export(tiny_store, theirs, overwrite=True, layout="robomimic")
    with h5py.File(theirs, "r") as f:
        assert list(f) == ["data"]
    hub = tmp_path / "hub_dataset"  # a LeRobot dataset someone else wrote
    (hub / "meta").mkdir(parents=True)
    (hub / "meta" / "info.json").write_text('{"codebase_version": "v3.0"}')
    with pytest.raises(ExportError, match="is not a LeRobot dataset from bomb-data"):
        converters.get("lerobot").export(tiny_store, hub, overwrite=True)
    assert sorted(p.name for p in hub.rglob("*")) == ["info.json", "meta"]


def test_robomimic_out_that_is_a_plain_file_is_one_line(tiny_store: Path, tmp_path: Path) -> None:
    plain = tmp_path / "afile"
    plain.write_text("keep me")
    with pytest.raises(ExportError, match="is a file; the robomimic layout writes"):
        converters.get("hdf5").export(tiny_store, plain, overwrite=True, layout="robomimic")
    assert plain.read_text() == "keep me"


@pytest.mark.parametrize(("text", "said"), [
    ('agentview: "/tmp/elsewhere"', "invalid feature key"),
    ('agentview: "../../escaped"', "invalid feature key"),
    ("agentview: 5", "invalid feature key"),
    ("agentview: [unclosed", "cannot be read"),
    ("agentview: &a [*a]", "alias is used inside its own anchor"),
])
def test_preset_file_cannot_write_outside_out(tiny_store: Path, tmp_path: Path, text: str, said: str) -> None:
    preset = tmp_path / "p.yaml"
    preset.write_text(text)
    with pytest.raises(ExportError, match=said) as e:
        converters.get("lerobot").export(tiny_store, tmp_path / "o", preset=preset)
    assert "\n" not in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.yaml"]


@pytest.mark.parametrize(("fmt", "opts"), LAYOUTS, ids=IDS)
def test_leftovers_of_a_killed_export_are_removed_by_the_next(tiny_store: Path, tmp_path: Path, fmt: str,
                                                               opts: dict) -> None:
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()  # a pid that no longer runs
    out = tmp_path / ("x.hdf5" if opts.get("layout") == "robomimic" else "x")
    left = [tmp_path / f".{out.name}.partial-{dead}", tmp_path / f".{out.name}.old-{dead}-0a1b2c3d"]
    for p in left:
        p.mkdir()
        (p / "big.bin").write_bytes(b"0" * 1000)
    running = tmp_path / f".{out.name}.partial-{os.getppid()}"  # a running process's export is left alone
    running.mkdir()
    summary = converters.get(fmt).export(tiny_store, out, **opts)
    assert not any(p.exists() for p in left) and running.is_dir() and out.exists()
    assert summary["image_size"] == list(EpisodeStore(tiny_store).image_shape[:2])  # [H, W] in every format


@pytest.mark.parametrize(("fmt", "opts"), LAYOUTS, ids=IDS)
@pytest.mark.parametrize("size", [0, -3, 2049, 16.0, True, "16"])
def test_one_image_size_rule_for_every_format(tiny_store: Path, tmp_path: Path, fmt: str, opts: dict,
                                              size: object) -> None:
    out = tmp_path / "o"
    with pytest.raises(ExportError, match=r"^image_size: expected an integer from 1 to 2048 .*found") as e:
        converters.get(fmt).export(tiny_store, out, image_size=size, **opts)
    assert "\n" not in str(e.value) and list(tmp_path.iterdir()) == []


def test_small_sizes_work_where_the_encoding_allows(tiny_store: Path, tmp_path: Path) -> None:
    # 1..7 used to be refused by the RLDS export alone; every format takes them now
    s = converters.get("rlds").export(tiny_store, tmp_path / "r", image_size=3)
    assert s["image_size"] == [3, 3] and not s["jpeg_pass_through"]
    s = converters.get("lerobot").export(tiny_store, tmp_path / "l", image_size=3, video=False)
    assert s["image_size"] == [3, 3]
    # yuv420p video: even sides of at least 4, one line, nothing written
    for size in (2, 3, 5):
        with pytest.raises(ExportError, match=f"video frames need even sizes of at least 4 .*got {size}x{size}"):
            converters.get("lerobot").export(tiny_store, tmp_path / "v", image_size=size, codec="h264")
    assert not (tmp_path / "v").exists()
    assert converters.get("lerobot").export(tiny_store, tmp_path / "v", image_size=4, codec="h264")["frames"] > 0


def _sigint_disposition() -> int:
    import signal

    return int(signal.getsignal(signal.SIGINT))


def test_export_worker_processes_leave_ctrl_c_to_the_export() -> None:
    # Ctrl-C signals the terminal's whole process group; the export handles it and shuts its pool
    # down, so the workers must not each raise KeyboardInterrupt and print a traceback
    import signal

    from converters import _hdf5_common, lerobot

    jobs = lerobot._Jobs(2)
    try:
        assert {jobs.pool.submit(_sigint_disposition).result(timeout=120) for _ in range(4)} == {signal.SIG_IGN}
    finally:
        jobs.close()
    assert set(_hdf5_common.ordered_map(_sigint_disposition_of, range(4), workers=2)) == {int(signal.SIG_IGN)}


def _sigint_disposition_of(_: int) -> int:
    return _sigint_disposition()
