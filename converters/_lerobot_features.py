"""Presets and features of the LeRobot export (converters/lerobot.py): which source becomes which
LeRobot key, the ``features`` of ``meta/info.json``, the Arrow schema of the frame parquet files,
our per-episode metadata columns, and the 8-D state.

Shared by both format versions (``_lerobot_v30.py``, ``_lerobot_v21.py``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from bomb_data.errors import ExportError

# The 8-D state of openpi's LIBERO recipe (and our lerobot preset): [x, y, z, rx, ry, rz, finger_left,
# finger_right] (STATE_NAMES), the one definition the environment also observes (bomb_data.rotations).
from bomb_data.rotations import quat_wxyz_to_axis_angle  # noqa: F401  (re-exported for tests and users)
from bomb_data.rotations import state8 as libero_state  # noqa: F401
from bomb_data.schema import CAMERAS, FEATURES_BY_KEY

#: Feature names of each preset: our source → the LeRobot key. Sources: the two cameras, the 8-D
#: state (:func:`libero_state`) and the canonical 7-D action.
PRESETS: dict[str, dict[str, str]] = {
    "lerobot": {"agentview": "observation.images.agentview", "wrist": "observation.images.wrist",
                "state": "observation.state", "action": "action"},
    "openpi": {"agentview": "image", "wrist": "wrist_image", "state": "state", "action": "actions"},
}
SOURCES = (*CAMERAS, "state", "action")

STATE_NAMES = ("eef_x", "eef_y", "eef_z", "eef_rx", "eef_ry", "eef_rz", "finger_left", "finger_right")
ACTION_NAMES = FEATURES_BY_KEY["action"].names

DEFAULT_FEATURES: dict[str, dict[str, Any]] = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}


# -------------------------------------------------------------------------------------- options
_KEY_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")


def resolve_preset(preset: str | Mapping[str, str] | Path | None, version: str) -> dict[str, str]:
    """The source → key mapping of ``preset``: a name in PRESETS, a mapping, or a JSON/YAML file.

    A mapping may override part of the default preset of ``version``; unknown sources, empty or
    duplicate keys raise ExportError.
    """
    base = PRESETS["lerobot" if version == "v3.0" else "openpi"]
    if preset is None:
        return dict(base)
    if isinstance(preset, str) and not preset.lower().endswith((".json", ".yaml", ".yml")):
        if preset not in PRESETS:
            raise ExportError(f"unknown lerobot preset {preset!r}; expected one of {sorted(PRESETS)} "
                              "or a mapping / .json / .yaml file of {source: key}")
        return dict(PRESETS[preset])
    if isinstance(preset, (str, Path)):
        p = Path(preset)
        if not p.is_file():
            raise ExportError(f"lerobot preset file {p} does not exist")
        import yaml

        from bomb_data._yaml import MAX_YAML_BYTES, parse_yaml

        try:
            if p.stat().st_size > MAX_YAML_BYTES:
                raise ValueError(f"{p.stat().st_size} bytes, more than the {MAX_YAML_BYTES} a preset may have")
            text = p.read_text(encoding="utf-8")
            loaded = json.loads(text) if p.suffix.lower() == ".json" else parse_yaml(text)
        except RecursionError:
            raise ExportError(f"lerobot preset file {p} cannot be read: nested too deeply") from None
        except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ExportError(f"lerobot preset file {p} cannot be read: {reason}") from None
        if not isinstance(loaded, dict):
            raise ExportError(f"lerobot preset file {p} must hold a mapping of source -> key")
        preset = loaded
    unknown = sorted(set(map(str, preset)) - set(SOURCES))
    if unknown:
        raise ExportError(f"lerobot preset has unknown key(s) {unknown}; expected keys among {list(SOURCES)}")
    # a feature key names files and directories (videos/<key>/...): plain dotted names only
    bad = [v for v in preset.values() if not isinstance(v, str) or not _KEY_RE.fullmatch(v) or ".." in v]
    if bad:
        raise ExportError(f"lerobot preset maps to invalid feature key(s) {bad}: a key is letters, digits, '_', "
                          "'-' and single dots (e.g. observation.images.front)")
    out = {**base, **{k: str(v) for k, v in preset.items()}}
    keys = list(out.values())
    if any(not k for k in keys) or len(set(keys)) != len(keys):
        raise ExportError(f"lerobot preset maps to empty or duplicate feature keys: {out}")
    clash = sorted(set(keys) & set(DEFAULT_FEATURES))
    if clash:
        raise ExportError(f"lerobot preset uses reserved feature key(s) {clash}")
    return out


# ------------------------------------------------------------------------------------- features
def build_features(keys: Mapping[str, str], hw: tuple[int, int], video: bool, vector_dtype: str = "float32",
                   ) -> dict[str, dict[str, Any]]:
    """The LeRobot ``features`` of an export (video ``info`` blocks are added once encoded)."""
    feats: dict[str, dict[str, Any]] = {}
    for cam in CAMERAS:
        feats[keys[cam]] = {"dtype": "video" if video else "image", "shape": [hw[0], hw[1], 3],
                            "names": ["height", "width", "channels" if video else "channel"]}
    feats[keys["state"]] = {"dtype": vector_dtype, "shape": [len(STATE_NAMES)], "names": list(STATE_NAMES)}
    feats[keys["action"]] = {"dtype": vector_dtype, "shape": [len(ACTION_NAMES)], "names": list(ACTION_NAMES)}
    feats.update({k: dict(v) for k, v in DEFAULT_FEATURES.items()})
    return feats


def _arrow_type(ft: Mapping[str, Any]) -> pa.DataType:
    if ft["dtype"] == "image":
        return pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    base = pa.from_numpy_dtype(np.dtype(ft["dtype"]))
    return base if list(ft["shape"]) == [1] else pa.list_(base, int(ft["shape"][0]))


def _hf_feature(ft: Mapping[str, Any]) -> dict[str, Any]:
    """The ``datasets`` feature JSON lerobot's files carry (``Sequence`` is read by datasets 2 to 4)."""
    if ft["dtype"] == "image":
        return {"_type": "Image"}
    value = {"dtype": ft["dtype"], "_type": "Value"}
    if list(ft["shape"]) == [1]:
        return value
    return {"feature": value, "length": int(ft["shape"][0]), "_type": "Sequence"}


def data_schema(features: Mapping[str, Mapping[str, Any]]) -> pa.Schema:
    """Arrow schema of the frame parquet files, with the Hugging Face feature metadata."""
    cols = {k: ft for k, ft in features.items() if ft["dtype"] != "video"}
    hf = {"info": {"features": {k: _hf_feature(ft) for k, ft in cols.items()}}}
    return pa.schema([(k, _arrow_type(ft)) for k, ft in cols.items()],
                     metadata={"huggingface": json.dumps(hf)})


# -------------------------------------------------------------------------------- episode extras
def episode_extras(meta: Mapping[str, Any], store_index: int) -> dict[str, Any]:
    """Our per-episode metadata carried beside lerobot's columns (prefix ``bomb_data/`` in v3.0)."""
    return {
        "store_index": int(store_index),
        "source_episode_index": int(meta["episode_index"]),
        "seed": int(meta["seed"]),
        "split": str(meta["split"]),
        "cell_id": str(meta["cell_id"]),
        "params": json.dumps(meta.get("params", {}), sort_keys=True),
        "instruction": str(meta["instruction"]),
        "convention": str(meta.get("convention", "")),
        "target": [int(x) for x in meta["target"]],
        "success": bool(meta["success"]),
        "failure_reason": meta.get("failure_reason"),
        "placement_error_m": float(meta.get("placement_error_m") or float("nan")),
    } | ({"segment": json.dumps(meta["segment"])} if "segment" in meta else {})  # --segment-subtasks


EXTRA_TYPES: dict[str, pa.DataType] = {
    "store_index": pa.int64(), "source_episode_index": pa.int64(), "seed": pa.int64(), "split": pa.string(),
    "cell_id": pa.string(), "params": pa.string(), "instruction": pa.string(), "convention": pa.string(),
    "target": pa.list_(pa.int64()), "success": pa.bool_(), "failure_reason": pa.string(),
    "placement_error_m": pa.float64(), "segment": pa.string(),
}


def column(values: Any, typ: pa.DataType) -> pa.Array:
    """One column of a frame table as the Arrow array of type ``typ``."""
    if pa.types.is_fixed_size_list(typ):
        arr = np.ascontiguousarray(values)
        flat = pa.array(arr.reshape(-1), type=typ.value_type)
        return pa.FixedSizeListArray.from_arrays(flat, typ.list_size)
    return pa.array(values, type=typ)
