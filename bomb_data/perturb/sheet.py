"""Contact sheet of a grid: one agentview picture per cell, labelled, for people.

Nothing here renders or imports the environment: the caller passes ``render(cell, seed)``, which
returns the cell's picture and instruction (``bomb_data.preview.grid_preview`` renders with the
environment), so ``bomb_data.perturb`` stays below the environment like the rest of the package.
"""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from ..pictures import contact_sheet
from .grid import Cell, Grid, load_grid

log = logging.getLogger(__name__)


#: ``render(cell, seed)`` -> (the cell's agentview picture (H, W, 3) uint8, its instruction), e.g. an
#: environment reset with the cell's parameters and that episode seed.
Render = Callable[[Cell, int], tuple[NDArray[np.uint8], str]]


def render_cells(grid: Grid, render: Render, seed: int = 0,
                 cells: list[Cell] | None = None) -> list[tuple[Cell, NDArray[np.uint8], str]]:
    """``render`` every cell with the same episode seed; (cell, agentview, instruction) per cell."""
    out = []
    for cell in cells if cells is not None else grid.cells():
        img, instruction = render(cell, seed)
        out.append((cell, img, instruction))
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


def grid_contact_sheet(items: list[tuple[Cell, NDArray[np.uint8], str]], cols: int = 8) -> Image.Image:
    """Tile the pictures with a caption strip (axis, level, and the instruction for language levels;
    held-out cells in red)."""
    w = items[0][1].shape[1]
    line_h = 11
    chars = max(10, w // 6)
    captions = [_caption(c, text, chars) for c, _, text in items]
    return contact_sheet([img for _, img, _ in items], captions, cols, strip=line_h * max(len(c) for c in captions) + 4,
                         line_height=line_h, chars=chars,
                         colors=[(160, 0, 0) if c.heldout else (0, 0, 0) for c, _, _ in items])


def grid_sheet(grid: str | Path | Grid, out: Path, render: Render, seed: int = 0, cols: int = 8,
                palette: bool = False) -> Path:
    """Render every cell of ``grid`` and write the labelled contact sheet as PNG at ``out``.

    Args:
        grid: grid name, path or ``Grid``.
        out: PNG path (parent directories are made).
        render: ``render(cell, seed)`` -> (picture, instruction) (:data:`Render`).
        seed: episode seed shared by all pictures, so cells differ only by their perturbation.
        cols: pictures per row.
        palette: store as 256-colour PNG (about 3x smaller; for documentation).
    """
    g = load_grid(grid)
    items = render_cells(g, render, seed)
    sheet = grid_contact_sheet(items, cols)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if palette:
        sheet = sheet.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    sheet.save(out, format="PNG", optimize=True)
    log.info("grid %s: %d pictures -> %s", g.name, len(items), out)
    return out
