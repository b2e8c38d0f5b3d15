"""The robomimic/LIBERO layout of the HDF5 export: ``OUT/bomb_go.hdf5`` (``--layout robomimic``, the
default; docs/formats/hdf5.md).

One file: ``data/demo_N/{actions, states, rewards, dones, obs/<LIBERO keys>}``, ``data`` attributes
``total`` and ``env_args``, per-demo ``num_samples`` and the episode metadata, and filter keys
``mask/train``, ``mask/valid`` (and ``mask/heldout``). Worker processes read, resize and compress
one episode each; this process writes the file. Read it back with converters/robomimic_demos.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from bomb_data.errors import ExportError
from bomb_data.rotations import quat_wxyz_to_axis_angle
from bomb_data.schema import ENV_ID
from bomb_data.sequence.steps import is_sequence, step_instructions

from ._hdf5_common import (
    H5Exporter,
    H5Writer,
    h5py_module,
    images_payload,
    meta_attrs,
    provenance,
    write_images,
    write_lowdim,
)
from .exporter import WORKER
from .frames import resize_frames

ROBOMIMIC_FILE = "bomb_go.hdf5"
#: LIBERO observation key -> store camera.
ROBOMIMIC_CAMERAS = {"agentview_rgb": "agentview", "eye_in_hand_rgb": "wrist"}


def _robomimic_episode(i: int) -> dict[str, Any]:
    """Worker: one episode's robomimic/LIBERO arrays (images possibly pre-compressed)."""
    store, o = WORKER["store"], WORKER["opts"]
    ep = store.episode(i)
    ee_pos = np.asarray(ep["eef_pos"], dtype=np.float32)
    ee_ori = quat_wxyz_to_axis_angle(ep["eef_quat"])
    dones = np.zeros(ep.length, dtype=np.uint8)
    dones[-1] = 1
    return {
        "index": i,
        "length": ep.length,
        "meta": ep.meta,
        "data": {"actions": ep["action"], "states": ep.mj_state, "rewards": ep["reward"], "dones": dones},
        "obs": {"ee_pos": ee_pos, "ee_ori": ee_ori, "ee_states": np.concatenate([ee_pos, ee_ori], axis=1),
                "gripper_states": ep["gripper_qpos"], "joint_states": ep["joint_pos"]},
        "images": {key: images_payload(resize_frames(ep.images(cam), o["image_size"]), o["compression"])
                   for key, cam in ROBOMIMIC_CAMERAS.items()},
        # a GoSequence episode: per-step subtask index and instruction (docs/sequences.md)
        "sequence": ({"subtask_index": np.asarray(ep["subtask_index"], dtype=np.int32),
                      "language_instruction": step_instructions(ep)} if is_sequence(ep.meta) else None),
    }


def robomimic_env_args(store: Any) -> dict[str, Any]:
    """robomimic's ``env_args``: how to rebuild the environment the demos were recorded in.

    ``type`` 2 is robomimic's EnvType.GYM_TYPE (a registered Gym(nasium) id); ``env_kwargs["config"]``
    is the store's full resolved configuration: ``GoPlaceEnv(BombConfig(**env_kwargs["config"]))``
    with each demo's ``params`` attribute (the episode's perturbation parameters) restores its scene.
    """
    H, W, _ = store.image_shape
    return {
        "env_name": ENV_ID,
        "type": 2,
        "env_version": store.description.get("versions", {}).get("bomb_data"),
        "env_kwargs": {"config": store.config, "render_images": True},
        "control_hz": store.fps,
        "action_space": "canonical: [dx, dy, dz, drx, dry, drz, gripper], delta EEF (m, axis-angle rad) in the "
                        "robot base frame per control step, gripper -1 open / +1 closed",
        "states": "MuJoCo state vector (mjSTATE_INTEGRATION) before each step's action; restore with "
                  "GoPlaceEnv.set_mj_state after reset(options={'params': ..., 'target': ...})",
        "cameras": {k: {"camera": v, "height": H, "width": W} for k, v in ROBOMIMIC_CAMERAS.items()},
        "bomb_data": provenance(store),
    }


def _robomimic_target(out: Path) -> Path:
    if out.suffix in (".hdf5", ".h5"):
        return out
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file; the robomimic layout writes {ROBOMIMIC_FILE} into the --out "
                          "directory, or to a --out path ending in .hdf5")
    return out / ROBOMIMIC_FILE


def _is_our_hdf5(p: Path) -> bool:
    """``p`` is an HDF5 file this exporter wrote (its root attributes carry our provenance)."""
    try:
        with h5py_module().File(p, "r") as f:
            return "bomb_data" in f.attrs
    except Exception:  # not HDF5 (h5py checks the signature), unreadable or truncated: not ours  # noqa: BLE001
        return False


class RobomimicExporter(H5Exporter):
    """``OUT/bomb_go.hdf5`` (or ``OUT`` itself when it ends in .hdf5/.h5): robomimic/LIBERO."""

    layout = "robomimic"
    what = "a robomimic HDF5 file from bomb-data"
    writes_file = True

    def target(self) -> Path:
        return _robomimic_target(self.out)

    def is_ours(self, path: Path) -> bool:
        return _is_our_hdf5(path)

    def write(self, tmp: Path) -> dict[str, Any]:
        h5py = h5py_module()  # h5py is installed, or one line saying how to get it
        store, indices = self.store, self.indices
        comp = self.compression
        metas = [store.episodes[i] for i in indices]
        instructions = sorted({m["instruction"] for m in metas})
        masks: dict[str, list[str]] = {"train": [], "valid": [], "heldout": []}
        split_to_mask = {"train": "train", "val": "valid", "heldout": "heldout"}
        total = 0
        room = H5Writer(tmp)  # a full disk: one OSError, not an HDF5 crash
        with room as f:
            data = f.create_group("data")
            for n, ep in enumerate(self.map_episodes(_robomimic_episode, indices)):
                name = f"demo_{n}"
                g = data.create_group(name)
                for k, v in ep["data"].items():
                    write_lowdim(g, k, np.asarray(v), comp)
                obs = g.create_group("obs")
                for k, v in ep["obs"].items():
                    write_lowdim(obs, k, np.asarray(v, dtype=np.float32), comp)
                for k, payload in ep["images"].items():
                    write_images(obs, k, payload, comp)
                if ep["sequence"] is not None:  # per-step instruction strings and subtask boundaries
                    g.create_dataset("subtask_index", data=ep["sequence"]["subtask_index"])
                    g.create_dataset("language_instruction", data=ep["sequence"]["language_instruction"],
                                     dtype=h5py.string_dtype("utf-8"))
                    # (subtask_ends, subtasks, subtask_instructions: attributes from the metadata below)
                g.attrs["num_samples"] = ep["length"]
                g.attrs["init_state"] = np.asarray(ep["data"]["states"][0])
                g.attrs["store_index"] = ep["index"]
                for k, v in meta_attrs(ep["meta"]).items():
                    g.attrs[k] = v
                split = ep["meta"].get("split", "train")
                if split not in split_to_mask:
                    raise ExportError(f"episode {ep['index']} has unknown split {split!r}; "
                                      "expected train, val or heldout")
                masks[split_to_mask[split]].append(name)
                total += ep["length"]
                room.check()
                self.advance(ep["length"])
            data.attrs["total"] = total
            data.attrs["num_demos"] = len(indices)
            data.attrs["env_args"] = json.dumps(robomimic_env_args(store))
            # LIBERO-style attributes; images are upright ("opencv"), unlike robosuite's default "opengl".
            data.attrs["env_name"] = ENV_ID
            data.attrs["macros_image_convention"] = "opencv"
            data.attrs["problem_info"] = json.dumps({
                "problem_name": "bomb_go_place", "domain_name": "bomb",
                "language_instruction": instructions[0] if len(instructions) == 1 else "",
                "note": "each demo's own instruction is its 'instruction' attribute"})
            mask = f.create_group("mask")
            for key, names in masks.items():
                if key != "heldout" or names:
                    mask.create_dataset(key, data=np.array(names, dtype="S"))
            f.attrs["bomb_data"] = json.dumps(provenance(store))
            f.attrs["layout"] = "robomimic"
        return {"frames": total}
