"""Image-level perturbations, applied to every rendered frame after rendering.

The same function runs in generation and in evaluation, so a policy sees identically perturbed
pictures in both. Order of operations follows a camera pipeline: optics (blur), then the image
signal processor (per-channel colour gains and brightness), then sensor noise, then compression
(JPEG re-encoding). Nominal parameters return the input unchanged (bit-identical, no copy).

Every step works on uint8 frames in SIMD C code (OpenCV) or a single integer numpy pass, rounding
to the nearest level after each step:

* blur: separable Gaussian (``cv2.sepFilter2D``), kernel radius ceil(3 sigma), edges replicated;
* gains and brightness: one 256-entry table per channel, ``round(v * gain + 255 * brightness)``
  clipped to [0, 255], applied with ``cv2.LUT``;
* noise: Gaussian, added as integers (see :func:`_noise`), saturating at 0 and 255;
* JPEG: encoded and decoded with OpenCV's libjpeg-turbo at the level's quality.

Cost per 256 x 256 frame (``benchmarks/bench_grid.py``, docs/perturbations.md): well under 1 ms
for every level; the float32 numpy version this replaced spent 2-3 ms on a blur alone.
"""

from __future__ import annotations

import logging
import math
from functools import lru_cache

import cv2
import numpy as np
from numpy.typing import NDArray

from ..params import ImageParams

log = logging.getLogger(__name__)

_NOMINAL = ImageParams()


def is_identity(p: ImageParams) -> bool:
    """True when ``p`` leaves every frame unchanged."""
    return p == _NOMINAL or (
        tuple(p.color_gains) == (1.0, 1.0, 1.0) and p.brightness == 0.0 and p.noise_std == 0.0
        and p.blur_sigma_px == 0.0 and p.jpeg_quality is None)


_NOISE_BANK_SIZE = 1 << 21  # 2 Mi standard normals, made once per process
_BANK_SEED = 0x5EED_B0B


@lru_cache(maxsize=1)
def _normal_bank() -> NDArray[np.float32]:
    return np.random.default_rng(_BANK_SEED).standard_normal(_NOISE_BANK_SIZE, dtype=np.float32)


def _to_levels(normals: NDArray[np.float32], std_levels: float) -> NDArray[np.int16]:
    """Standard normals scaled to ``std_levels`` (in 0-255 levels) and rounded to integers."""
    return np.rint(normals * np.float32(std_levels)).astype(np.int16)


@lru_cache(maxsize=4)
def _int_bank(std_levels: float) -> NDArray[np.int16]:
    """The bank of normals in integer levels of ``std_levels``, made once per level."""
    return _to_levels(_normal_bank(), std_levels)


def _noise(rng: np.random.Generator, shape: tuple[int, ...], std_levels: float) -> NDArray[np.int16]:
    """Gaussian noise of standard deviation ``std_levels`` (0-255 levels), rounded to integers.

    Drawing 196,608 normals per 256 x 256 frame costs milliseconds, so frames take a window of a
    fixed bank of normals at an offset drawn from ``rng`` (one integer per frame): every
    sub-pixel's noise is Gaussian and independent of its neighbours', and the same episode seed
    gives the same noise. Adding rounded noise to an integer pixel is the same as rounding the
    noisy pixel. Frames larger than half the bank draw directly.
    """
    n = int(np.prod(shape))
    if n > _NOISE_BANK_SIZE // 2:
        return _to_levels(rng.standard_normal(n, dtype=np.float32), std_levels).reshape(shape)
    off = int(rng.integers(0, _NOISE_BANK_SIZE - n + 1))
    return _int_bank(float(std_levels))[off : off + n].reshape(shape)


@lru_cache(maxsize=16)
def _gaussian_kernel(sigma: float) -> NDArray[np.float32]:
    """Normalised 1-D Gaussian of radius ceil(3 sigma), as a (2r+1, 1) column."""
    r = max(1, int(math.ceil(3.0 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1, dtype=np.float64) / sigma) ** 2)
    return (k / k.sum()).astype(np.float32).reshape(-1, 1)


def _gaussian_blur(img: NDArray[np.uint8], sigma: float) -> NDArray[np.uint8]:
    """Separable Gaussian blur of an (H, W, 3) uint8 image; radius ceil(3 sigma), edges replicated.

    ``cv2.sepFilter2D`` with a float kernel and 8-bit output (rounded, saturated): within one
    level of the exact convolution and 1.6x faster than ``cv2.GaussianBlur``'s bit-exact path.
    """
    k = _gaussian_kernel(float(sigma))
    return cv2.sepFilter2D(img, cv2.CV_8U, k, k, borderType=cv2.BORDER_REPLICATE)


@lru_cache(maxsize=16)
def _tone_table(gains: tuple[float, float, float], brightness: float) -> NDArray[np.uint8]:
    """(1, 256, 3) table: level v of channel c → round(v * gains[c] + 255 * brightness), clipped."""
    v = np.arange(256, dtype=np.float64)[:, None]
    t = np.floor(v * np.asarray(gains, dtype=np.float64)[None, :] + 255.0 * brightness + 0.5)
    return np.clip(t, 0, 255).astype(np.uint8).reshape(1, 256, 3)


def _jpeg(img: NDArray[np.uint8], quality: int) -> tuple[NDArray[np.uint8], bytes]:
    """Round trip through a baseline JPEG at ``quality`` (4:2:0): (decoded RGB, the JPEG file)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV reports failure only for unsupported input
        raise ValueError("image: JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB), buf.tobytes()


def apply_image_params(img: NDArray[np.uint8], p: ImageParams, rng: np.random.Generator) -> NDArray[np.uint8]:
    """Apply the image-level perturbation ``p`` to one rendered frame (see :func:`perturb_frame`)."""
    return perturb_frame(img, p, rng)[0]


def perturb_frame(img: NDArray[np.uint8], p: ImageParams,
                  rng: np.random.Generator) -> tuple[NDArray[np.uint8], bytes | None]:
    """Apply the image-level perturbation ``p`` to one rendered frame.

    Args:
        img: uint8 RGB frame, (H, W, 3), upright.
        p: the image parameters of the episode (``ImageParams()`` is the identity).
        rng: the episode's image generator; only Gaussian noise draws from it (one integer per
            frame), so the same episode seed gives the same pixels.

    Returns:
        (frame, jpeg): the uint8 (H, W, 3) frame (the input object itself when ``p`` is nominal)
        and, when ``p`` ends in JPEG artefacts, the JPEG file that decodes to exactly that frame
        (else None). Generation stores that file as the frame, instead of re-encoding the
        already-compressed picture: the store then holds what the policy saw, and the JPEG
        perturbation costs no second encode.

    Raises:
        ValueError: ``img`` is not uint8 (H, W, 3).
    """
    if is_identity(p):
        return img, None
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image: expected uint8 (H, W, 3), found {img.dtype} {img.shape}")
    out = img
    if p.blur_sigma_px > 0:
        out = _gaussian_blur(np.ascontiguousarray(out), p.blur_sigma_px)
    gains = tuple(float(g) for g in p.color_gains)
    if gains != (1.0, 1.0, 1.0) or p.brightness != 0.0:
        out = cv2.LUT(np.ascontiguousarray(out), _tone_table(gains, float(p.brightness)))
    if p.noise_std > 0:
        a = out.astype(np.int16)
        a += _noise(rng, a.shape, float(p.noise_std) * 255.0)
        np.clip(a, 0, 255, out=a)
        out = a.astype(np.uint8)
    if p.jpeg_quality is not None:
        return _jpeg(np.ascontiguousarray(out), p.jpeg_quality)
    return out, None
