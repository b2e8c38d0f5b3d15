"""Delta end-effector control: canonical 7-D actions to joint position targets.

An action ``[dx, dy, dz, drx, dry, drz, g]`` moves the end-effector target to the *measured* pose at
the start of the step plus the delta (base frame; rotation as a left-multiplied axis-angle), so
tracking errors do not accumulate. Differential IK (damped least squares with a posture term in the
null space) turns the target into arm joint targets, which position servos follow; the joint targets
are interpolated linearly over the physics substeps of the control step, which keeps motion smooth.
The gripper command ``g`` in [-1, 1] maps linearly to the finger target: -1 open, +1 closed.
"""

from __future__ import annotations

import mujoco
import numpy as np
from numpy.typing import NDArray

from .. import _gl  # noqa: F401
from ..rotations import axis_angle_to_quat, quat_error, quat_mul  # noqa: F401  (quat_mul, quat_error: public there)
from ..schema import MAX_DPOS_M, MAX_DROT_RAD  # noqa: F401  (the action bounds, importable from here too)
from .panda import HOME_QPOS, N_ARM_JOINTS, POSTURE_QPOS


class DeltaEEFController:
    """Executes canonical actions on a scene's MjData."""

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, grasp_site: int, open_width_m: float,
                 control_dt: float):
        self.m, self.d = model, data
        self.site = grasp_site
        self.open_width = open_width_m
        self.n_sub = max(1, int(round(control_dt / model.opt.timestep)))
        jid = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, f"joint{i + 1}") for i in range(N_ARM_JOINTS)]
        self.qadr = np.array([model.jnt_qposadr[j] for j in jid])
        self.vadr = np.array([model.jnt_dofadr[j] for j in jid])
        fj = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, f"finger_{s}") for s in ("left", "right")]
        self.fadr = np.array([model.jnt_qposadr[j] for j in fj])
        self.act_arm = np.arange(N_ARM_JOINTS)
        self.act_fingers = np.array([N_ARM_JOINTS, N_ARM_JOINTS + 1])
        self._scratch = mujoco.MjData(model)
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))
        self.q_target = HOME_QPOS.copy()
        self.target_pos = np.zeros(3)
        self.target_quat = np.array([1.0, 0, 0, 0])
        self.lo = model.jnt_range[jid, 0]
        self.hi = model.jnt_range[jid, 1]

    # -- state -------------------------------------------------------------------------------------
    def eef_pose(self, data: mujoco.MjData | None = None) -> tuple[NDArray, NDArray]:
        d = self.d if data is None else data
        pos = d.site_xpos[self.site].copy()
        q = np.zeros(4)
        mujoco.mju_mat2Quat(q, d.site_xmat[self.site])
        return pos, q

    def joint_pos(self) -> NDArray:
        return self.d.qpos[self.qadr].copy()

    def joint_vel(self) -> NDArray:
        return self.d.qvel[self.vadr].copy()

    def finger_pos(self) -> NDArray:
        return self.d.qpos[self.fadr].copy()

    def reset(self, q_arm: NDArray, gripper: float = -1.0) -> None:
        """Put the arm at ``q_arm`` at rest with matching servo targets (call before mj_forward)."""
        self.d.qpos[self.qadr] = q_arm
        self.d.qvel[self.vadr] = 0
        fw = self.finger_target(gripper)
        self.d.qpos[self.fadr] = fw
        self.d.ctrl[self.act_arm] = q_arm
        self.d.ctrl[self.act_fingers] = fw
        self.q_target = np.asarray(q_arm, float).copy()

    def finger_target(self, g: float) -> float:
        return float(self.open_width * (1.0 - np.clip(g, -1.0, 1.0)) / 2.0)

    # -- IK ----------------------------------------------------------------------------------------
    def solve_ik(self, pos: NDArray, quat: NDArray, q0: NDArray, iters: int = 4) -> NDArray:
        """Joint positions that put the grasp site at (pos, quat), starting from q0."""
        s = self._scratch
        s.qpos[:] = self.d.qpos
        q = q0.copy()
        lam2 = 1e-4
        for _ in range(iters):
            s.qpos[self.qadr] = q
            mujoco.mj_kinematics(self.m, s)
            mujoco.mj_comPos(self.m, s)
            p, qq = self.eef_pose(s)
            err = np.concatenate([pos - p, quat_error(quat, qq)])
            if np.linalg.norm(err[:3]) < 1e-5 and np.linalg.norm(err[3:]) < 1e-4:
                break
            mujoco.mj_jacSite(self.m, s, self._jacp, self._jacr, self.site)
            J = np.concatenate([self._jacp[:, self.vadr], self._jacr[:, self.vadr]])
            JJt = J @ J.T + lam2 * np.eye(6)
            dq = J.T @ np.linalg.solve(JJt, err)
            # Posture term in the null space keeps the redundant elbow near the working posture.
            Jpinv = J.T @ np.linalg.inv(JJt)
            null = np.eye(N_ARM_JOINTS) - Jpinv @ J
            dq += null @ (0.2 * (POSTURE_QPOS - q))
            n = np.abs(dq).max()
            if n > 0.2:  # keep each Newton step small: large steps leave the linear regime
                dq *= 0.2 / n
            q = np.clip(q + dq, self.lo, self.hi)
        return q

    # -- stepping ----------------------------------------------------------------------------------
    def apply(self, action: NDArray, step_fn) -> None:
        """Execute one control step of ``action`` (7,), calling ``step_fn()`` once per substep."""
        a = np.asarray(action, dtype=np.float64)
        dpos = np.clip(a[:3], -MAX_DPOS_M, MAX_DPOS_M)
        drot = a[3:6]
        n = np.linalg.norm(drot)
        if n > MAX_DROT_RAD:
            drot = drot * (MAX_DROT_RAD / n)
        pos, quat = self.eef_pose()
        self.target_pos = pos + dpos
        self.target_quat = quat_mul(axis_angle_to_quat(drot), quat)
        q_new = self.solve_ik(self.target_pos, self.target_quat, self.joint_pos())
        q_start = self.q_target
        self.q_target = q_new
        f_start = self.d.ctrl[self.act_fingers].copy()
        f_new = self.finger_target(a[6])
        for k in range(self.n_sub):
            w = (k + 1) / self.n_sub
            self.d.ctrl[self.act_arm] = q_start + w * (q_new - q_start)
            self.d.ctrl[self.act_fingers] = f_start + min(1.0, 2 * w) * (f_new - f_start)
            step_fn()
