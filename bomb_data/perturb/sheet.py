"""Contact sheet of a grid: one rendered agentview picture per cell, labelled, for people.

This is the one part of ``bomb_data.perturb`` that renders: it imports the environment (and so
mujoco) inside ``grid_sheet`` only.
"""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont

from ..config import BombConfig
from .grid import Cell, Grid, load_grid

log = logging.getLogger(__name__)


def render_cells(grid: Grid, cfg: BombConfig, seed: int = 0,
                 cells: list[Cell] | None = None) -> list[tuple[Cell, NDArray[np.uint8], str]]:
    """Reset the environment once per cell with the same episode seed; (cell, agentview, instruction)."""
    from ..env import GoPlaceEnv

    if grid.task == "sequence":  # its cells' params carry the sequence
        from ..sequence.env import GoSequenceEnv

        env: GoPlaceEnv = GoSequenceEnv(cfg)
    else:
        env = GoPlaceEnv(cfg)
    out = []
    try:
        for cell in cells if cells is not None else grid.cells():
            obs, info = env.reset(seed=seed, options={"params": cell.params})
            out.append((cell, obs["agentview"], info["instruction"]))
    finally:
        env.close()
    return out


def _caption(cell: Cell, instruction: str, chars: int) -> list[str]:
    if cell.axis is not None:
        lines = [cell.axis, f"= {cell.level}" + (" (heldout)" if cell.heldout else "")]
    else:
        lines = textwrap.wrap(cell.id.replace(",", ", "), chars)[:2] or [cell.id]
        if cell.heldout:
            lines.append("(heldout)")
    kind_language = cell.axis is not None and any(k.startswith(("language.", "sequence."))
                                                  for k in _changed_fields(cell))
    if kind_language:
        lines += textwrap.wrap(f'"{instruction}"', chars)[:3]
    return [ln[:chars] for ln in lines]


def _changed_fields(cell: Cell) -> list[str]:
    from .grid import changes

    return list(changes(cell.params))


def contact_sheet(items: list[tuple[Cell, NDArray[np.uint8], str]], cols: int = 8) -> Image.Image:
    """Tile the pictures with a caption strip (axis, level, and the instruction for language levels)."""
    h, w = items[0][1].shape[:2]
    font = ImageFont.load_default()
    line_h = 11
    chars = max(10, w // 6)
    captions = [_caption(c, text, chars) for c, _, text in items]
    cap_h = line_h * max(len(c) for c in captions) + 4
    rows = (len(items) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * w, rows * (h + cap_h)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, ((cell, img, _), cap) in enumerate(zip(items, captions)):
        x, y = (i % cols) * w, (i // cols) * (h + cap_h)
        sheet.paste(Image.fromarray(img), (x, y))
        for j, line in enumerate(cap):
            draw.text((x + 3, y + h + 2 + j * line_h), line, fill=(160, 0, 0) if cell.heldout else (0, 0, 0),
                      font=font)
    return sheet


def grid_sheet(grid: str | Path | Grid, out: Path, cfg: BombConfig, seed: int = 0, cols: int = 8,
               palette: bool = False) -> Path:
    """Render every cell of ``grid`` and write the labelled contact sheet as PNG at ``out``.

    Args:
        grid: grid name, path or ``Grid``.
        out: PNG path (parent directories are made).
        cfg: configuration (its image size is the picture size).
        seed: episode seed shared by all pictures, so cells differ only by their perturbation.
        cols: pictures per row.
        palette: store as 256-colour PNG (about 3x smaller; for documentation).
    """
    g = load_grid(grid)
    items = render_cells(g, cfg, seed)
    sheet = contact_sheet(items, cols)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if palette:
        sheet = sheet.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    sheet.save(out, format="PNG", optimize=True)
    log.info("grid %s: %d pictures -> %s", g.name, len(items), out)
    return out
