"""Franka Emika Panda arm with its parallel gripper, built into an MjSpec.

Kinematics, joint ranges and masses follow the Panda model shipped (MIT) with gymnasium-robotics
(``kitchen_franka/franka_assets``). Its full visual meshes total 136,000 faces and render 20-40x
slower on a CPU than low-poly ones, so each is decimated once per process (quadric error
simplification, ``fast-simplification``, deterministic) to about ``VISUAL_FACES`` faces: the arm
keeps its real silhouette at a fraction of the cost. Only the hand and fingers collide (with the
scene, not with the arm), through simple pads.
"""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np

from .. import _gl  # noqa: F401

N_ARM_JOINTS = 7
# The working posture (rad): grasp site at (0.30, -0.18, 0.30), pointing down, beside the board.
# Differential IK pulls the redundant elbow toward it (sim/controller.py), so the arm works over the
# board and the tray in the same configuration whatever pose it started from.
POSTURE_QPOS = np.array([-0.18, -0.629, -0.349, -2.71, -0.234, 0.528, -0.346])
# The ready pose at reset (rad): grasp site at (0.00, -0.45, 0.20), pointing down, behind and to the
# right of the tray, folded low beside the base. There the arm hides no part of the board in the
# agentview picture at any level of any axis (docs/perturbations.md, "What the agentview camera
# sees"; tests/test_view.py), even with robot_init noise at its bound; the old ready pose
# (POSTURE_QPOS) hid 15% of the board at nominal and up to 67% with robot_init=large.
HOME_QPOS = np.array([-0.185, -0.461, -1.408, -2.505, -0.64, 0.745, -1.107])
FINGER_OPEN_MAX_M = 0.04
# Grasp site: between the finger pads, in the hand frame (m).
GRASP_SITE_Z = 0.1034

_ARM_KP = (1500, 1500, 1200, 1200, 600, 500, 400)
_ARM_KV = (120, 120, 90, 90, 30, 25, 15)
# Joint ranges of this chain (its joint 6 zero differs from the DH convention by about pi/2).
_RANGES = ((-2.8973, 2.8973), (-1.7628, 1.7628), (-2.8973, 2.8973), (-3.0718, -0.4),
           (-2.8973, 2.8973), (-1.6573, 2.1127), (-2.8973, 2.8973))
_MASSES = (2.7063, 2.73046, 2.04104, 2.08129, 3.00049, 1.3235, 0.2)

WHITE = (0.92, 0.92, 0.90, 1.0)
DARK = (0.18, 0.18, 0.20, 1.0)


VISUAL_FACES = 400
_DECIMATED: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}


def read_stl(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (V, 3) float32 and faces (F, 3) int32 of a binary STL file (duplicates merged)."""
    raw = path.read_bytes()
    n = int(np.frombuffer(raw, np.uint32, 1, 80)[0])
    rec = np.frombuffer(raw, np.dtype([("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")]), n, 84)
    verts, inverse = np.unique(rec["v"].reshape(-1, 3), axis=0, return_inverse=True)
    return verts.astype(np.float32), inverse.reshape(-1, 3).astype(np.int32)


def decimated_mesh(path: Path, faces: int = VISUAL_FACES) -> tuple[np.ndarray, np.ndarray]:
    """The mesh at ``path`` simplified to about ``faces`` triangles (computed once per process)."""
    key = (str(path), faces)
    if key not in _DECIMATED:
        import fast_simplification

        v, f = read_stl(path)
        if len(f) > faces:
            v, f = fast_simplification.simplify(v, f, target_reduction=1.0 - faces / len(f))
        _DECIMATED[key] = (np.asarray(v, np.float32), np.asarray(f, np.int32))
    return _DECIMATED[key]


def mesh_dir() -> Path:
    """Directory of the Panda meshes shipped inside gymnasium-robotics."""
    import importlib.util

    spec = importlib.util.find_spec("gymnasium_robotics")
    if spec is None or spec.origin is None:
        raise ImportError("the Panda meshes come with 'gymnasium-robotics': pip install gymnasium-robotics==1.4.2")
    return Path(spec.origin).parent / "envs/assets/kitchen_franka/franka_assets/meshes"


def add_panda(spec: mujoco.MjSpec, robot_contype: int, robot_conaffinity: int) -> None:
    """Add the arm (bodies ``link0``..``link7``, ``hand``, fingers), actuators and the grasp site.

    Names: joints ``joint1``..``joint7``, ``finger_left``, ``finger_right``; actuators ``act1``..
    ``act7``, ``act_finger_left``, ``act_finger_right``; site ``grasp``; camera ``wrist``.
    """
    md = mesh_dir()
    mats = {
        "panda_white": spec.add_material(name="panda_white", rgba=WHITE, specular=0.5, shininess=0.5),
        "panda_dark": spec.add_material(name="panda_dark", rgba=DARK, specular=0.3, shininess=0.3),
    }
    del mats
    for name in [f"link{i}" for i in range(8)] + ["hand", "finger"]:
        v, f = decimated_mesh(md / f"visual/{name}.stl")
        mesh = spec.add_mesh(name=name)
        mesh.uservert = v.flatten().tolist()
        mesh.userface = f.flatten().tolist()

    def vis(body: mujoco.MjsBody, mesh: str, mat: str, **kw: object) -> None:
        body.add_geom(type=mujoco.mjtGeom.mjGEOM_MESH, meshname=mesh, material=mat, contype=0, conaffinity=0,
                      group=1, mass=0, **kw)

    base = spec.worldbody.add_body(name="link0", pos=[0, 0, 0])
    vis(base, "link0", "panda_white")
    frames = [  # (pos, quat or None, euler or None) of link i+1 in link i, from the Panda model
        ([0, 0, 0.333], None, None),
        ([0, 0, 0], [0.707107, -0.707107, 0, 0], None),
        ([0, -0.316, 0], [0.707107, 0.707107, 0, 0], None),
        ([0.0825, 0, 0], [0.707107, 0.707107, 0, 0], None),
        ([-0.0825, 0.384, 0], [0.707107, -0.707107, 0, 0], None),
        ([0, 0, 0], None, [1.57, 0, 1.57]),
        ([0.088, 0, 0], None, [1.57, 0, 0.7854]),
    ]
    parent = base
    for i, (pos, quat, euler) in enumerate(frames):
        if euler is not None:  # MuJoCo's default intrinsic x-y-z Euler sequence
            quat = np.zeros(4)
            mujoco.mju_euler2Quat(quat, np.array(euler, dtype=float), "xyz")
        body = parent.add_body(name=f"link{i + 1}", gravcomp=1, pos=pos, quat=quat)
        body.add_joint(name=f"joint{i + 1}", axis=[0, 0, 1], range=_RANGES[i], armature=0.1, damping=1.0)
        body.mass = _MASSES[i]
        body.explicitinertial = True
        body.inertia = [0.01, 0.01, 0.01]
        vis(body, f"link{i + 1}", "panda_dark" if i + 1 == 7 else "panda_white")
        parent = body

    hand = parent.add_body(name="hand", pos=[0, 0, 0.107], quat=[0.92388, 0, 0, -0.382683], gravcomp=1)
    hand.mass = 0.81909
    hand.explicitinertial = True
    hand.inertia = [0.002, 0.002, 0.001]
    vis(hand, "hand", "panda_white")
    # Collision proxy of the hand body (a box around the mesh).
    hand.add_geom(type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.03, 0.1, 0.025], pos=[0, 0, 0.024],
                  contype=robot_contype, conaffinity=robot_conaffinity, group=3, rgba=[1, 0, 0, 0.3])
    hand.add_site(name="grasp", pos=[0, 0, GRASP_SITE_Z], size=[0.005, 0, 0], group=4)
    # Wrist camera: on the hand, looking along the gripper axis past the fingers.
    hand.add_camera(name="wrist", pos=[0.065, 0, 0.03], xyaxes=[0, -1, 0, -0.95, 0, -0.3], fovy=70)

    for side, sign in (("left", 1.0), ("right", -1.0)):
        f = hand.add_body(name=f"finger_{side}", pos=[0, 0, 0.0584], gravcomp=1)
        f.mass = 0.09
        f.explicitinertial = True
        f.inertia = [2e-5, 2e-5, 1e-5]
        f.add_joint(name=f"finger_{side}", type=mujoco.mjtJoint.mjJNT_SLIDE, axis=[0, sign, 0],
                    range=[0, FINGER_OPEN_MAX_M], damping=12.0, armature=0.02)
        if sign > 0:
            vis(f, "finger", "panda_dark")
        else:
            vis(f, "finger", "panda_dark", quat=[0, 0, 0, 1])
        # Pad: the part that touches a stone (inner face at 1 mm from the closed centre plane).
        f.add_geom(name=f"pad_{side}", type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.009, 0.004, 0.011],
                   pos=[0, sign * 0.005, 0.045], contype=robot_contype, conaffinity=robot_conaffinity,
                   group=3, friction=[1.5, 0.02, 0.002], condim=4, solref=[0.004, 1],
                   solimp=[0.95, 0.99, 0.001, 0.5, 2],
                   rgba=[0, 1, 0, 0.3])
        # Rest of the finger (above the pad) so the finger cannot pass through stones.
        f.add_geom(type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.009, 0.006, 0.012], pos=[0, sign * 0.009, 0.014],
                   contype=robot_contype, conaffinity=robot_conaffinity, group=3, rgba=[0, 1, 0, 0.3])

    for i in range(N_ARM_JOINTS):
        a = spec.add_actuator(name=f"act{i + 1}", target=f"joint{i + 1}", trntype=mujoco.mjtTrn.mjTRN_JOINT)
        a.set_to_position(kp=_ARM_KP[i], kv=_ARM_KV[i])
        a.ctrlrange = _RANGES[i]
        a.ctrllimited = True
        a.forcerange = [-87, 87] if i < 4 else [-12, 12]
        a.forcelimited = True
    for side in ("left", "right"):
        a = spec.add_actuator(name=f"act_finger_{side}", target=f"finger_{side}", trntype=mujoco.mjtTrn.mjTRN_JOINT)
        a.set_to_position(kp=400, kv=10)
        a.ctrlrange = [0, FINGER_OPEN_MAX_M]
        a.ctrllimited = True
        a.forcerange = [-20, 20]
        a.forcelimited = True
