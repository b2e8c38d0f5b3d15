"""HDF5 exports: robomimic/LIBERO (one file), ACT/ALOHA and RoboTwin 2.0 (one file per episode).

``bomb-data export --format hdf5 [--layout robomimic|aloha|robotwin]``; the layouts, keys and
mappings are documented in docs/formats/hdf5.md. Summary:

* ``robomimic`` (default): ``OUT/bomb_go.hdf5`` (``OUT`` is a directory; an ``OUT`` ending in
  ``.hdf5``/``.h5`` is taken as the file itself) with ``data/demo_N/{actions, states, rewards, dones,
  obs/<LIBERO keys>}``, ``data`` attributes ``total`` and ``env_args``, per-demo ``num_samples`` and
  the episode metadata, and filter keys ``mask/train``, ``mask/valid`` (and ``mask/heldout``).
* ``aloha``: ``OUT/episode_N.hdf5`` as ACT's ``EpisodicDataset`` reads them (joint-space action from
  the stored joint targets, 7 joints + normalised gripper), padded to one common length (no padding
  when the store was generated with ``generate.fixed_horizon``), and ``OUT/act_task_config.json``.
* ``robotwin``: ``OUT/data/episodeN.hdf5`` + ``OUT/instructions/episodeN.json`` in the layout of the
  released RoboTwin 2.0 data (``joint_action``, ``endpose``, ``observation/<camera>/rgb`` JPEG bytes),
  the single Franka mapped to the right arm.

Writers stream episode by episode: worker processes read, decode, resize and (for gzip) compress
one episode each, with a bounded number in flight; the single robomimic file is written by this
process, per-episode files by the workers themselves. Outputs appear atomically (temporary name,
then rename). ``read_robomimic_demo`` returns what a replay of one demo needs.
"""

from __future__ import annotations

import io
import json
import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bomb_data.errors import ExportError
from bomb_data.sequence.steps import is_sequence, step_instructions

from . import holds
from ._hdf5_common import (
    H5Writer,
    gripper_command01,
    gripper_open01,
    meta_attrs,
    ordered_map,
    provenance,
    quat_to_axis_angle,
    tree_bytes,
)
from .exporter import WORKER, Exporter, init_worker
from .frames import resize_frames

log = logging.getLogger(__name__)

LAYOUTS = ("robomimic", "aloha", "robotwin")
COMPRESSIONS = ("gzip", "lzf")
#: Chosen by measurement (benchmarks/bench_export_hdf5.py, docs/formats/hdf5.md): gzip level 4,
#: compressed in the worker processes (parallel), against lzf, which only h5py can write (serial).
DEFAULT_COMPRESSION = "gzip"
GZIP_LEVEL = 4
ROBOMIMIC_FILE = "bomb_go.hdf5"
ENV_ID = "bomb_data/GoPlace-v0"  # the Gymnasium id bomb_data.env registers (not imported: no mujoco here)
#: LIBERO observation key -> store camera.
ROBOMIMIC_CAMERAS = {"agentview_rgb": "agentview", "eye_in_hand_rgb": "wrist"}
#: RoboTwin camera -> store camera (the Franka's wrist camera stands in for the right-arm camera).
ROBOTWIN_CAMERAS = {"head_camera": "agentview", "right_camera": "wrist"}
JPEG_QUALITY = 95



class _H5Exporter(Exporter):
    """What the three layouts share: options, worker start, summary (each layout: ``what``, ``write``)."""

    format = "hdf5"
    layout: str = ""

    def __init__(self, *args: Any, compression: str = DEFAULT_COMPRESSION, **kw: Any):
        super().__init__(*args, **kw)
        self.compression = compression

    def check_options(self) -> None:
        if self.compression not in COMPRESSIONS:
            raise ExportError(f"unknown hdf5 compression {self.compression!r}; "
                              f"expected one of {', '.join(COMPRESSIONS)}")

    @property
    def opts(self) -> dict[str, Any]:
        """The options each worker reads (``WORKER["opts"]``)."""
        return {"image_size": self.image_size, "compression": self.compression, "fps": self.store.fps}

    def map_episodes(self, fn: Callable[[Any], dict[str, Any]], jobs: list[Any]) -> Any:
        """``fn`` over ``jobs`` in order, in the workers (:func:`ordered_map`)."""
        return ordered_map(fn, jobs, max(1, int(self.workers)), _init_worker, (self.store.handle, self.opts))

    def summarize(self, written: dict[str, Any]) -> dict[str, Any]:
        final, frames, dt = self.final, written["frames"], self.seconds
        size = tree_bytes(final)
        log.info("hdf5 %s export: %d episodes, %d frames -> %s (%.1f s)", self.layout, len(self.indices), frames,
                 final, dt)
        return {"format": "hdf5", "layout": self.layout, "output": str(final), "episodes": len(self.indices),
                "frames": frames, "bytes": size, "bytes_per_frame": size / max(frames, 1), "seconds": round(dt, 3),
                "frames_per_second": frames / dt if dt > 0 else None, "compression": self.compression,
                "image_size": list(self.hw), "workers": self.workers}


def _init_worker(store_handle: str, opts: dict[str, Any]) -> None:
    init_worker(store_handle, opts=opts)


# ============================================================================================ export
def export(store_path: Path, out: Path, *, overwrite: bool = False, workers: int = 1,
           progress: Callable[[int], None] | None = None, image_size: int | None = None,
           include_failures: bool = False, layout: str = "robomimic",
           compression: str = DEFAULT_COMPRESSION) -> dict[str, Any]:
    """Export the store at ``store_path`` to HDF5 in ``layout``.

    Args:
        store_path: the canonical store.
        out: output directory (robomimic: directory that receives ``bomb_go.hdf5``, or a path ending
            in ``.hdf5``/``.h5``).
        overwrite: replace an existing output (otherwise ExportError).
        workers: processes that read, decode, resize and compress episodes.
        progress: called with the number of frames just written.
        image_size: resize images to ``image_size`` x ``image_size`` (None: as stored).
        include_failures: also export episodes whose ``success`` is false.
        layout: ``robomimic``, ``aloha`` or ``robotwin``.
        compression: ``gzip`` (level 4) or ``lzf`` for the chunked datasets.

    Returns:
        JSON-serialisable summary: layout, output path, episodes, frames, bytes, seconds, frames/s.
    """
    if layout not in LAYOUTS:
        raise ExportError(f"unknown hdf5 layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    cls = {"robomimic": RobomimicExporter, "aloha": AlohaExporter, "robotwin": RobotwinExporter}[layout]
    return cls(store_path, out, overwrite=overwrite, workers=workers, progress=progress, image_size=image_size,
               include_failures=include_failures, compression=compression).run()


def _h5py():
    try:
        import h5py
    except ImportError as exc:  # core dependency, but say what to do if a slim install lacks it
        raise ExportError("the hdf5 export needs h5py: `pip install h5py`") from exc
    return h5py


def _compress_kw(compression: str, shuffle: bool) -> dict[str, Any]:
    if compression == "gzip":
        return {"compression": "gzip", "compression_opts": GZIP_LEVEL, "shuffle": shuffle}
    return {"compression": "lzf", "shuffle": shuffle}


def _write_lowdim(group: Any, name: str, arr: NDArray[Any], compression: str) -> None:
    """A small per-step array as one chunk (the whole episode), compressed, float arrays shuffled."""
    arr = np.ascontiguousarray(arr)
    group.create_dataset(name, data=arr, chunks=arr.shape if arr.size else None,
                         **_compress_kw(compression, shuffle=arr.dtype.kind == "f" and arr.ndim > 0))


def _images_payload(frames: NDArray[np.uint8], compression: str) -> dict[str, Any]:
    """Frames for an image dataset chunked one frame per chunk; gzip chunks compressed here (in a worker)."""
    if compression == "gzip":
        return {"shape": frames.shape, "chunks": [zlib.compress(f.tobytes(), GZIP_LEVEL) for f in frames]}
    return {"shape": frames.shape, "array": frames}


def _write_images(group: Any, name: str, payload: dict[str, Any], compression: str) -> None:
    shape = tuple(payload["shape"])
    chunks = (1, *shape[1:])
    if "array" in payload:
        group.create_dataset(name, data=payload["array"], chunks=chunks, **_compress_kw(compression, False))
        return
    # Chunks were deflated by the workers: write them as they are (h5py's gzip filter is a zlib stream).
    ds = group.create_dataset(name, shape=shape, dtype=np.uint8, chunks=chunks, **_compress_kw("gzip", False))
    for t, blob in enumerate(payload["chunks"]):
        ds.id.write_direct_chunk((t, 0, 0, 0), blob)


# ========================================================================================= robomimic
def _robomimic_episode(i: int) -> dict[str, Any]:
    """Worker: one episode's robomimic/LIBERO arrays (images possibly pre-compressed)."""
    store, o = WORKER["store"], WORKER["opts"]
    ep = store.episode(i)
    ee_pos = np.asarray(ep["eef_pos"], dtype=np.float32)
    ee_ori = quat_to_axis_angle(ep["eef_quat"])
    dones = np.zeros(ep.length, dtype=np.uint8)
    dones[-1] = 1
    return {
        "index": i,
        "length": ep.length,
        "meta": ep.meta,
        "data": {"actions": ep["action"], "states": ep.mj_state, "rewards": ep["reward"], "dones": dones},
        "obs": {"ee_pos": ee_pos, "ee_ori": ee_ori, "ee_states": np.concatenate([ee_pos, ee_ori], axis=1),
                "gripper_states": ep["gripper_qpos"], "joint_states": ep["joint_pos"]},
        "images": {key: _images_payload(resize_frames(ep.images(cam), o["image_size"]), o["compression"])
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
        with _h5py().File(p, "r") as f:
            return "bomb_data" in f.attrs
    except Exception:  # not HDF5 (h5py checks the signature), unreadable or truncated: not ours  # noqa: BLE001
        return False


class RobomimicExporter(_H5Exporter):
    """``OUT/bomb_go.hdf5`` (or ``OUT`` itself when it ends in .hdf5/.h5): robomimic/LIBERO."""

    layout = "robomimic"
    what = "a robomimic HDF5 file from bomb-data"
    writes_file = True

    def target(self) -> Path:
        return _robomimic_target(self.out)

    def is_ours(self, path: Path) -> bool:
        return _is_our_hdf5(path)

    def write(self, tmp: Path) -> dict[str, Any]:
        h5py = _h5py()  # h5py is installed, or one line saying how to get it
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
                    _write_lowdim(g, k, np.asarray(v), comp)
                obs = g.create_group("obs")
                for k, v in ep["obs"].items():
                    _write_lowdim(obs, k, np.asarray(v, dtype=np.float32), comp)
                for k, payload in ep["images"].items():
                    _write_images(obs, k, payload, comp)
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


# ============================================================================================ aloha
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
    _h5py()  # h5py is installed, or one line saying how to get it
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
        _write_lowdim(obs, "qpos", _pad(a["qpos"], L), comp)
        _write_lowdim(obs, "qvel", _pad(a["qvel"], L, zero=True), comp)
        imgs = obs.create_group("images")
        for cam in ("agentview", "wrist"):
            frames = _pad(resize_frames(ep.images(cam), o["image_size"]), L)
            _write_images(imgs, cam, _images_payload(frames, comp), comp)
        _write_lowdim(f, "action", _pad(a["action"], L), comp)
        is_pad = np.zeros(L, dtype=bool)
        is_pad[T:] = True
        f.create_dataset("is_pad", data=is_pad)
    return {"length": T}


def act_chunk_size(fps: float, episode_len: int) -> int:
    """The chunk size to train ACT with: 2 s of actions (ACT's 100 steps at ALOHA's 50 Hz), at most
    ``episode_len`` (ACT pads every sampled chunk to the file's length, so a larger one cannot work)."""
    return max(1, min(round(2.0 * fps), episode_len))


class AlohaExporter(_H5Exporter):
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
                "episode_len": L, "camera_names": ["agentview", "wrist"], "state_dim": 8,
                "chunk_size": act_chunk_size(opts["fps"], L), "max_chunk_size": L, "fps": opts["fps"],
                "splits": splits, "padded_steps": padded,
                "fixed_horizon": horizons.pop() if len(horizons) == 1 else None, "image_shape": [H, W, 3],
                "qpos": "7 joint positions (rad) + gripper opening (0 closed .. 1 open)",
                "action": "7 joint position targets (rad) + gripper command (0 close .. 1 open)",
                "bomb_data": provenance(store)}
        (tmp / "act_task_config.json").write_text(json.dumps(task, indent=2), encoding="utf-8")
        return {"frames": total}


# ========================================================================================= robotwin
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
    _h5py()  # h5py is installed, or one line saying how to get it
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
    instr = {"seen": [ep.meta["instruction"]], "unseen": []}
    (root / "instructions" / f"episode{n}.json").write_text(json.dumps(instr, indent=2), encoding="utf-8")
    return {"length": ep.length}


class RobotwinExporter(_H5Exporter):
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


# ============================================================================================ replay
@dataclass(frozen=True)
class RobomimicDemo:
    """What a replay of one demo of a robomimic export needs.

    Attributes:
        demo: the demo's name (``demo_N``).
        states: (T, S) float64 MuJoCo states (mjSTATE_INTEGRATION) before each step's action.
        actions: (T, 7) float32 canonical actions.
        env_args: the file's ``data`` attribute ``env_args`` (parsed JSON).
        meta: the episode's metadata (schema.EPISODE_FIELDS), from the demo's ``meta`` attribute.
    """

    demo: str
    states: NDArray[np.float64]
    actions: NDArray[np.float32]
    env_args: dict[str, Any]
    meta: dict[str, Any]

    @property
    def target(self) -> tuple[int, int]:
        """0-based (row, col) of the target intersection."""
        r, c = self.meta["target"]
        return int(r), int(c)

    @property
    def params(self) -> dict[str, Any]:
        """The episode's perturbation parameters (``EpisodeParams`` as a dict)."""
        return self.meta.get("params", {})


def robomimic_file(path: Path) -> Path:
    """The HDF5 file of a robomimic export given the export directory or the file itself."""
    path = Path(path)
    f = path / ROBOMIMIC_FILE if path.is_dir() else path
    if not f.is_file():
        raise ExportError(f"no robomimic export at {path} (expected a file or a directory holding {ROBOMIMIC_FILE})")
    return f


def list_robomimic_demos(path: Path, filter_key: str | None = None) -> list[str]:
    """Names of the demos of a robomimic export, in numeric order (optionally those of ``mask/<filter_key>``)."""
    h5py = _h5py()
    with h5py.File(robomimic_file(path), "r") as f:
        if filter_key is not None:
            if f"mask/{filter_key}" not in f:
                raise ExportError(f"robomimic export has no filter key {filter_key!r}; it has {sorted(f['mask'])}")
            names = [x.decode() for x in f[f"mask/{filter_key}"][()]]
        else:
            names = list(f["data"].keys())
    return sorted(names, key=lambda s: int(s.split("_")[-1]))


def read_robomimic_demo(path: Path, demo: int | str = 0) -> RobomimicDemo:
    """Read what replay needs from one demo of a robomimic export.

    Args:
        path: the export directory or its ``bomb_go.hdf5``.
        demo: ``demo_N`` or N.

    Returns:
        RobomimicDemo with states (T, S) float64, actions (T, 7) float32, env_args and metadata.
    """
    h5py = _h5py()
    name = demo if isinstance(demo, str) else f"demo_{int(demo)}"
    with h5py.File(robomimic_file(path), "r") as f:
        if f"data/{name}" not in f:
            raise ExportError(f"robomimic export {path} has no demo {name!r} ({len(f['data'])} demos)")
        g = f[f"data/{name}"]
        return RobomimicDemo(demo=name, states=g["states"][()].astype(np.float64), actions=g["actions"][()],
                             env_args=json.loads(f["data"].attrs["env_args"]), meta=json.loads(g.attrs["meta"]))
