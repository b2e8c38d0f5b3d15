"""Exporters: one module per target format, each reading only the store API (bomb_data.store).

Every exporter module defines::

    def export(store_path: Path, out: Path, *, overwrite: bool = False, workers: int = 1,
               progress: Callable[[int], None] | None = None, **format_options) -> dict

``progress`` is called with the number of frames (steps) just written; the return value is a
JSON-serialisable summary (episodes, frames, bytes, seconds, output path). Heavy stacks
(tensorflow, torch, lerobot) are imported only inside the function that needs them.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from bomb_data.errors import ExportError

FORMATS: dict[str, str] = {
    "rlds": "converters.rlds",
    "lerobot": "converters.lerobot",
    "hdf5": "converters.hdf5",
    "zarr": "converters.zarr_replay",
}


def get(fmt: str) -> ModuleType:
    """The exporter module for ``fmt`` (one of FORMATS)."""
    if fmt not in FORMATS:
        raise KeyError(f"unknown export format {fmt!r}; expected one of {sorted(FORMATS)}")
    return importlib.import_module(FORMATS[fmt])


def check_out_apart(store_path: Path | str, out: Path | str) -> None:
    """Refuse an ``out`` that is the store, holds it or lies inside it (one clear line).

    Replacing such an ``out`` (``--overwrite``) would delete the canonical store, and writing into it
    would leave foreign files in the store's directory.
    """
    s, o = Path(store_path).resolve(), Path(out).resolve()
    where = "is" if o == s else "contains" if s.is_relative_to(o) else "is inside" if o.is_relative_to(s) else None
    if where:
        raise ExportError(f"--out {out} {where} the store {store_path}; choose an --out outside it")
