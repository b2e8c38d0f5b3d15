"""JPEG encoding of rendered frames (the one lossy step between render and store)."""

from __future__ import annotations

import io

import numpy as np
from numpy.typing import NDArray
from PIL import Image


def encode_jpeg(image: NDArray[np.uint8], quality: int = 95) -> bytes:
    """Encode one uint8 RGB image (H, W, 3) as baseline JPEG (4:2:0, deterministic libjpeg settings)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected uint8 image (H, W, 3), found {image.dtype} {image.shape}")
    buf = io.BytesIO()
    Image.fromarray(image, "RGB").save(buf, format="JPEG", quality=int(quality), optimize=False)
    return buf.getvalue()


def decode_jpeg(data: bytes | bytearray | memoryview | NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Decode JPEG bytes to a uint8 RGB array (H, W, 3)."""
    if isinstance(data, np.ndarray):
        data = data.tobytes()
    with Image.open(io.BytesIO(bytes(data))) as im:
        im.load()
        return np.asarray(im if im.mode == "RGB" else im.convert("RGB"), dtype=np.uint8)
