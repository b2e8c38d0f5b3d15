"""The one rotation-vector convention of observation states (numpy only).

Every ``state`` (8 = eef position + eef axis-angle + 2 fingers) in the environment's observations
and in every export (RLDS, LeRobot, HDF5, zarr) goes through ``quat_wxyz_to_axis_angle``, so a
policy sees at evaluation exactly the numbers it was trained on.

It is robosuite's ``quat2axisangle``, the function LIBERO's states were made with, applied to the
quaternion as MuJoCo gives it: angle ``2 acos(w)`` in [0, 2 pi], axis ``xyz / sqrt(1 - w^2)``, no
flip to ``w >= 0``. For this task it is also the continuous choice: the gripper points straight
down, so ``w`` hovers around 0 and changes sign while ``x`` keeps its sign; flipping to ``w >= 0``
would make the rotation vector jump between (pi, 0, 0) and (-pi, 0, 0).

The controller and the experts compose and compare orientations with the quaternion algebra below
(``quat_mul``, ``axis_angle_to_quat``, ``quat_error``): MuJoCo's own routines, imported on first use,
so this module stays importable without mujoco. ``quat_error`` takes the *shortest* rotation
(``shortest_rotation_vector``: angle in [0, pi], ``w >= 0``), which is what a controller needs and
is not the observation convention above.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray


def quat_wxyz_to_axis_angle(quat_wxyz: NDArray[np.floating]) -> NDArray[np.float32]:
    """Rotation vectors (..., 3) float32, rad, of quaternions (..., 4) w-x-y-z (robosuite's branch)."""
    q = np.asarray(quat_wxyz, dtype=np.float64)
    w = np.clip(q[..., 0], -1.0, 1.0)
    den = np.sqrt(1.0 - w * w)
    angle = 2.0 * np.arccos(w)
    safe = den > 1e-12
    scale = np.where(safe, angle / np.where(safe, den, 1.0), 0.0)
    return (q[..., 1:4] * scale[..., None]).astype(np.float32)


def state8(eef_pos: NDArray[np.floating], eef_quat: NDArray[np.floating],
           gripper_qpos: NDArray[np.floating]) -> NDArray[np.float32]:
    """The 8-D state (..., 8) float32: eef position (3), eef axis-angle (3), finger positions (2)."""
    return np.concatenate([np.asarray(eef_pos, np.float32), quat_wxyz_to_axis_angle(eef_quat),
                           np.asarray(gripper_qpos, np.float32)], axis=-1)


# --------------------------------------------------------------- quaternion algebra (controller, experts)
def _mujoco() -> Any:
    import mujoco  # (bomb_data/__init__ has set MUJOCO_GL already)

    return mujoco


def quat_mul(a: NDArray, b: NDArray) -> NDArray:
    """Quaternion product ``a * b`` (w-x-y-z, float64)."""
    out = np.zeros(4)
    _mujoco().mju_mulQuat(out, np.asarray(a, float), np.asarray(b, float))
    return out


def axis_angle_to_quat(v: NDArray) -> NDArray:
    """Unit quaternion (w-x-y-z) of the rotation vector ``v`` (axis * angle, rad)."""
    out = np.zeros(4)
    ang = float(np.linalg.norm(v))
    if ang < 1e-12:
        return np.array([1.0, 0, 0, 0])
    _mujoco().mju_axisAngle2Quat(out, np.asarray(v, float) / ang, ang)
    return out


def shortest_rotation_vector(q: NDArray) -> NDArray:
    """Rotation vector (axis * angle, angle in [0, pi]) of a unit quaternion w-x-y-z."""
    q = np.asarray(q, float)
    q = q / np.linalg.norm(q)
    if q[0] < 0:
        q = -q
    v = np.zeros(3)
    _mujoco().mju_quat2Vel(v, q, 1.0)
    return v


def quat_error(target: NDArray, current: NDArray) -> NDArray:
    """Axis-angle rotation taking ``current`` to ``target`` (world frame; the shortest one)."""
    qc = np.array([current[0], -current[1], -current[2], -current[3]])
    return shortest_rotation_vector(quat_mul(target, qc))
