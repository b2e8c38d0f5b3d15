"""Contact sheets for people: equally sized pictures tiled, each with a caption strip under it.

The one sheet behind ``bomb-data preview`` (reset scenes), ``bomb-data grid preview`` (one picture
per grid cell) and ``bomb-data info --thumbnails`` (first and last frames of episodes). Nothing
here renders: callers pass the pictures.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont

BLACK = (0, 0, 0)


def contact_sheet(images: Sequence[NDArray[np.uint8]], labels: Sequence[str | Sequence[str]], cols: int = 4, *,
                  strip: int = 16, line_height: int = 11, chars: int | None = None,
                  colors: Sequence[tuple[int, int, int]] | None = None) -> Image.Image:
    """Tile equally sized (H, W, 3) uint8 images, ``cols`` per row, with a caption strip under each.

    Args:
        images: the pictures, all of the first one's size.
        labels: one caption per picture: a string (one line) or a list of lines.
        cols: pictures per row.
        strip: height of the caption strip, px.
        line_height: px between caption lines.
        chars: longest caption line kept (default ``max(8, W // 6)``).
        colors: text colour of each caption (default black).
    """
    h, w = images[0].shape[:2]
    chars = max(8, w // 6) if chars is None else chars
    font = ImageFont.load_default()
    rows = (len(images) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * w, rows * (h + strip)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (img, lab) in enumerate(zip(images, labels)):
        x, y = (i % cols) * w, (i // cols) * (h + strip)
        sheet.paste(Image.fromarray(img), (x, y))
        for j, line in enumerate([lab] if isinstance(lab, str) else lab):
            draw.text((x + 3, y + h + 2 + j * line_height), line[:chars], fill=colors[i] if colors else BLACK,
                      font=font)
    return sheet
