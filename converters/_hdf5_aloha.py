"""The ACT/ALOHA layout of the HDF5 export (``--layout aloha``; docs/formats/hdf5.md).

``OUT/episode_N.hdf5`` as ACT's ``EpisodicDataset`` reads them (joint-space action from the stored
joint targets, 7 joints + normalised gripper), padded to one common length (no padding when the
store was generated with ``generate.fixed_horizon``), and ``OUT/act_task_config.json``. Each worker
process writes its episodes' files.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bomb_data.schema import CAMERAS

from . import holds
from ._hdf5_common import (
    H5Exporter,
    H5Writer,
    gripper_command01,
    gripper_open01,
    h5py_module,
    images_payload,
    meta_attrs,
    provenance,
    write_images,
    write_lowdim,
)
from ._sequence_layouts import carries_subtasks, step_language, write_step_datasets, yay_segments
from .exporter import WORKER
from .frames import resize_frames

log = logging.getLogger("converters.hdf5")  # the hdf5 exporter's messages, whichever layout

def _aloha_arrays(ep: Any, fps: float) -> dict[str, NDArray[Any]]:
    """ALOHA vectors of one episode (unpadded): qpos, qvel, action, each (T, 8) float32."""
    g = gripper_open01(ep["gripper_qpos"])
    g_vel = (np.gradient(g.astype(np.float64)) * fps if len(g) > 1 else np.zeros_like(g)).astype(np.float32)
    return {
        "qpos": np.concatenate([ep["joint_pos"], g[:, None]], axis=1).astype(np.float32),
        "qvel": np.concatenate([ep["joint_vel"], g_vel[:, None]], axis=1).astype(np.float32),
        "action": np.concatenate([ep["target_joint_pos"], gripper_command01(ep["action"])[:, None]],
                                 axis=1).astype(np.float32),
    }


def _pad(arr: NDArray[Any], length: int, zero: bool = False) -> NDArray[Any]:
    """Pad along time to ``length`` by repeating the last row (or with zeros)."""
    n = length - len(arr)
    if n <= 0:
        return arr
    fill = np.zeros((n, *arr.shape[1:]), arr.dtype) if zero else np.repeat(arr[-1:], n, axis=0)
    return np.concatenate([arr, fill], axis=0)


def _aloha_episode(job: tuple[int, int, str, int]) -> dict[str, Any]:
    """Worker: write ``episode_{n}.hdf5`` for store episode ``i`` into directory ``d``, padded to ``L``."""
    n, i, d, L = job
    h5py_module()  # h5py is installed, or one line saying how to get it
    store, o = WORKER["store"], WORKER["opts"]
    comp = o["compression"]
    ep = store.episode(i)
    T = ep.length
    a = _aloha_arrays(ep, o["fps"])
    path = Path(d) / f"episode_{n}.hdf5"
    with H5Writer(path) as f:
        f.attrs["sim"] = True
        f.attrs["compress"] = False
        f.attrs["episode_len"] = T
        f.attrs["padded_len"] = L
        f.attrs["store_index"] = i
        f.attrs["bomb_data"] = json.dumps(provenance(store))
        for k, v in meta_attrs(ep.meta).items():
            f.attrs[k] = v
        obs = f.create_group("observations")
        write_lowdim(obs, "qpos", _pad(a["qpos"], L), comp)
        write_lowdim(obs, "qvel", _pad(a["qvel"], L, zero=True), comp)
        imgs = obs.create_group("images")
        for cam in CAMERAS:
            frames = _pad(resize_frames(ep.images(cam), o["image_size"]), L)
            write_images(imgs, cam, images_payload(frames, comp), comp)
        write_lowdim(f, "action", _pad(a["action"], L), comp)
        is_pad = np.zeros(L, dtype=bool)
        is_pad[T:] = True
        f.create_dataset("is_pad", data=is_pad)
        if carries_subtasks(store):  # a sequence: per-step instruction and subtask index (_sequence_layouts)
            sub, texts = step_language(ep)
            write_step_datasets(f, sub, texts, L)
            (Path(d) / f"episode_{n}.json").write_text(json.dumps(yay_segments(sub, texts), indent=2))
    return {"length": T}


def act_chunk_size(fps: float, episode_len: int) -> int:
    """The chunk size to train ACT with: 2 s of actions (ACT's 100 steps at ALOHA's 50 Hz), at most
    ``episode_len`` (ACT pads every sampled chunk to the file's length, so a larger one cannot work)."""
    return max(1, min(round(2.0 * fps), episode_len))


class AlohaExporter(H5Exporter):
    """``OUT/episode_N.hdf5`` as ACT's ``EpisodicDataset`` reads them, and ``OUT/act_task_config.json``."""

    layout = "aloha"
    what = "an ACT (aloha) export"

    def is_ours(self, path: Path) -> bool:
        return holds("act_task_config.json")(path)

    def write(self, tmp: Path) -> dict[str, Any]:
        store, indices, out, opts = self.store, self.indices, self.out, self.opts
        lengths = [store.episode(i).length for i in indices]
        L = max(lengths)
        padded = sum(L - T for T in lengths)
        horizons = {store.episodes[i].get("fixed_horizon") for i in indices}
        if padded:
            log.warning("aloha export: episodes have %d to %d steps, so %d of %d steps (%.0f%%) are frozen padding "
                        "that ACT samples and trains on as real; generate with generate.fixed_horizon "
                        "(docs/formats/hdf5.md)",
                        min(lengths), L, padded, L * len(lengths), 100 * padded / (L * len(lengths)))
        splits: dict[str, list[int]] = {"train": [], "val": [], "heldout": []}
        for n, i in enumerate(indices):
            splits.setdefault(store.episodes[i].get("split", "train"), []).append(n)
        total = 0
        jobs = [(n, i, str(tmp), L) for n, i in enumerate(indices)]
        for r in self.map_episodes(_aloha_episode, jobs):
            total += r["length"]
            self.advance(r["length"])
        H, W = self.hw
        # ACT's SIM_TASK_CONFIGS entry (dataset_dir, num_episodes, episode_len, camera_names), the values
        # its command line and model need (task_name, chunk_size, state_dim), and the recorded split
        task = {"task_name": "sim_bomb_go", "dataset_dir": str(out.resolve()), "num_episodes": len(indices),
                "episode_len": L, "camera_names": list(CAMERAS), "state_dim": 8,
                "chunk_size": act_chunk_size(opts["fps"], L), "max_chunk_size": L, "fps": opts["fps"],
                "splits": splits, "padded_steps": padded,
                "fixed_horizon": horizons.pop() if len(horizons) == 1 else None, "image_shape": [H, W, 3],
                "qpos": "7 joint positions (rad) + gripper opening (0 closed .. 1 open)",
                "action": "7 joint position targets (rad) + gripper command (0 close .. 1 open)",
                "bomb_data": provenance(store)}
        (tmp / "act_task_config.json").write_text(json.dumps(task, indent=2), encoding="utf-8")
        return {"frames": total}
