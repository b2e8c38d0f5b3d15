"""The interventions: k x k patch occlusion of one camera image, and instruction span masking."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError
from ..perturb.language import SPAN_NAMES

OCCLUDERS = ("mean", "blur", "noise")
TEXT_MODES = ("delete", "neutral")
#: also accepted: ``attention`` (white-box policies with ``score_masked``; the text is not changed)
TEXT_MODES_ALL = (*TEXT_MODES, "attention")


# ----------------------------------------------------------------------------------- patches
def patch_grid(h: int, w: int, k: int, stride: int | None = None) -> list[tuple[int, int]]:
    """Top-left corners (y, x) of the k x k patches covering an h x w image with ``stride`` (default k).

    Rows and columns start at 0 and step by ``stride``; when the last one does not reach the edge, one
    more patch is placed flush with it, so every pixel is covered.

    Raises:
        ConfigError: k larger than the image, or k / stride < 1.
    """
    s = stride or k
    if k < 1 or s < 1:
        raise ConfigError(f"--patch/--stride: expected >= 1, given patch {k}, stride {s}")
    if k > h or k > w:
        raise ConfigError(f"--patch {k}: larger than the image ({h}x{w}); choose a patch <= {min(h, w)}")

    def starts(n: int) -> list[int]:
        v = list(range(0, n - k + 1, s))
        if v[-1] + k < n:
            v.append(n - k)
        return v

    return [(y, x) for y in starts(h) for x in starts(w)]


def grid_shape(patches: list[tuple[int, int]]) -> tuple[int, int]:
    """(rows, columns) of a ``patch_grid``."""
    return len({y for y, _ in patches}), len({x for _, x in patches})


def occlude(img: NDArray[np.uint8], y: int, x: int, k: int, kind: str = "mean",
            rng: np.random.Generator | None = None, blurred: NDArray[np.uint8] | None = None,
            fill: NDArray[np.uint8] | None = None) -> NDArray[np.uint8]:
    """A copy of ``img`` with the k x k patch at (y, x) replaced.

    ``mean``: the image's mean colour (per channel, the study's occluder); ``blur``: the same pixels
    of a Gaussian-blurred image (sigma = k/2; pass ``blurred`` to reuse it); ``noise``: uniform
    random pixels from ``rng``. ``fill``: the mean colour, when already computed (``mean_colour``).
    """
    out = img.copy()
    if kind == "mean":
        out[y:y + k, x:x + k] = mean_colour(img) if fill is None else fill
    elif kind == "blur":
        b = blurred if blurred is not None else blur(img, k)
        out[y:y + k, x:x + k] = b[y:y + k, x:x + k]
    elif kind == "noise":
        r = rng if rng is not None else np.random.default_rng(0)
        out[y:y + k, x:x + k] = r.integers(0, 256, size=out[y:y + k, x:x + k].shape, dtype=np.uint8)
    else:
        raise ConfigError(f"--occluder: expected one of {', '.join(OCCLUDERS)}, given {kind!r}")
    return out


def mean_colour(img: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """The image's mean colour per channel, rounded (the ``mean`` occluder)."""
    return np.round(img.reshape(-1, img.shape[-1]).mean(0)).astype(np.uint8)


def blur(img: NDArray[np.uint8], k: int) -> NDArray[np.uint8]:
    """The image blurred with a Gaussian of sigma k/2 (the blur occluder's source)."""
    from PIL import Image, ImageFilter

    return np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(radius=k / 2)))


def effect_map(effects: NDArray[np.float64], patches: list[tuple[int, int]], k: int, h: int, w: int
               ) -> NDArray[np.float32]:
    """Per-pixel effect (H, W): the mean effect of the patches covering each pixel."""
    acc = np.zeros((h, w), np.float64)
    cnt = np.zeros((h, w), np.float64)
    for e, (y, x) in zip(effects, patches):
        acc[y:y + k, x:x + k] += e
        cnt[y:y + k, x:x + k] += 1
    return (acc / np.maximum(cnt, 1)).astype(np.float32)


def positive_mass_inside(m: NDArray[np.floating], mask: NDArray[np.bool_]) -> float:
    """Share of a map's positive mass inside ``mask`` (0 when the map has none)."""
    pos = np.clip(np.asarray(m, np.float64), 0, None)
    tot = pos.sum()
    return float(pos[mask].sum() / tot) if tot > 0 else 0.0


# -------------------------------------------------------------------------------------- text
def check_span_names(names: list[str]) -> None:
    """Raises ConfigError (one line) for a name not in ``SPAN_NAMES``."""
    bad = [n for n in names if n not in SPAN_NAMES]
    if bad:
        raise ConfigError(f"--spans: unknown span {bad[0]!r}; expected names among {', '.join(SPAN_NAMES)}")


def mask_span(text: str, ranges: list[tuple[int, int]], mode: str = "delete", neutral: str = "something") -> str:
    """``text`` with each character range deleted (``delete``) or replaced by ``neutral`` (``neutral``);
    spaces left doubled by a deletion are collapsed."""
    if mode not in TEXT_MODES:
        raise ConfigError(f"--text-modes: expected among {', '.join(TEXT_MODES)}, given {mode!r}")
    out = text
    for a, b in sorted(ranges, reverse=True):
        out = out[:a] + ("" if mode == "delete" else neutral) + out[b:]
    return " ".join(out.split()).replace(" ,", ",")
