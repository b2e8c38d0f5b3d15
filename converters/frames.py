"""Frame size at export: the one ``image_size`` rule and the one resize every format uses.

``--image-size N`` (``image_size=N``) resizes both cameras to N x N. Every format accepts the same
sizes (:func:`check_image_size`: an integer from 1 to 2048, the largest frame the renderer makes);
a format whose encoding needs more says so itself (the LeRobot videos: even sizes of at least 4,
:meth:`converters.exporter.Exporter.check_frames`). Resizing is PIL's antialiased bilinear filter
in every format (:func:`resize_frames`), so a size gives the same pixels whichever format writes them.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bomb_data.errors import ExportError

#: The sizes ``image_size`` may take (inclusive), in every format and on the command line.
MIN_IMAGE_SIZE = 1
MAX_IMAGE_SIZE = 2048


def check_image_size(image_size: Any) -> int | None:
    """``image_size`` as an int (None: keep the stored size); ExportError (one line) for anything else
    than an integer from MIN_IMAGE_SIZE to MAX_IMAGE_SIZE."""
    if image_size is None:
        return None
    if isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral) \
            or not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
        raise ExportError(f"image_size: expected an integer from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} "
                          f"(frames resized to SIZE x SIZE), found {image_size!r}")
    return int(image_size)


def frame_hw(image_size: int | None, stored_shape: tuple[int, ...]) -> tuple[int, int]:
    """(H, W) of the exported frames: ``image_size`` square, or the stored (H, W)."""
    if image_size:
        return int(image_size), int(image_size)
    return int(stored_shape[0]), int(stored_shape[1])


def resize_frame(frame: NDArray[np.uint8], size: int) -> NDArray[np.uint8]:
    """One (H, W, 3) uint8 frame resized to (size, size, 3) with PIL's antialiased bilinear filter."""
    from PIL import Image

    return np.asarray(Image.fromarray(frame, "RGB").resize((size, size), Image.Resampling.BILINEAR))


def resize_frames(frames: NDArray[np.uint8], size: int | None) -> NDArray[np.uint8]:
    """Resize (T, H, W, 3) uint8 frames to (T, size, size, 3) (:func:`resize_frame` each).

    ``size=None`` (or the frames' own square size) returns the frames unchanged.
    """
    if size is None or frames.shape[1:3] == (size, size):
        return frames
    out = np.empty((frames.shape[0], size, size, 3), dtype=np.uint8)
    for i, f in enumerate(frames):
        out[i] = resize_frame(f, size)
    return out
