"""Agentview framing: where the camera stands so that the board fills the same share of the picture
at every board size, and how many pixels separate two lines of the board.

Pure numpy (no MuJoCo), so ``bomb-data grid show`` can state pixels per line spacing for every cell
without building a scene.

The camera sits on a sphere around an aim point on the table, at the perturbed azimuth and
elevation. Its distance is the largest that satisfies both:

- the board's extent in the picture (the larger of its width and height, corners projected) is
  ``BOARD_SHARE`` of the frame;
- every corner of the board and of the supply tray lies within ``FRAME_MARGIN`` of the half-frame
  from the picture's centre (the tray is where the stone to place lies: a policy that sees only
  the agentview picture must see it).

The aim point is moved (on the table plane) until the box around board and tray is centred in the
picture. On boards of 8 x 8 and larger the first condition decides: the board's extent is
``BOARD_SHARE`` of the frame at every size. On smaller boards the tray (10 cm wide, as for every
board) would leave the picture, so the camera stands farther and the board's share is smaller:
0.51 of the frame on 3 x 3, 0.61 on 5 x 5, 0.67 on 7 x 7 (docs/perturbations.md gives the figures).
``camera_distance_scale`` multiplies the fitted distance afterwards (the ``camera_distance`` axis).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numpy.typing import NDArray

#: The board's extent (its larger side in the picture) as a share of the frame, at the fitted distance.
BOARD_SHARE = 0.70
#: Board and tray corners stay within this share of the half-frame from the picture's centre.
FRAME_MARGIN = 0.92


def look_at_matrix(pos: NDArray[np.float64], target: NDArray[np.float64]) -> NDArray[np.float64]:
    """Rotation (3, 3) whose columns are a MuJoCo camera's x (right), y (up) and z (backward) axes in
    the world, for a camera at ``pos`` looking at ``target`` with world z up."""
    fwd = np.asarray(target, float) - np.asarray(pos, float)
    fwd = fwd / np.linalg.norm(fwd)
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    return np.stack([right, up, -fwd], axis=1)


def matrix_to_quat(R: NDArray[np.float64]) -> NDArray[np.float64]:
    """Unit quaternion (w, x, y, z), w >= 0, of a rotation matrix."""
    m = np.asarray(R, float)
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = 2.0 * math.sqrt(1.0 + tr)
        q = np.array([0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s])
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = np.array([(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s])
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = np.array([(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s])
    else:
        s = 2.0 * math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = np.array([(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s])
    q /= np.linalg.norm(q)
    return -q if q[0] < 0 else q


def normalized(points: NDArray, pos: NDArray, R: NDArray, tan_h: float, tan_v: float) -> NDArray[np.float64]:
    """Picture coordinates of world points (…, 3) in [-1, 1] across the frame: (…, 2) = (right, up);
    NaN behind the camera."""
    pc = (np.asarray(points, float) - pos) @ R
    depth = -pc[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.stack([pc[..., 0] / (depth * tan_h), pc[..., 1] / (depth * tan_v)], -1)
    out[depth <= 1e-6] = np.nan
    return out


def view_direction(elevation_deg: float, azimuth_deg: float) -> NDArray[np.float64]:
    """Unit vector from the aim point toward the camera (azimuth 0: on the robot's side)."""
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    return np.array([-math.cos(el) * math.cos(az), -math.cos(el) * math.sin(az), math.sin(el)])


def frame_agentview(board_corners: NDArray, tray_corners: NDArray, elevation_deg: float, azimuth_deg: float,
                    fovy_deg: float, aspect: float, distance_scale: float = 1.0,
                    board_share: float = BOARD_SHARE, margin: float = FRAME_MARGIN
                    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Camera position (3,) and rotation (3, 3) (columns: camera axes in the world) that frame the
    board (corners (4, 3)) and the tray (corners (k, 3)) as the module docstring says.

    A pure function of its arguments, cached (episodes of a grid share few distinct framings)."""
    key = (tuple(np.round(np.asarray(board_corners, float), 12).ravel().tolist()),
           tuple(np.round(np.asarray(tray_corners, float), 12).ravel().tolist()),
           float(elevation_deg), float(azimuth_deg), float(fovy_deg), float(aspect), float(distance_scale),
           float(board_share), float(margin))
    pos, R = _frame(*key)
    return pos.copy(), R.copy()


@functools.lru_cache(maxsize=512)
def _frame(board_flat: tuple[float, ...], tray_flat: tuple[float, ...], elevation_deg: float, azimuth_deg: float,
           fovy_deg: float, aspect: float, distance_scale: float, board_share: float, margin: float
           ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    board = np.array(board_flat).reshape(-1, 3)
    union = np.concatenate([board, np.array(tray_flat).reshape(-1, 3)])
    tan_v = math.tan(math.radians(fovy_deg) / 2)
    tan_h = tan_v * aspect
    direction = view_direction(elevation_deg, azimuth_deg)
    R = look_at_matrix(direction, np.zeros(3))  # the camera looks along -direction wherever it stands
    aim = board.mean(0)
    nb = len(board)

    def fit(dist: float, aim: NDArray) -> float:
        pts = normalized(union, aim + direction * dist, R, tan_h, tan_v)
        if np.isnan(pts).any():
            return math.inf
        b = pts[:nb]
        extent = float(np.max((b.max(0) - b.min(0)) / 2))
        return max(extent / board_share, float(np.abs(pts).max()) / margin)

    dist = 1.0
    for _ in range(8):
        lo, hi = 0.05, 50.0  # fit() decreases with the distance: bisect on a log scale for fit = 1
        for _ in range(32):
            mid = math.sqrt(lo * hi)
            if fit(mid, aim) > 1.0:
                lo = mid
            else:
                hi = mid
        dist = hi
        pos = aim + direction * dist
        u = normalized(union, pos, R, tan_h, tan_v)
        c = (u.max(0) + u.min(0)) / 2  # centre of the box around board and tray, in the picture
        if np.all(np.abs(c) < 1e-4):
            break
        ray = R @ np.array([c[0] * tan_h, c[1] * tan_v, -1.0])
        aim = pos + ray * ((aim[2] - pos[2]) / ray[2])  # that centre's point on the plane of the aim
    pos = aim + direction * dist * distance_scale
    return pos, R


def pixel_coords(points: NDArray, pos: NDArray, R: NDArray, fovy_deg: float, width: int, height: int
                 ) -> NDArray[np.float64]:
    """Pixel coordinates (u = column, v = row; origin top-left, pixel centres at +0.5) of world points
    (…, 3) for a camera of ``fovy_deg`` and the picture size, as MuJoCo renders it."""
    f = (height / 2) / math.tan(math.radians(fovy_deg) / 2)
    pc = (np.asarray(points, float) - pos) @ R
    depth = -pc[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.stack([width / 2 + f * pc[..., 0] / depth, height / 2 - f * pc[..., 1] / depth], -1)


def line_spacing_px(grid_uv: NDArray) -> tuple[float, float]:
    """(smallest, median) distance in pixels between neighbouring intersections, from their pixel
    coordinates (n, n, 2) (rows and columns both counted)."""
    g = np.asarray(grid_uv, float)
    d = np.concatenate([np.linalg.norm(np.diff(g, axis=0), axis=-1).ravel(),
                        np.linalg.norm(np.diff(g, axis=1), axis=-1).ravel()])
    return float(d.min()), float(np.median(d))
