"""Grounding metrics against answers computed by hand on small maps (docs/grounding.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bomb_data.ground.metrics import IO_RATIO_CAP, box_distance, box_mask, ground_scores, mask_box, peaks, resize_map


def _mask(shape, box):
    return box_mask(box, shape)


def test_map_equal_to_mask_scores_perfectly():
    m = _mask((8, 10), (2, 1, 6, 4))  # 4 x 3 box
    r = ground_scores(m.astype(np.float32), m)
    assert r.iou_soft == 1.0 and r.dice_soft == 1.0
    assert r.wdp == 0.0
    assert r.io_ratio == IO_RATIO_CAP  # no activation outside: the documented cap
    assert r.inside_fraction == 1.0
    assert r.pg_hit and not r.pg_uncertain
    # the same map scaled by 7 gives the same scores (max normalisation)
    assert ground_scores(7 * m.astype(np.float32), m) == r


def test_map_entirely_outside_at_known_distance():
    # box x in [2, 5), y in [1, 3); one active pixel at (y=7, x=9): dx = 9 - 4 = 5, dy = 7 - 2 = 5
    shape = (8, 10)
    s = np.zeros(shape, np.float32)
    s[7, 9] = 3.0
    r = ground_scores(s, box=(2, 1, 5, 3))
    assert r.wdp == pytest.approx(math.hypot(5, 5) / math.hypot(7, 9), rel=1e-6)
    assert r.iou_soft == 0.0 and r.dice_soft == 0.0 and r.io_ratio == 0.0 and r.inside_fraction == 0.0
    assert not r.pg_hit and not r.pg_uncertain
    # two pixels: weights 1 at distance 3 (straight below) and 1 at distance 5: mean 4
    s = np.zeros(shape, np.float32)
    s[5, 3] = 1.0  # x inside [2, 4], y = 5: 5 - 2 = 3
    s[2, 9] = 1.0  # y inside, x = 9: 9 - 4 = 5
    assert ground_scores(s, box=(2, 1, 5, 3)).wdp == pytest.approx(4 / math.hypot(7, 9), rel=1e-6)


def test_soft_overlap_by_hand():
    # 4 x 4 image, mask = left column (4 px); map 1 on the mask, 0.5 on the second column
    m = np.zeros((4, 4), bool)
    m[:, 0] = True
    s = np.zeros((4, 4), np.float32)
    s[:, 0] = 1.0
    s[:, 1] = 0.5
    r = ground_scores(s, m)
    inter, total, n = 4.0, 6.0, 4
    assert r.iou_soft == pytest.approx(inter / (total + n - inter))
    assert r.dice_soft == pytest.approx(2 * inter / (total + n))
    assert r.io_ratio == pytest.approx(4 / 2)
    assert r.inside_fraction == pytest.approx(4 / 6)
    assert r.wdp == pytest.approx(4 * 0.5 * 1 / (6 * math.hypot(3, 3)))


def test_two_equal_peaks_inside_and_outside_are_uncertain():
    s = np.zeros((32, 32), np.float32)
    s[4, 4] = 1.0
    s[25, 20] = 1.0
    m = _mask((32, 32), (0, 0, 10, 10))
    r = ground_scores(s, m)
    assert r.pg_uncertain and r.pg_peaks_tied == 2 and r.pg_peaks_inside == 1
    # a lower second peak outside is not a tie: certain, and a hit
    s[25, 20] = 0.9
    r = ground_scores(s, m)
    assert r.pg_hit and not r.pg_uncertain and r.pg_peaks_tied == 1
    # two tied peaks, both inside: certain
    s[25, 20] = 0.0
    s[8, 8] = 1.0
    r = ground_scores(s, m, peak_radius=2)
    assert not r.pg_uncertain and r.pg_peaks_tied == 2 and r.pg_peaks_inside == 2


def test_nms_radius_merges_peaks():
    s = np.zeros((20, 20), np.float32)
    s[5, 5] = 1.0
    s[5, 8] = 1.0  # 3 px apart
    assert [p[:2] for p in peaks(s, radius=2, k=5)] == [(5, 5), (5, 8)]
    assert [p[:2] for p in peaks(s, radius=3, k=5)] == [(5, 5)]
    # one peak inside, the other outside but within the radius: suppressed, so certain
    m = _mask((20, 20), (0, 0, 7, 20))
    assert ground_scores(s, m, peak_radius=3).pg_uncertain is False
    assert ground_scores(s, m, peak_radius=2).pg_uncertain is True


def test_degenerate_inputs():
    m = _mask((6, 6), (1, 1, 3, 3))
    r = ground_scores(np.zeros((6, 6)), m)
    assert r.empty_map and math.isnan(r.iou_soft) and not r.pg_hit
    r = ground_scores(np.ones((6, 6)), np.zeros((6, 6), bool))
    assert r.empty_mask and math.isnan(r.wdp)
    with pytest.raises(ValueError, match="non-negative"):
        ground_scores(-np.ones((6, 6)), m)
    assert ground_scores(np.where(m, 1.0, -1.0), m, negative="clip").iou_soft == 1.0
    with pytest.raises(ValueError, match="finite"):
        ground_scores(np.full((6, 6), np.nan), m)
    with pytest.raises(ValueError, match="2-D"):
        ground_scores(np.ones((6, 6, 3)), m)
    with pytest.raises(ValueError, match="mask or a box"):
        ground_scores(np.ones((6, 6)))


def test_box_helpers_and_resize():
    m = box_mask((2, 3, 5, 7), (10, 10))
    assert m.sum() == 3 * 4 and mask_box(m) == (2, 3, 5, 7)
    d = box_distance((2, 3, 5, 7), (10, 10))
    assert d[5, 3] == 0 and d[0, 3] == 3 and d[5, 9] == 5 and d[0, 0] == pytest.approx(math.hypot(3, 2))
    # a 2 x 2 map resized to 4 x 4 keeps its values at the quadrants' corners and its mean
    s = np.array([[0, 1], [2, 3]], np.float32)
    r = resize_map(s, (4, 4))
    assert r.shape == (4, 4) and r[0, 0] == 0 and r[3, 3] == 3 and r.mean() == pytest.approx(1.5)
    # a coarse map equal to the box at 1/4 resolution still scores IoU 1 after resizing by a
    # whole factor when the box is on its cells
    coarse = np.zeros((4, 4), np.float32)
    coarse[1:3, 1:3] = 1
    fine = np.kron(coarse, np.ones((4, 4), np.float32)).astype(bool)
    assert ground_scores(coarse, fine).pg_hit
