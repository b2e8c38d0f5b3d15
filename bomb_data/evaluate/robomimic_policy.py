"""``--policy robomimic:CHECKPOINT.pth``: a robomimic (0.3.x) checkpoint, run as robomimic's own rollouts run it.

A checkpoint is the ``.pth`` file robomimic's ``train.py`` writes
(``OUTPUT_DIR/NAME/TIMESTAMP/models/model_epoch_N.pth``). What it expects is read from the file
without torch or robomimic (a restricted unpickler reads ``config``, ``algo_name`` and
``shape_metadata`` and skips the tensors), so the evaluator builds the matching observation and
refuses a mismatch (an observation key bomb-data does not provide, another image size) before any
episode, even in an environment without robomimic; the model itself then runs behind
``bomb-data serve --policy robomimic:CKPT`` in one that has it.

Observation: the keys the checkpoint's config names (``observation.modalities.obs``), which are
the HDF5 export's ``obs/*`` keys (converters/hdf5.py, robomimic layout): images ``agentview_rgb``
(agentview camera) and ``eye_in_hand_rgb`` (wrist), resized (bilinear, as ``bomb-data export
--image-size`` resized them) to the checkpoint's size; low-dim ``ee_pos``, ``ee_ori``, ``ee_states``,
``gripper_states``, ``joint_states`` computed as the export computes them (the adapter's
``robomimic`` preset, ``lowdim_keys``). Per episode ``start_episode()`` (BC-RNN's hidden state, action
sequences), per step the images go through ``ObsUtils.process_obs`` (HWC uint8 -> CHW float in
[0, 1]) as robomimic's environment wrappers do before ``RolloutPolicy``; torch is seeded with the
episode's policy seed.
"""

from __future__ import annotations

import contextlib
import copy
import json
import pickle
import sys
import time
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PolicyError
from .adapt import LOWDIM_DIMS
from .lerobot_policy import CheckpointInfo
from .protocol import EpisodeStart, PolicyFailure

#: Image observation key of the HDF5 export -> the camera bomb-data renders for it.
CAMERA_OF = {"agentview_rgb": "agentview", "eye_in_hand_rgb": "wrist"}


class _Skip:
    """Stands for any class or function the unpickler meets (tensors, storages, arrays): calling it,
    building it or setting its state keeps nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


class _MetaUnpickler(pickle.Unpickler):
    """Reads a ``torch.save`` pickle without torch: plain values and ``OrderedDict`` are built; every
    other object (tensors, storages, numpy arrays of normalisation statistics...) becomes a stand-in
    that holds nothing. Nothing is imported or run."""

    SAFE = {("collections", "OrderedDict"): OrderedDict}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.SAFE:
            return self.SAFE[(module, name)]
        return _Skip

    def persistent_load(self, pid: Any) -> None:
        return None


def _read_meta(path: Path) -> dict[str, Any]:
    with zipfile.ZipFile(path) as z:
        names = [n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(names) != 1:
            raise ValueError("no data.pkl")
        with z.open(names[0]) as f:
            d = _MetaUnpickler(f).load()
    if not isinstance(d, dict):
        raise ValueError("not a dict")
    return d


def read_checkpoint(path: str | Path) -> CheckpointInfo:
    """What the robomimic checkpoint at ``path`` expects (no torch needed). Raises ``PolicyError`` (one line)."""
    p = Path(path).expanduser()
    where = f"policy robomimic:{path}"
    if p.is_dir():
        found = sorted(p.glob("models/*.pth")) or sorted(p.glob("*/models/*.pth")) or sorted(p.glob("*.pth"))
        hint = f", e.g. {found[-1]}" if found else " (OUTPUT_DIR/NAME/TIMESTAMP/models/model_epoch_N.pth)"
        raise PolicyError(f"{where}: a directory; name the .pth file robomimic's train.py wrote{hint}")
    if not p.is_file():
        raise PolicyError(f"{where}: no such file")
    try:
        d = _read_meta(p)
    except Exception as exc:  # zipfile, pickle and the data raise many kinds; none of them is a checkpoint  # noqa: BLE001
        raise PolicyError(f"{where}: not a robomimic checkpoint (not a torch.save file holding robomimic's "
                          f"config and shape_metadata: {type(exc).__name__})") from None
    missing = [k for k in ("model", "config", "algo_name", "shape_metadata") if k not in d]
    if missing:
        raise PolicyError(f"{where}: not a robomimic checkpoint (no {', '.join(missing)}; expected the .pth "
                          "robomimic's train.py writes)")
    try:
        cfg = json.loads(d["config"]) if isinstance(d["config"], str) else dict(d["config"])
        mods = cfg["observation"]["modalities"]
        shapes = {str(k): tuple(int(x) for x in v) for k, v in dict(d["shape_metadata"]["all_shapes"]).items()}
        ac_dim = int(d["shape_metadata"]["ac_dim"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PolicyError(f"{where}: robomimic checkpoint without a readable config/shape_metadata "
                          f"({type(exc).__name__}: {exc})") from None
    if any(mods.get("goal", {}).get(m) for m in ("low_dim", "rgb", "depth", "scan")):
        raise PolicyError(f"{where}: a goal-conditioned checkpoint; bomb-data sends no goal observation")
    obs = mods.get("obs", {})
    for m in ("depth", "scan"):
        if obs.get(m):
            raise PolicyError(f"{where}: {m} observations {obs[m]}: bomb-data's exports have none")
    images: dict[str, tuple[int, int, int]] = {}
    state: dict[str, tuple[int, ...]] = {}
    for key in obs.get("rgb") or []:
        shape = shapes.get(key, ())
        if len(shape) != 3 or shape[0] != 3:
            raise PolicyError(f"{where}: image input {key!r} has shape {list(shape)}; expected [3, H, W]")
        images[key] = shape  # type: ignore[assignment]
    for key in obs.get("low_dim") or []:
        if key not in LOWDIM_DIMS:
            raise PolicyError(f"{where}: low-dim input {key!r} is not an obs key of bomb-data's HDF5 export "
                              f"({', '.join(LOWDIM_DIMS)}); train on the export's keys")
        state[key] = shapes.get(key, ())
    if ac_dim != 7:
        raise PolicyError(f"{where}: the checkpoint's action has {ac_dim} dimensions; bomb-data executes the 7-D "
                          "canonical action of its exports")
    keep = {k: cfg.get("algo", {}).get(k) for k in ("rnn", "gmm") if isinstance(cfg.get("algo"), dict)}
    return CheckpointInfo(p, str(d["algo_name"]), images, state, ac_dim,
                          {"algo": {k: v for k, v in keep.items() if v is not None}})


def adapter_preset(info: CheckpointInfo) -> dict[str, Any]:
    """``AdapterConfig`` fields that show the environment to the checkpoint as the HDF5 export did."""
    keys: dict[str, str] = {}
    for key in info.images:
        cam = CAMERA_OF.get(key)
        if cam is None:
            raise PolicyError(f"policy robomimic:{info.path}: image input {key!r} is not a camera bomb-data renders "
                              f"(the export's keys: {', '.join(CAMERA_OF)}); map it with --image-keys agentview=KEY")
        keys[cam] = key
    preset: dict[str, Any] = dict(image_keys=keys, resize_mode="stretch", state_key=None, state_layout="none",
                                  lowdim_keys={k: k for k in info.state}, instruction_key="instruction",
                                  gripper="canonical", replan_steps=None)
    sizes = {v[1:] for v in info.images.values()}
    if len(sizes) == 1:
        (h, w), = sizes
        if h == w:
            preset["image_size"] = h
    return preset


def describe(info: CheckpointInfo) -> dict[str, Any]:
    return {"kind": "robomimic", "checkpoint": str(info.path), "type": info.type,
            "input_features": {**{k: {"type": "VISUAL", "shape": list(v)} for k, v in info.images.items()},
                               **{k: {"type": "STATE", "shape": list(v)} for k, v in info.state.items()}},
            "action_dim": info.action_dim, **info.config}


class RobomimicPolicy:
    """A robomimic checkpoint as a bomb-data policy (needs ``robomimic`` and ``torch`` in this environment)."""

    privileged = False

    def __init__(self, path: str | Path, device: str = "cpu"):
        self.info = read_checkpoint(path)
        self.name = f"robomimic:{path}"
        try:
            # robomimic prints a macro-file warning on import: eval's stdout is its JSON brief
            with contextlib.redirect_stdout(sys.stderr):
                import robomimic.utils.file_utils as file_utils
                import robomimic.utils.obs_utils as obs_utils
                import torch
        except ImportError as exc:
            raise PolicyError(f"policy {self.name}: needs robomimic 0.3 and torch in this environment ({exc}): "
                              "serve the checkpoint from an environment that has them (bomb-data serve --policy "
                              "robomimic:CKPT.pth --port 8000) and evaluate --policy openpi://HOST:8000") from None
        self._torch, self._obs_utils = torch, obs_utils
        try:
            with contextlib.redirect_stdout(sys.stderr):  # robomimic prints; eval's stdout is its JSON
                self.policy, _ = file_utils.policy_from_checkpoint(ckpt_path=str(self.info.path),
                                                                   device=torch.device(device), verbose=False)
        except Exception as exc:  # robomimic/torch raise many kinds; one line for the user
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise PolicyError(f"policy {self.name}: robomimic cannot load this checkpoint (algo {self.info.type!r}): "
                              f"{type(exc).__name__}: {first}") from None

    def fork(self) -> RobomimicPolicy:
        """A policy with its own episode state (RNN hidden state, action sequence), same weights."""
        other = copy.copy(self)
        other.policy = copy.deepcopy(self.policy)
        return other

    def reset(self, start: EpisodeStart) -> None:
        self.policy.start_episode()
        self._torch.manual_seed(int(start.seed) % (2**63))

    def observation(self, observation: dict[str, Any]) -> dict[str, np.ndarray]:
        """The observation as robomimic's environment wrappers hand it to ``RolloutPolicy`` (images through
        ``ObsUtils.process_obs``: CHW float32 in [0, 1]; low-dim float32). Raises ``PolicyFailure("bad_input")``."""
        ob: dict[str, np.ndarray] = {}
        for key, (c, h, w) in self.info.images.items():
            a = None if observation.get(key) is None else np.asarray(observation[key])
            if a is None or a.shape != (h, w, c) or a.dtype != np.uint8:
                raise PolicyFailure("bad_input", f"{key}: image {None if a is None else [str(a.dtype), *a.shape]}, "
                                                 f"the checkpoint was trained on uint8 [{h}, {w}, {c}]")
            ob[key] = np.asarray(self._obs_utils.process_obs(obs=a.copy(), obs_key=key), np.float32)
        for key, shape in self.info.state.items():
            a = None if observation.get(key) is None else np.asarray(observation[key], np.float32)
            if a is None or a.shape != shape:
                raise PolicyFailure("bad_input", f"{key}: {None if a is None else list(a.shape)}, the checkpoint "
                                                 f"was trained on {list(shape)}")
            ob[key] = a
        return ob

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        t0 = time.perf_counter()
        ob = self.observation(observation)
        t1 = time.perf_counter()
        try:
            with self._torch.no_grad():
                action = self.policy(ob=ob)
        except Exception as exc:  # the model's own code
            raise PolicyFailure("policy_exception", f"{type(exc).__name__}: {exc}") from None
        t2 = time.perf_counter()
        self.last_timing = {"observation_ms": (t1 - t0) * 1e3, "policy_ms": (t2 - t1) * 1e3}
        return np.asarray(action, np.float32).reshape(-1)[: self.info.action_dim]

    def close(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return describe(self.info)
