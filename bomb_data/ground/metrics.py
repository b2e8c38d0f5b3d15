"""Grounding metrics of a saliency map against a ground-truth region (numpy only; docs/grounding.md).

The metrics follow Q-GroundCAM (Rajabi & Kosecka, arXiv 2404.19128): soft IoU and soft Dice between
the normalised map and the binary ground truth, the weighted distance penalty (WDP: activation
outside the region, weighted by its magnitude and its distance to the region's box), the
inside/outside activation ratio (IOratio), the pointing-game hit (PG) and the pointing-game
uncertainty (several top peaks after non-maximum suppression, some inside and some outside).
Where the paper leaves a choice open the choice made here is stated in the docstring and in
docs/grounding.md.

Coordinates: pixels, ``x`` = column, ``y`` = row, origin top-left (as ``GoPlaceEnv.project``).
A box is ``(x0, y0, x1, y1)`` with ``x1``/``y1`` exclusive, so a box covers ``x0 <= x < x1``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

#: IOratio is capped here: a map with no activation outside the region has an infinite ratio.
IO_RATIO_CAP = 100.0
#: Default suppression radius of the pointing-game peaks, as a fraction of the map's shorter side.
PEAK_RADIUS_FRACTION = 0.05
#: Default number of peaks the pointing-game uncertainty looks at.
TOP_K = 3
#: Peaks within this relative margin of the highest peak count as tied with it.
TIE_TOLERANCE = 1e-6

Box = tuple[int, int, int, int]


def box_mask(box: Box, shape: tuple[int, int]) -> NDArray[np.bool_]:
    """Boolean (H, W) mask of a pixel box ``(x0, y0, x1, y1)`` (exclusive ends), clipped to the image."""
    H, W = shape
    x0, y0, x1, y1 = (int(v) for v in box)
    m = np.zeros((H, W), bool)
    m[max(0, y0) : max(0, min(H, y1)), max(0, x0) : max(0, min(W, x1))] = True
    return m


def mask_box(mask: NDArray[np.bool_]) -> Box | None:
    """The tightest box ``(x0, y0, x1, y1)`` around a mask's pixels; None for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def resize_map(s: NDArray[np.floating], shape: tuple[int, int]) -> NDArray[np.float32]:
    """Bilinear resize of a map to ``shape`` (pixel centres aligned, as OpenCV's INTER_LINEAR)."""
    H, W = shape
    h, w = s.shape
    if (h, w) == (H, W):
        return s.astype(np.float32, copy=False)

    def axis(n_out: int, n_in: int) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32]]:
        c = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        i0 = np.floor(c).astype(np.int64)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, (c - i0).astype(np.float32)

    r0, r1, fr = axis(H, h)
    c0, c1, fc = axis(W, w)
    s = s.astype(np.float32, copy=False)
    top = s[r0][:, c0] * (1 - fc) + s[r0][:, c1] * fc
    bot = s[r1][:, c0] * (1 - fc) + s[r1][:, c1] * fc
    return top * (1 - fr[:, None]) + bot * fr[:, None]


def prepare_map(s: NDArray[Any], negative: str = "error") -> NDArray[np.float32]:
    """Check a map: 2-D, finite; negative values raise (``negative="error"``) or become 0 (``"clip"``).

    Raises:
        ValueError: not 2-D, a NaN/inf value, or a negative value with ``negative="error"``.
    """
    a = np.asarray(s)
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"map: expected a non-empty 2-D array (H, W), found shape {a.shape}")
    a = a.astype(np.float32, copy=False)
    if not np.isfinite(a).all():
        raise ValueError("map: expected finite values, found NaN or inf")
    if negative == "clip":
        return np.maximum(a, 0)
    if negative != "error":
        raise ValueError(f"negative: expected 'error' or 'clip', given {negative!r}")
    lo = float(a.min())
    if lo < 0:
        raise ValueError(f"map: expected non-negative values, found minimum {lo:g} (use negative='clip')")
    return a


def box_distance(box: Box, shape: tuple[int, int]) -> NDArray[np.float32]:
    """Euclidean distance (px) of every pixel centre to the box (0 inside it), (H, W)."""
    H, W = shape
    x0, y0, x1, y1 = box
    x = np.arange(W, dtype=np.float32)
    y = np.arange(H, dtype=np.float32)
    dx = np.maximum(np.maximum(x0 - x, x - (x1 - 1)), 0)
    dy = np.maximum(np.maximum(y0 - y, y - (y1 - 1)), 0)
    return np.sqrt(dy[:, None] ** 2 + dx[None, :] ** 2)


def peaks(s: NDArray[np.float32], radius: float, k: int) -> list[tuple[int, int, float]]:
    """Up to ``k`` peaks ``(y, x, value)`` of a map, highest first, after non-maximum suppression.

    Candidates are the pixels with a positive value not below any of their 8 neighbours; the
    highest candidate is taken (ties: the first in row-major order), every candidate within
    ``radius`` pixels (Euclidean) of it is suppressed, and so on.
    """
    H, W = s.shape
    p = np.full((H + 2, W + 2), -np.inf, np.float32)
    p[1:-1, 1:-1] = s
    h = np.maximum(np.maximum(p[:, :-2], p[:, 1:-1]), p[:, 2:])
    local_max = np.maximum(np.maximum(h[:-2], h[1:-1]), h[2:])  # 3x3 maximum filter
    cand = (s >= local_max) & (s > 0)
    work = np.multiply(s, cand, dtype=np.float32)  # candidates keep their (positive) value, others 0
    out: list[tuple[int, int, float]] = []
    ri = int(math.floor(radius))
    oy, ox = np.mgrid[-ri : ri + 1, -ri : ri + 1]
    disc = oy * oy + ox * ox <= radius * radius
    # k passes of argmax (the first of equal values is the first in row-major order) instead of a
    # sort of the candidates: a flat map makes every pixel one, and k is small.
    while len(out) < k:
        i = int(np.argmax(work))
        y, x = divmod(i, W)
        v = float(work[y, x])
        if v <= 0:
            break
        out.append((y, x, v))
        y0, y1, x0, x1 = max(0, y - ri), min(H, y + ri + 1), max(0, x - ri), min(W, x + ri + 1)
        win = work[y0:y1, x0:x1]
        win[disc[y0 - y + ri : y1 - y + ri, x0 - x + ri : x1 - x + ri]] = 0
    return out


@dataclass(frozen=True)
class GroundScores:
    """Metrics of one map against one region (docs/grounding.md).

    Attributes:
        iou_soft, dice_soft: overlap of the max-normalised map with the mask, in [0, 1].
        wdp: weighted distance penalty in [0, 1]: activation-weighted mean distance to the box over
            the image diagonal (0 = all activation inside the box).
        io_ratio: activation inside the mask over activation outside (sums), capped at
            ``IO_RATIO_CAP`` (the cap also stands for "no activation outside").
        inside_fraction: share of the total activation that falls inside the mask.
        pg_hit: the highest peak lies inside the mask.
        pg_uncertain: among the top-k peaks tied with the highest, some lie inside and some outside.
        pg_peaks_inside, pg_peaks_tied: of the tied top peaks, how many inside / how many in all.
        empty_map: the map is zero everywhere (the other metrics are then NaN / False).
        empty_mask: the region has no pixel in the image (the metrics are then NaN / False).
    """

    iou_soft: float
    dice_soft: float
    wdp: float
    io_ratio: float
    inside_fraction: float
    pg_hit: bool
    pg_uncertain: bool
    pg_peaks_inside: int
    pg_peaks_tied: int
    empty_map: bool
    empty_mask: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_NAN = float("nan")


def ground_scores(s: NDArray[Any], mask: NDArray[np.bool_] | None = None, box: Box | None = None, *,
                  negative: str = "error", peak_radius: float | None = None, top_k: int = TOP_K,
                  tie_tolerance: float = TIE_TOLERANCE, io_cap: float = IO_RATIO_CAP) -> GroundScores:
    """Every grounding metric of map ``s`` against a region given as a mask or a box.

    Args:
        s: (h, w) non-negative map, any size; resized bilinearly to the mask's size when it differs.
        mask: (H, W) bool ground truth; if None, the box rasterised at the map's size.
        box: ``(x0, y0, x1, y1)`` pixel box (exclusive ends) of the region; if None, the mask's
            tightest box. WDP measures distance to this box (as the paper, which works with boxes).
        negative: ``"error"`` (default) or ``"clip"`` negative map values to 0.
        peak_radius: non-maximum-suppression radius in pixels (default 5% of the shorter side, at
            least 1).
        top_k: how many peaks the uncertainty looks at.
        tie_tolerance: peaks >= (1 - tie_tolerance) x the highest count as tied with it.
        io_cap: cap of the IOratio.

    Returns:
        GroundScores.
    """
    a = prepare_map(s, negative)
    if mask is None:
        if box is None:
            raise ValueError("ground_scores: give a mask or a box")
        mask = box_mask(box, a.shape)
    m = np.asarray(mask, bool)
    if m.ndim != 2:
        raise ValueError(f"mask: expected a 2-D boolean array, found shape {m.shape}")
    if a.shape != m.shape:
        a = resize_map(a, m.shape)
    H, W = m.shape
    if box is None:
        box = mask_box(m)
    n_in = int(np.count_nonzero(m))
    top = float(a.max())
    if n_in == 0 or box is None:
        return GroundScores(_NAN, _NAN, _NAN, _NAN, _NAN, False, False, 0, 0, top <= 0, True)
    if top <= 0:
        return GroundScores(_NAN, _NAN, _NAN, _NAN, _NAN, False, False, 0, 0, True, False)
    an = a / top  # max-normalised: zero stays zero, the highest value becomes 1
    total = float(an.sum())
    inter = float(an[m].sum())
    iou = inter / (total + n_in - inter)
    dice = 2 * inter / (total + n_in)
    wdp = float((an * box_distance(box, an.shape)).sum()) / (total * math.hypot(H - 1, W - 1) if H * W > 1 else 1.0)
    out_sum = total - inter
    io = io_cap if out_sum <= 0 else min(io_cap, inter / out_sum)
    radius = peak_radius if peak_radius is not None else max(1.0, PEAK_RADIUS_FRACTION * min(H, W))
    pk = peaks(an, radius, max(1, top_k))
    tied = [p for p in pk if p[2] >= (1 - tie_tolerance) * pk[0][2]]
    inside = sum(1 for y, x, _ in tied if m[y, x])
    hit = bool(m[pk[0][0], pk[0][1]])
    return GroundScores(iou, dice, wdp, io, inter / total, hit, 0 < inside < len(tied), inside, len(tied),
                        False, False)
