"""How much of the board the arm hides in a picture, from a segmentation rendering.

Definitions (docs/perturbations.md, "What the agentview camera sees"):

- **visible fraction of the board**: of the pixels inside the board's top face (its four top corners
  projected), the share that shows no part of the robot. Stones on the board count as board.
- **visible intersection**: its projection lies in the picture and no robot pixel lies within a
  quarter of a line spacing of it (the radius measured in the picture at that intersection, at least
  one pixel). The target is visible when its intersection is.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from numpy.typing import NDArray

#: An intersection is visible when no robot pixel lies within this share of a line spacing of it.
CLEAR_RADIUS_SPACINGS = 0.25


def board_visibility(robot: NDArray[np.bool_], board_uv: NDArray, grid_uv: NDArray, radius_px: NDArray
                     ) -> tuple[float, NDArray[np.bool_]]:
    """Visible fraction of the board and per-intersection visibility.

    Args:
        robot: (H, W) True where a robot geom is drawn.
        board_uv: (4, 2) pixel coordinates (u = column, v = row) of the board's top corners, in order
            around the face (they may lie outside the picture).
        grid_uv: (n, n, 2) pixel coordinates of the intersections (NaN: behind the camera).
        radius_px: (n, n) clearance radius in pixels around each intersection.

    Returns:
        (visible fraction in [0, 1], NaN when a corner is behind the camera or the face covers no
        pixel; (n, n) bool: intersection visible).
    """
    H, W = robot.shape
    corners = np.asarray(board_uv, float)
    fraction = math.nan
    if np.isfinite(corners).all():
        face = np.zeros((H, W), np.uint8)
        pts = np.round(corners * 16).astype(np.int32)  # 4 bits of sub-pixel precision
        cv2.fillPoly(face, [pts], 1, lineType=cv2.LINE_8, shift=4)
        inside = face.astype(bool)
        n_face = int(inside.sum())
        if n_face:
            fraction = 1.0 - float((robot & inside).sum()) / n_face
    uv = np.asarray(grid_uv, float)
    u, v = uv[..., 0], uv[..., 1]
    in_picture = np.isfinite(u) & np.isfinite(v) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
    visible = in_picture.copy()
    if robot.any():
        # distance of every pixel to the nearest robot pixel
        dist = cv2.distanceTransform((~robot).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        cu = np.clip(np.where(in_picture, u, 0), 0, W - 1).astype(int)
        cv = np.clip(np.where(in_picture, v, 0), 0, H - 1).astype(int)
        visible &= dist[cv, cu] > np.maximum(1.0, np.asarray(radius_px, float))
    return fraction, visible
