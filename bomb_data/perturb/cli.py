"""``bomb-data grid``: list grids, show their cells, preview every level as a contact sheet.

The lead's ``bomb_data/cli.py`` adds this group with ``main.add_command(grid)``.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from ..errors import BombDataError

log = logging.getLogger(__name__)


def _fail(exc: BombDataError) -> None:
    """One line and exit status 2, as every command (also when this group runs on its own)."""
    click.echo(f"error: {exc}", err=True)
    sys.exit(2)


def _fmt(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "(" + ", ".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v) + ")"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


@click.group(name="grid")
def grid() -> None:
    """Perturbation grids: list them, show their cells, preview every level."""


@grid.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def list_cmd(as_json: bool) -> None:
    """The grids shipped in bomb_data/configs/grids/ (name, mode, cells, description)."""
    from .grid import list_grids, load_grid

    rows = []
    try:
        for name in list_grids():
            g = load_grid(name)
            rows.append({"name": name, "task": g.task, "mode": g.mode, "cells": len(g.cells()), "axes": len(g.levels),
                         "hash": g.hash, "description": g.spec.description})
    except BombDataError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    w = max([12, *(len(r["name"]) for r in rows)])
    click.echo(f"{'name':<{w}} {'task':<8} {'mode':<14} {'axes':>4} {'cells':>5}  description")
    for r in rows:
        click.echo(f"{r['name']:<{w}} {r['task']:<8} {r['mode']:<14} {r['axes']:>4} {r['cells']:>5}  "
                   f"{r['description']}")


@grid.command(name="axes")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def axes_cmd(as_json: bool) -> None:
    """The catalogue of perturbation axes (kind, fields, named levels)."""
    from .axes import AXES, format_value

    rows = [{"axis": a.name, "kind": a.kind, "study": a.study, "fields": list(a.fields),
             "levels": {**{k: format_value(v) for k, v in a.presets.items()}, **{c: c for c in a.choices}},
             "description": a.description}
            for a in AXES.values()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        lv = ", ".join(f"{k}={v}" for k, v in r["levels"].items())
        click.echo(f"{r['axis']:<22} {r['kind']:<8} {r['description']}\n{'':<31}levels: {lv}")


def _line_spacing(g: Any, d: dict[str, Any], config_path: Path | None, size: int | None) -> tuple[int, int]:
    """Add ``line_spacing_px`` {min, median} (agentview, at reset) to every cell of ``d``; returns (H, W)."""
    from ..config import load_config
    from ..sim.scene import agentview_line_spacing_px

    over = {"sim": {"image_height": size, "image_width": size}} if size else None
    sim = load_config(config_path, overrides=over).sim
    for row, cell in zip(d["cells"], g.cells()):
        scene = cell.params.scene
        if cell.params.sequence is not None:  # the board the sequence is played on
            from ..sequence.check import sequence_board_size

            scene = scene.model_copy(update={"board_size": sequence_board_size(cell.params)})
        lo, med = agentview_line_spacing_px(sim, scene)
        row["line_spacing_px"] = {"min": round(lo, 1), "median": round(med, 1)}
    return sim.image_height, sim.image_width


@grid.command(name="show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the grid (axes, levels, cells, changes) as JSON.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="Configuration file (its image size is the one pixels per line spacing are given for).")
@click.option("--size", type=click.IntRange(32, 2048), default=None,
              help="Give pixels per line spacing for square pictures of this size instead.")
def show_cmd(name: str, as_json: bool, config_path: Path | None, size: int | None) -> None:
    """Cells of grid NAME (a shipped grid's name or a YAML path), what each changes, and the pixels
    between neighbouring board lines in the agentview picture (smallest/median: perspective makes
    the far rows the smallest)."""
    from .grid import load_grid

    try:
        g = load_grid(name)
        d = g.describe()
        h, w = _line_spacing(g, d, config_path, size)
    except BombDataError as exc:
        _fail(exc)
    d["image_size"] = [h, w]
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    click.echo(f"grid {d['name']}: task {d['task']}, mode {d['mode']}, {len(d['cells'])} cells, hash {d['hash']}")
    if d["description"]:
        click.echo(f"  {d['description']}")
    if g.sequence is not None:
        nominal = ", ".join(f"{k}={_fmt(v)}" for k, v in d["sequence"].items())
        click.echo(f"  nominal sequence: {nominal} (px/line: the single task's framing of that board; the "
                   "bowls and lid put the camera slightly farther)")
    click.echo(f"  px/line: pixels between neighbouring board lines in the {h}x{w} agentview picture, "
               "smallest/median (docs/perturbations.md recommends an image size per board size)")
    if g.mode == "random":
        click.echo(f"  random mode: every episode samples every axis; {g.spec.heldout_rate:.0%} of episodes use one "
                   "held-out level. Levels sampled from (one cell each):")
    width = max(len(c["id"]) for c in d["cells"])
    click.echo(f"  {'cell':<{width}}  {'':<7}  {'px/line':>9}  changes")
    for c in d["cells"]:
        ch = ", ".join(f"{k}={_fmt(v)}" for k, v in c["changes"].items()) or "(nominal)"
        flag = "heldout" if c["heldout"] else ""
        px = c["line_spacing_px"]
        px_txt = f"{px['min']:.1f}/{px['median']:.1f}"
        click.echo(f"  {c['id']:<{width}}  {flag:<7}  {px_txt:>9}  {ch}")


@grid.command(name="preview")
@click.argument("name")
@click.option("--out", type=click.Path(path_type=Path), default=Path("grid_sheet.png"), show_default=True,
              help="PNG file to write.")
@click.option("--size", type=click.IntRange(32, 512), default=128, show_default=True, help="Picture size (px).")
@click.option("--cols", type=click.IntRange(1, 32), default=8, show_default=True, help="Pictures per row.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Episode seed shared by every picture (same target and layout where the cell allows).")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None, help="Configuration file.")
@click.option("--palette", is_flag=True, help="Write a 256-colour PNG (about 3x smaller, for documentation).")
def preview_cmd(name: str, out: Path, size: int, cols: int, seed: int, config_path: Path | None,
                palette: bool) -> None:
    """Contact sheet of grid NAME: one agentview picture per cell (= per axis level), labelled."""
    from ..config import load_config
    from .sheet import grid_sheet

    try:
        cfg = load_config(config_path, overrides={"sim": {"image_height": size, "image_width": size}})
        path = grid_sheet(name, out, cfg, seed=seed, cols=cols, palette=palette)
    except BombDataError as exc:
        _fail(exc)
    click.echo(str(path))
