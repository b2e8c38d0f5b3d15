"""Board diagrams of a Go sequence (PIL): the start position, the moves made, the stones removed."""

from __future__ import annotations

from typing import Any

from PIL import Image, ImageDraw

from ..perturb.language import GO_LETTERS

WOOD = (222, 184, 120)


def board_diagram(n: int, stones: dict[tuple[int, int], str], moves: list[tuple[str, int, int]] | None = None,
                  removed: list[tuple[int, int]] | None = None, missed: list[tuple[int, int]] | None = None,
                  cell: int = 24, displaced: list[tuple[int, int]] | None = None) -> Image.Image:
    """An n x n diagram: ``stones`` (point -> colour); ``moves`` [(colour, row, col)] are numbered in
    order, ``removed`` points are crossed in red, ``missed`` points ringed in red, ``displaced`` points
    framed by an orange square. Row 0 at the top (the far edge), as in the agentview picture; Go
    coordinates on the margins."""
    m = cell
    size = (n + 1) * m
    img = Image.new("RGB", (size, size), WOOD)
    d = ImageDraw.Draw(img)
    xy = lambda r, c: (m + c * m, m + r * m)  # noqa: E731
    for i in range(n):
        d.line([xy(i, 0), xy(i, n - 1)], fill=(40, 30, 20))
        d.line([xy(0, i), xy(n - 1, i)], fill=(40, 30, 20))
        d.text((m + i * m - 3, 2), GO_LETTERS[i], fill=(40, 30, 20))
        d.text((2, m + i * m - 5), str(n - i), fill=(40, 30, 20))
    rad = m * 0.45
    number = {(r, c): k + 1 for k, (_, r, c) in enumerate(moves or [])}
    for (r, c), col in stones.items():
        x, y = xy(r, c)
        fill = (15, 15, 15) if col == "black" else (245, 245, 245)
        d.ellipse([x - rad, y - rad, x + rad, y + rad], fill=fill, outline=(0, 0, 0))
        if (r, c) in number:
            d.text((x - 3 * len(str(number[(r, c)])), y - 5), str(number[(r, c)]),
                   fill=(255, 255, 255) if col == "black" else (0, 0, 0))
    for r, c in removed or []:
        x, y = xy(r, c)
        d.line([x - rad, y - rad, x + rad, y + rad], fill=(200, 0, 0), width=2)
        d.line([x - rad, y + rad, x + rad, y - rad], fill=(200, 0, 0), width=2)
    for r, c in missed or []:
        x, y = xy(r, c)
        d.ellipse([x - rad - 2, y - rad - 2, x + rad + 2, y + rad + 2], outline=(200, 0, 0), width=2)
    for r, c in displaced or []:
        x, y = xy(r, c)
        d.rectangle([x - rad - 2, y - rad - 2, x + rad + 2, y + rad + 2], outline=(245, 140, 0), width=2)
    return img


def episode_diagrams(meta: dict[str, Any], cell: int = 24) -> tuple[Image.Image, Image.Image]:
    """(before, after) diagrams of a stored sequence episode: the start position; the rules' final
    position with the moves numbered and the captured stones crossed (the subtasks not completed
    ringed in red)."""
    n = int(meta["board_size"])
    before = {(r, c): col for r, c, col in meta["initial_position"]}
    after = {(r, c): col for r, c, col in meta["final_position"]}
    subs = meta["subtasks"]
    done = int(meta["subtasks_completed"])
    moves = [(col, r, c) for kind, col, r, c in subs if kind == "place"]
    removed = [(r, c) for kind, _, r, c in subs if kind == "remove"]
    missed = [(r, c) for _, _, r, c in subs[done:]]
    return (board_diagram(n, before, cell=cell),
            board_diagram(n, after, moves, [p for p in removed if p not in after], missed, cell=cell))
