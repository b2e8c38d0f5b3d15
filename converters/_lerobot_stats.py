"""Feature statistics for the LeRobot export, with lerobot's own definitions.

Two definitions are live, one per format version:

* **v3.0** (lerobot >= 0.4, ``lerobot.datasets.compute_stats``): per episode, min/max/mean/std and
  the quantiles q01, q10, q50, q90, q99 of every numeric feature, the quantiles estimated from a
  5000-bin histogram (``RunningQuantileStats``), std from the running mean of squares. The
  dataset's ``meta/stats.json`` aggregates the episodes: min of mins, max of maxes, count-weighted
  mean, pooled variance, and count-weighted means of the episode quantiles.
* **v2.1** (lerobot <= 0.3): per episode exact ``np.min/max/mean/std`` (no quantiles in lerobot's
  definition); the loader aggregates the episodes itself with the same pooled formulas. We add the
  quantiles of the v3.0 definition as extra keys (the v2.1 loader ignores unknown keys), so
  ``episodes_stats.jsonl`` also serves users who normalise with quantiles.

Images are summarised per channel over a deterministic sample of each episode's frames
(``sample_indices``: every frame up to 100 frames, then ``len**0.75`` evenly spaced), frames whose
larger side is >= 300 px subsampled to about 150 px, values scaled to [0, 1], shape (3, 1, 1).

Everything is computed per episode as the episode streams by; the aggregate is folded in with
:class:`StatsAggregator`, so memory does not grow with the dataset.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
QUANTILE_KEYS = tuple(f"q{int(q * 100):02d}" for q in QUANTILES)
NUM_BINS = 5000

Stats = dict[str, NDArray[Any]]


def sample_indices(n: int) -> list[int]:
    """Frame indices lerobot samples from an episode of ``n`` frames for image statistics."""
    num = max(min(n, 100), min(int(n**0.75), 10_000))
    return np.round(np.linspace(0, n - 1, num)).astype(int).tolist()


def downsample_for_stats(frames_chw: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """lerobot's ``auto_downsample_height_width`` on a (N, C, H, W) batch."""
    h, w = frames_chw.shape[-2:]
    if max(h, w) < 300:
        return frames_chw
    f = int(w / 150) if w > h else int(h / 150)
    return frames_chw[..., ::f, ::f]


def _histogram_quantiles(batch: NDArray[Any], lo: NDArray[Any], hi: NDArray[Any], count: int) -> list[NDArray[Any]]:
    """Quantiles of ``batch`` (N, D) from a NUM_BINS histogram per column, as RunningQuantileStats."""
    out = [np.empty(batch.shape[1], dtype=np.float64) for _ in QUANTILES]
    for d in range(batch.shape[1]):
        edges = np.linspace(lo[d] - 1e-10, hi[d] + 1e-10, NUM_BINS + 1)
        hist, _ = np.histogram(batch[:, d], bins=edges)
        cum = np.cumsum(hist)
        for qi, q in enumerate(QUANTILES):
            out[qi][d] = _quantile_from_hist(cum, edges, q * count)
    return out


def _quantile_from_hist(cum: NDArray[Any], edges: NDArray[Any], target: float) -> float:
    """RunningQuantileStats._compute_single_quantile on a cumulative histogram."""
    idx = int(np.searchsorted(cum, target))
    if idx == 0:
        return float(edges[0])
    if idx >= len(cum):
        return float(edges[-1])
    before = cum[idx - 1]
    inbin = cum[idx] - before
    if inbin == 0:
        return float(edges[idx])
    return float(edges[idx] + (target - before) / inbin * (edges[idx + 1] - edges[idx]))


def running_stats(batch: NDArray[Any]) -> Stats:
    """v3.0 statistics of ``batch`` (N, D), numerically as lerobot's RunningQuantileStats.update once.

    Args:
        batch: (N, D) samples; N >= 1. The dtype is kept for mean and mean of squares, as lerobot does.

    Returns:
        min, max, mean, std (each (D,)), count (1,), q01..q99 (each (D,)).
    """
    # As upstream lerobot since 0.4.4 (which squared uint8 pixels in place and overflowed): work in
    # at least float32.
    batch = batch.astype(np.result_type(batch.dtype, np.float32), copy=False)
    n = batch.shape[0]
    if n < 2:  # lerobot's _compute_basic_stats: quantiles set to the mean
        mean = np.mean(batch, axis=0)
        s: Stats = {"min": np.min(batch, axis=0), "max": np.max(batch, axis=0), "mean": mean,
                    "std": np.std(batch, axis=0), "count": np.array([n])}
        for k in QUANTILE_KEYS:
            s[k] = mean.copy()
        return s
    mean = np.mean(batch, axis=0)
    mean_sq = np.mean(batch**2, axis=0)
    lo, hi = np.min(batch, axis=0), np.max(batch, axis=0)
    s = {"min": lo, "max": hi, "mean": mean, "std": np.sqrt(np.maximum(0, mean_sq - mean**2)),
         "count": np.array([n])}
    for k, v in zip(QUANTILE_KEYS, _histogram_quantiles(batch, lo, hi, n), strict=True):
        s[k] = v
    return s


def exact_stats(batch: NDArray[Any]) -> Stats:
    """v2.1 statistics (lerobot 0.3 ``get_feature_stats``): exact min/max/mean/std and count, (D,) each."""
    return {"min": np.min(batch, axis=0), "max": np.max(batch, axis=0), "mean": np.mean(batch, axis=0),
            "std": np.std(batch, axis=0), "count": np.array([batch.shape[0]])}


def vector_stats(values: NDArray[Any], version: str) -> Stats:
    """Per-episode statistics of a (T,) or (T, D) feature for format ``version`` ('v3.0' or 'v2.1')."""
    batch = values.reshape(len(values), -1) if values.ndim > 1 else values.reshape(-1, 1)
    s = running_stats(batch)
    if version == "v2.1":
        s = {**{k: v for k, v in s.items() if k in QUANTILE_KEYS}, **exact_stats(batch)}
    # lerobot keeps 1-D inputs as shape (1,) stats and D-vectors as (D,)
    return {k: (v if k == "count" else np.asarray(v).reshape(-1)) for k, v in s.items()}


def channel_counts(frames_hwc: NDArray[np.uint8], idx: list[int]) -> NDArray[np.int64]:
    """(3, 256) counts of each value of each channel over the frames ``idx`` of ``frames_hwc``.

    Each frame is downsampled as lerobot's ``auto_downsample_height_width`` does. Full-size frames
    are counted with Pillow's C histogram (about 5x faster than ``np.bincount`` per channel);
    downsampled ones with ``np.bincount``.
    """
    h, w = frames_hwc.shape[1:3]
    counts = np.zeros((3, 256), dtype=np.int64)
    if max(h, w) < 300:
        for i in idx:
            counts += np.asarray(Image.fromarray(frames_hwc[i], "RGB").histogram(), dtype=np.int64).reshape(3, 256)
        return counts
    chw = downsample_for_stats(np.ascontiguousarray(frames_hwc[idx].transpose(0, 3, 1, 2)))
    for c in range(3):
        counts[c] = np.bincount(chw[:, c].reshape(-1), minlength=256)
    return counts


def uint8_channel_stats(counts: NDArray[np.integer]) -> Stats:
    """Per-channel statistics of uint8 pixels from their (C, 256) value counts (fast, exact).

    Same values as :func:`running_stats` over the pixels (the 5000-bin histogram is filled from the
    counts of each integer value, which land in the same bins), without sorting millions of pixels.
    """
    counts = np.asarray(counts, dtype=np.float64)
    C = counts.shape[0]
    vals = np.arange(256, dtype=np.float64)
    n = int(counts[0].sum())
    lo = np.array([vals[c > 0].min() for c in counts])
    hi = np.array([vals[c > 0].max() for c in counts])
    mean = counts @ vals / n
    var = np.maximum(counts @ vals**2 / n - mean**2, 0.0)
    s: Stats = {"min": lo, "max": hi, "mean": mean, "std": np.sqrt(var), "count": np.array([n])}
    qs = [np.empty(C) for _ in QUANTILES]
    for c in range(C):
        edges = np.linspace(lo[c] - 1e-10, hi[c] + 1e-10, NUM_BINS + 1)
        hist, _ = np.histogram(vals, bins=edges, weights=counts[c])
        cum = np.cumsum(hist)
        for qi, q in enumerate(QUANTILES):
            qs[qi][c] = _quantile_from_hist(cum, edges, q * n)
    for k, v in zip(QUANTILE_KEYS, qs, strict=True):
        s[k] = v
    return s


def image_stats(frames_hwc: NDArray[np.uint8], version: str) -> Stats:
    """Per-episode statistics of one camera, (T, H, W, 3) uint8 → per-channel (3, 1, 1) in [0, 1].

    The sample of frames is lerobot's (``sample_indices``); ``count`` is the number of sampled frames.
    """
    idx = sample_indices(len(frames_hwc))
    s = uint8_channel_stats(channel_counts(frames_hwc, idx))
    out: Stats = {}
    for k, v in s.items():
        out[k] = np.array([len(idx)]) if k == "count" else (np.asarray(v, dtype=np.float64) / 255.0).reshape(-1, 1, 1)
    return out


class StatsAggregator:
    """Folds per-episode statistics into dataset statistics (lerobot's ``aggregate_stats``), streaming.

    Keeps, per feature, running min/max, the count, the count-weighted sums of means, of
    ``std**2 + mean**2`` (pooled variance) and of each quantile.
    """

    def __init__(self) -> None:
        self._acc: dict[str, dict[str, Any]] = {}

    def add(self, episode_stats: dict[str, Stats]) -> None:
        """Fold one episode's ``{feature: stats}`` in."""
        for key, s in episode_stats.items():
            c = float(s["count"][0])
            a = self._acc.get(key)
            mean = np.asarray(s["mean"], dtype=np.float64)
            sq = np.asarray(s["std"], dtype=np.float64) ** 2 + mean**2
            qs = {q: np.asarray(s[q], dtype=np.float64) for q in QUANTILE_KEYS if q in s}
            if a is None:
                self._acc[key] = {"min": np.asarray(s["min"]), "max": np.asarray(s["max"]), "count": c,
                                  "mean": mean * c, "sq": sq * c, "q": {q: v * c for q, v in qs.items()}}
                continue
            a["min"] = np.minimum(a["min"], s["min"])
            a["max"] = np.maximum(a["max"], s["max"])
            a["count"] += c
            a["mean"] = a["mean"] + mean * c
            a["sq"] = a["sq"] + sq * c
            a["q"] = {q: a["q"][q] + qs[q] * c for q in a["q"] if q in qs}

    def result(self) -> dict[str, Stats]:
        """The aggregated ``{feature: {min, max, mean, std, count, q01..q99}}``."""
        out: dict[str, Stats] = {}
        for key, a in self._acc.items():
            n = a["count"]
            mean = a["mean"] / n
            var = np.maximum(a["sq"] / n - mean**2, 0.0)
            s: Stats = {"min": a["min"], "max": a["max"], "mean": mean, "std": np.sqrt(var),
                        "count": np.array([int(n)])}
            for q, v in a["q"].items():
                s[q] = v / n
            out[key] = s
        return out


def to_jsonable(stats: dict[str, Stats]) -> dict[str, dict[str, Any]]:
    """Stats as nested lists (``serialize_dict``), ready for JSON."""
    return {k: {sk: np.asarray(sv).tolist() for sk, sv in s.items()} for k, s in stats.items()}
