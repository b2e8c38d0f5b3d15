"""JPEG encoding of rendered frames (the one lossy step between render and store)."""

from __future__ import annotations

import io
from functools import lru_cache
from typing import Any

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


@lru_cache(maxsize=1)
def _cv2() -> Any:
    """OpenCV if importable, else None (the store reader also runs in lean environments, e.g. a
    TFDS build inside OpenVLA's env, where Pillow decodes the same pixels more slowly)."""
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def decode_jpeg(data: bytes | bytearray | memoryview | NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Decode JPEG bytes to a uint8 RGB array (H, W, 3).

    With OpenCV's libjpeg-turbo when installed (about 2x faster than through Pillow on 256 x 256
    frames), else Pillow. Both decode with the same IDCT and upsampling, so the pixels are the
    same (tests/test_store.py checks it on stored frames).
    """
    cv2 = _cv2()
    if cv2 is not None:
        buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1)
        rgb_flag = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.10 decodes straight to RGB
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR if rgb_flag is None else rgb_flag)
        if img is None:
            raise ValueError("not a decodable JPEG file")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if rgb_flag is None else img
    if isinstance(data, np.ndarray):
        data = data.tobytes()
    try:
        with Image.open(io.BytesIO(bytes(data))) as im:
            im.load()
            return np.asarray(im if im.mode == "RGB" else im.convert("RGB"), dtype=np.uint8)
    except OSError as exc:  # PIL.UnidentifiedImageError is an OSError
        raise ValueError(f"not a decodable JPEG file: {exc}") from None


def decode_jpegs(files: list[bytes]) -> NDArray[np.uint8]:
    """Decode a sequence of JPEG files of one camera to (T, H, W, 3) uint8 RGB."""
    return np.stack([decode_jpeg(b) for b in files])
