"""No exporter can destroy the store or a directory that is not its own export: an --out that is,
holds or lies inside the store is refused, and --overwrite never replaces a foreign directory."""

from __future__ import annotations

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
