"""The RLDS/TFDS spec of ``bomb_go``: features, splits and the per-episode conversion (no tensorflow).

One declaration serves both writers: the native exporter (``converters.rlds``, TFRecords written
without tensorflow) and the TFDS builder (``builders/bomb_go``), which turns the same
:class:`FeatureSpec` list into ``tfds.features`` and the same :func:`episode_arrays` output into
its examples. Layout and names follow the LIBERO RLDS datasets OpenVLA was finetuned on
(docs/formats/rlds.md).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

DATASET_NAME = "bomb_go"
VERSION = "1.0.0"
RELEASE_NOTES: dict[str, str] = {
    "1.0.0": "Initial release: LIBERO-compatible steps (image, wrist_image, state (8), joint_state (7), "
             "action (7 or BOMB's 4), reward, discount, is_first/is_last/is_terminal, language_instruction) "
             "and per-episode metadata (seed, perturbation cell and parameters, target, convention).",
}
DEFAULT_IMAGE_SIZE = 256
ACTION_SPACES = ("canonical", "bomb4")
CAMERA_KEYS = {"image": "agentview", "wrist_image": "wrist"}

ACTION_DOCS = {
    "canonical": "Delta end-effector action, 7 floats [dx, dy, dz (m), drx, dry, drz (axis-angle, rad), gripper], "
                 "base frame, per 10 Hz control step; gripper -1 open, +1 closed (the LIBERO convention).",
    "bomb4": "BOMB's original 4-D action [dx, dy, dz (m), gripper]: the canonical action's translation and "
             "gripper columns; gripper -1 open, +1 closed.",
}
ACTION_COLUMNS = {"canonical": [0, 1, 2, 3, 4, 5, 6], "bomb4": [0, 1, 2, 6]}


@dataclass(frozen=True)
class FeatureSpec:
    """One leaf feature of the dataset.

    Attributes:
        path: ``/``-joined path in the example (``steps/observation/image``; ``steps/`` entries are per step).
        kind: ``image`` (JPEG bytes), ``tensor`` (fixed shape), ``scalar`` or ``text``.
        dtype: numpy dtype name (``uint8`` for images, ``bool``, ``int64``, ``float32``, ``str`` for text).
        shape: per-step (or per-episode) shape.
        doc: meaning and vector layout.
    """

    path: str
    kind: str
    dtype: str
    shape: tuple[int, ...]
    doc: str

    @property
    def per_step(self) -> bool:
        return self.path.startswith("steps/")


def feature_specs(image_hw: tuple[int, int], action_space: str = "canonical") -> list[FeatureSpec]:
    """All leaf features of ``bomb_go``, in a stable order.

    Args:
        image_hw: (height, width) of both cameras' images in the dataset.
        action_space: ``canonical`` (7-D) or ``bomb4`` (4-D).
    """
    h, w = image_hw
    adim = len(ACTION_COLUMNS[action_space])
    return [
        FeatureSpec("steps/observation/image", "image", "uint8", (h, w, 3),
                    "Third-person (agentview) RGB camera, JPEG, upright."),
        FeatureSpec("steps/observation/wrist_image", "image", "uint8", (h, w, 3), "Wrist camera RGB, JPEG, upright."),
        FeatureSpec("steps/observation/state", "tensor", "float32", (8,),
                    "Robot state, 8 floats: end-effector position [x, y, z] (m, base frame), end-effector "
                    "orientation as axis-angle [rx, ry, rz] (rad; robosuite quat2axisangle branch), finger "
                    "positions [left, right] (m from closed)."),
        FeatureSpec("steps/observation/joint_state", "tensor", "float32", (7,), "Arm joint positions, 7 floats (rad)."),
        FeatureSpec("steps/action", "tensor", "float32", (adim,), ACTION_DOCS[action_space]),
        FeatureSpec("steps/discount", "scalar", "float32", (), "Discount, 1.0 on every step."),
        FeatureSpec("steps/reward", "scalar", "float32", (), "1.0 on the final step of a successful episode, else 0."),
        FeatureSpec("steps/is_first", "scalar", "bool", (), "True on the first step of the episode."),
        FeatureSpec("steps/is_last", "scalar", "bool", (), "True on the last step of the episode."),
        FeatureSpec("steps/is_terminal", "scalar", "bool", (),
                    "True on the last step of a successful episode (task solved); False for truncated ones."),
        FeatureSpec("steps/language_instruction", "text", "str", (), "Language instruction of the episode."),
        FeatureSpec("episode_metadata/file_path", "text", "str", (),
                    "Origin of the episode: <store directory name>/episode_<index>."),
        FeatureSpec("episode_metadata/episode_index", "scalar", "int64", (),
                    "Index k of the episode in the generation run (stable across resumes)."),
        FeatureSpec("episode_metadata/store_index", "scalar", "int64", (), "Position of the episode in the store."),
        FeatureSpec("episode_metadata/seed", "scalar", "int64", (), "Seed of the episode's rollout."),
        FeatureSpec("episode_metadata/split", "text", "str", (), "Split in the store: train | val | heldout."),
        FeatureSpec("episode_metadata/cell_id", "text", "str", (), "Perturbation grid cell id."),
        FeatureSpec("episode_metadata/perturbation_params", "text", "str", (),
                    "Resolved perturbation parameters of the episode, JSON (sorted keys)."),
        FeatureSpec("episode_metadata/target_row", "scalar", "int32", (),
                    "0-based target row (row 0 farthest from the robot, top of the agentview picture)."),
        FeatureSpec("episode_metadata/target_col", "scalar", "int32", (),
                    "0-based target column (column 0 on the left of the agentview picture)."),
        FeatureSpec("episode_metadata/instruction_convention", "text", "str", (),
                    "Coordinate convention of the instruction text: zero_based | one_based | go_letters."),
        FeatureSpec("episode_metadata/board_size", "scalar", "int32", (), "N for an N x N board."),
        FeatureSpec("episode_metadata/stone_color", "text", "str", (), "black | white."),
        FeatureSpec("episode_metadata/success", "scalar", "bool", (), "Whether the placement succeeded."),
        FeatureSpec("episode_metadata/failure_reason", "text", "str", (), "Empty on success, else a short reason."),
        FeatureSpec("episode_metadata/placement_error_m", "scalar", "float32", (),
                    "Distance of the final stone centre to the target intersection, m."),
    ]


def split_name(meta: dict[str, Any]) -> str:
    """TFDS split of an episode: ``train``, ``val``, or one ``heldout_<cell>`` split per held-out cell.

    The cell part is the cell id reduced to ``[A-Za-z0-9_]``; an id longer than 32 characters (grid
    cells name every axis) becomes ``c`` + the first 10 hex digits of its SHA-1, so file names stay
    short. The dataset description maps each held-out split to its cell id.
    """
    split = str(meta["split"])
    if split != "heldout":
        return split
    cell = str(meta.get("cell_id") or "unknown")
    slug = re.sub(r"\W+", "_", cell).strip("_") or "unknown"
    if len(slug) > 32:
        slug = "c" + hashlib.sha1(cell.encode("utf-8")).hexdigest()[:10]
    return f"heldout_{slug}"


# The one state convention of bomb-data (robosuite's quat2axisangle branch), shared with every export.
from bomb_data.rotations import quat_wxyz_to_axis_angle  # noqa: E402
from bomb_data.sequence.steps import step_instructions  # noqa: E402


def episode_metadata(meta: dict[str, Any], store_index: int, store_name: str) -> dict[str, Any]:
    """The ``episode_metadata`` values of one store episode (all scalars or strings)."""
    target = meta.get("target") or [-1, -1]
    k = int(meta["episode_index"])
    return {
        "file_path": f"{store_name}/episode_{k:06d}"  # a segment (--segment-subtasks): and its subtask
        + (f"/subtask_{int(meta['segment']['subtask']):02d}" if "segment" in meta else ""),
        "episode_index": k,
        "store_index": int(store_index),
        "seed": int(meta["seed"]),
        "split": str(meta["split"]),
        "cell_id": str(meta.get("cell_id") or ""),
        "perturbation_params": json.dumps(meta.get("params") or {}, sort_keys=True, default=str),
        "target_row": int(target[0]),
        "target_col": int(target[1]),
        "instruction_convention": str(meta.get("convention") or ""),
        "board_size": int(meta.get("board_size") or 0),
        "stone_color": str(meta.get("stone_color") or ""),
        "success": bool(meta["success"]),
        "failure_reason": str(meta.get("failure_reason") or ""),
        "placement_error_m": float(meta["placement_error_m"]) if meta.get("placement_error_m") is not None
        else float("nan"),
    }


def episode_arrays(ep: Any, *, store_name: str, action_space: str = "canonical",
                   image_size: int | None = None, jpeg_quality: int = 95) -> dict[str, Any]:
    """One store episode as the flat ``{feature path: values}`` mapping of :func:`feature_specs`.

    Per-step entries are arrays with a leading time axis T (images: a list of T JPEG files as bytes);
    ``episode_metadata/*`` entries are Python scalars or strings.

    Args:
        ep: a ``bomb_data.store.Episode``.
        store_name: the store directory's name (for ``file_path``; never the user's full path).
        action_space: ``canonical`` or ``bomb4``.
        image_size: resize both cameras to SIZE x SIZE and re-encode; None keeps the stored JPEG files.
        jpeg_quality: JPEG quality when re-encoding.
    """
    T = ep.length
    action = np.asarray(ep["action"], dtype=np.float32)[:, ACTION_COLUMNS[action_space]]
    state = np.concatenate([
        np.asarray(ep["eef_pos"], dtype=np.float32),
        quat_wxyz_to_axis_angle(ep["eef_quat"]),
        np.asarray(ep["gripper_qpos"], dtype=np.float32),
    ], axis=1)
    reward = np.asarray(ep["reward"], dtype=np.float32).reshape(T)
    is_first = np.zeros(T, dtype=bool)
    is_first[0] = True
    is_last = np.zeros(T, dtype=bool)
    is_last[-1] = True
    is_terminal = is_last & bool(ep.meta["success"])
    out: dict[str, Any] = {}
    for key, cam in CAMERA_KEYS.items():
        out[f"steps/observation/{key}"] = _camera_jpegs(ep, cam, image_size, jpeg_quality)
    out.update({
        "steps/observation/state": state,
        "steps/observation/joint_state": np.asarray(ep["joint_pos"], dtype=np.float32),
        "steps/action": np.ascontiguousarray(action),
        "steps/discount": np.ones(T, dtype=np.float32),
        "steps/reward": reward,
        "steps/is_first": is_first,
        "steps/is_last": is_last,
        "steps/is_terminal": is_terminal,
        "steps/language_instruction": step_instructions(ep),  # a sequence's: the step's subtask
    })
    for k, v in episode_metadata(ep.meta, ep.index, store_name).items():
        out[f"episode_metadata/{k}"] = v
    return out


def _camera_jpegs(ep: Any, camera: str, image_size: int | None, quality: int) -> list[bytes]:
    files = ep.jpeg(camera)
    if image_size is None:
        return files
    import io

    from PIL import Image

    from .frames import resize_frame

    out = []
    for b in files:
        with Image.open(io.BytesIO(b)) as im:
            im = im.convert("RGB")
            if im.size != (image_size, image_size):
                im = Image.fromarray(resize_frame(np.asarray(im), image_size), "RGB")
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=quality)
            out.append(buf.getvalue())
    return out


def plan_splits(store: Any, include_failures: bool = False) -> dict[str, list[int]]:
    """Store indices of the episodes of each TFDS split: ``train``, ``val``, then ``heldout_<cell>`` splits.

    Args:
        store: a ``bomb_data.store.EpisodeStore``.
        include_failures: also take episodes flagged as failed (their ``is_terminal`` stays False).
    """
    groups: dict[str, list[int]] = {}
    for i in store.select(success=None if include_failures else True):
        groups.setdefault(split_name(store.episodes[i]), []).append(i)
    order = {"train": 0, "val": 1}
    return {k: groups[k] for k in sorted(groups, key=lambda s: (order.get(s, 2), s))}


def heldout_cells(store: Any, include_failures: bool = False) -> dict[str, str]:
    """``{held-out split name: cell id}`` of the store's held-out episodes."""
    out = {}
    for i in store.select(success=None if include_failures else True, split="heldout"):
        m = store.episodes[i]
        out[split_name(m)] = str(m.get("cell_id"))
    return dict(sorted(out.items()))


def description_text(store: Any, *, action_space: str, image_hw: tuple[int, int],
                     include_failures: bool = False) -> str:
    """Dataset description recording the store's config hash, versions and the held-out split -> cell map."""
    import bomb_data

    d = store.description
    versions = {k: v for k, v in d.items() if "version" in k and isinstance(v, (str, int, float, dict))}
    prov = {
        "bomb_data_export_version": bomb_data.__version__,
        "store": store.root.name,
        "store_config_hash": d.get("config_hash"),
        "store_versions": versions,
        "control_hz": d.get("control_hz"),
        "action_space": action_space,
        "image_size": list(image_hw),
        "heldout_splits": heldout_cells(store, include_failures),
    } | ({"segment_subtasks": True} if "segmented" in d else {})  # one episode per subtask (store.segments)
    return ("BOMB (BOard Manipulation Benchmark) demonstrations: a Franka Panda places a Go stone on a named "
            "board intersection (MuJoCo). RLDS, LIBERO-compatible layout. Provenance: "
            + json.dumps(prov, sort_keys=True, default=str))
