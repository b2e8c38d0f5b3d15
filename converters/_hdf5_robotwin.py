"""The RoboTwin 2.0 layout of the HDF5 export (``--layout robotwin``; docs/formats/hdf5.md).

``OUT/data/episodeN.hdf5`` + ``OUT/instructions/episodeN.json`` in the layout of the released
RoboTwin 2.0 data (``joint_action``, ``endpose``, ``observation/<camera>/rgb`` JPEG bytes), the
single Franka mapped to the right arm. Each worker process writes its episodes' files.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import holds
from ._hdf5_common import (
    H5Exporter,
    H5Writer,
    gripper_command01,
    gripper_open01,
    h5py_module,
    meta_attrs,
    provenance,
)
from ._sequence_layouts import carries_subtasks, robotwin_instructions, step_language, write_step_datasets
from .exporter import WORKER
from .frames import resize_frames

#: RoboTwin camera -> store camera (the Franka's wrist camera stands in for the right-arm camera).
ROBOTWIN_CAMERAS = {"head_camera": "agentview", "right_camera": "wrist"}
JPEG_QUALITY = 95


def _jpeg_bgr_convention(frame: NDArray[np.uint8]) -> bytes:
    """JPEG bytes that OpenCV's ``cv2.imdecode`` turns back into this RGB array, as RoboTwin writes them.

    RoboTwin encodes its RGB frames with ``cv2.imencode`` (which takes arrays as BGR), so its readers'
    ``cv2.imdecode`` yields RGB arrays; we store the channel-swapped frame as a standard JPEG to match.
    """
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame[..., ::-1]), "RGB").save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def robotwin_arrays(ep: Any) -> dict[str, NDArray[np.float64]]:
    """RoboTwin vectors of one episode, each (T, k) float64 (single Franka as the right arm).

    ``joint_action`` at frame t is the joint drive target in effect when frame t was observed, as
    RoboTwin records it: the target commanded by step t-1 (frame 0: the measured joint positions);
    the gripper value is 0 = closed .. 1 = open (frame 0: measured opening; then step t-1's command).
    """
    q = np.asarray(ep["joint_pos"], np.float64)
    tq = np.asarray(ep["target_joint_pos"], np.float64)
    arm = np.concatenate([q[:1], tq[:-1]], axis=0)
    g = np.concatenate([gripper_open01(ep["gripper_qpos"][:1]),
                        gripper_command01(ep["action"])[:-1]]).astype(np.float64)
    pose = np.concatenate([ep["eef_pos"], ep["eef_quat"]], axis=1).astype(np.float64)
    return {"right_arm": arm, "right_gripper": g, "vector": np.concatenate([arm, g[:, None]], axis=1),
            "right_endpose": pose}


def _robotwin_episode(job: tuple[int, int, str]) -> dict[str, Any]:
    """Worker: write ``data/episode{n}.hdf5`` and ``instructions/episode{n}.json`` for store episode ``i``."""
    n, i, d = job
    h5py_module()  # h5py is installed, or one line saying how to get it
    store, o = WORKER["store"], WORKER["opts"]
    ep = store.episode(i)
    a = robotwin_arrays(ep)
    root = Path(d)
    with H5Writer(root / "data" / f"episode{n}.hdf5") as f:
        f.attrs["bomb_data"] = json.dumps(provenance(store))
        f.attrs["robotwin_layout"] = "RoboTwin 2.0 collected data (pkl2hdf5, 2025); single arm = right arm"
        f.attrs["store_index"] = i
        for k, v in meta_attrs(ep.meta).items():
            f.attrs[k] = v
        ja = f.create_group("joint_action")
        for k in ("right_arm", "right_gripper", "vector"):
            ja.create_dataset(k, data=a[k])
        endpose = f.create_group("endpose")
        endpose.create_dataset("right_endpose", data=a["right_endpose"])
        endpose.create_dataset("right_gripper", data=a["right_gripper"])
        obs = f.create_group("observation")
        for rt_cam, cam in ROBOTWIN_CAMERAS.items():
            frames = resize_frames(ep.images(cam), o["image_size"])
            blobs = [_jpeg_bgr_convention(fr) for fr in frames]
            width = max(len(b) for b in blobs)
            obs.create_group(rt_cam).create_dataset("rgb", data=np.array(blobs, dtype=f"S{width}"))
        if seq := carries_subtasks(store):  # a sequence: per-step instruction and subtask index (_sequence_layouts)
            sub, texts = step_language(ep)
            write_step_datasets(f, sub, texts, ep.length)
    instr = robotwin_instructions(ep.meta, sub, texts) if seq else {"seen": [ep.meta["instruction"]], "unseen": []}
    (root / "instructions" / f"episode{n}.json").write_text(json.dumps(instr, indent=2), encoding="utf-8")
    return {"length": ep.length}


class RobotwinExporter(H5Exporter):
    """``OUT/data/episodeN.hdf5`` + ``OUT/instructions/episodeN.json``: the RoboTwin 2.0 collected-data layout."""

    layout = "robotwin"
    what = "a RoboTwin export"

    def is_ours(self, path: Path) -> bool:
        return holds("bomb_data_info.json")(path)

    def write(self, tmp: Path) -> dict[str, Any]:
        store, indices = self.store, self.indices
        total = 0
        (tmp / "data").mkdir()
        (tmp / "instructions").mkdir()
        jobs = [(n, i, str(tmp)) for n, i in enumerate(indices)]
        for r in self.map_episodes(_robotwin_episode, jobs):
            total += r["length"]
            self.advance(r["length"])
        info = {"layout": "RoboTwin 2.0 collected-data layout (envs/utils/pkl2hdf5.py, RoboTwin-Platform/RoboTwin "
                          "8187d5b, June 2025), before the August 2026 XPolicyLab re-layout",
                "episodes": len(indices), "fps": store.fps, "arms": {"right": "Franka Panda (7 joints + gripper)"},
                "cameras": ROBOTWIN_CAMERAS, "bomb_data": provenance(store)}
        (tmp / "bomb_data_info.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
        return {"frames": total}
