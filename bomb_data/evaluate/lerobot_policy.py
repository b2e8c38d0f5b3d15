"""``--policy lerobot:CHECKPOINT_DIR``: a LeRobot policy checkpoint (0.4.x or 0.3.x), run as its own line runs it.

A checkpoint is the ``pretrained_model`` directory ``lerobot-train`` writes
(``outputs/train/<run>/checkpoints/<step>/pretrained_model``: ``config.json``, ``model.safetensors``,
and, from lerobot 0.4 on, ``policy_preprocessor.json``, ``policy_postprocessor.json`` and their state
files); the run directory, a step directory or ``.../checkpoints/last`` are accepted too.

Two lines of checkpoints, told apart by their files: lerobot 0.4 (trained on the v3.0 export)
normalises in its pre/post-processors; lerobot 0.3 (0.3.3's ``lerobot.scripts.train``, the line that
reads the v2.1 export) keeps the normalisation inside the model (``normalize_inputs.*`` buffers in
``model.safetensors``) and has no processor files. Each is loaded by the lerobot of its own line: the
installed lerobot must match (else one line says which to use, or to serve it from an env that has it).

What the checkpoint expects is read from ``config.json`` alone (``input_features``), without lerobot, so the evaluator
can build the matching observation and refuse a mismatch in an environment that has no lerobot
(the model itself then runs behind ``bomb-data serve`` in an environment that has).

Observation mapping (the export's feature names, converters/lerobot.py): an image input named
``observation.images.agentview`` or ``image`` (openpi preset) gets the agentview camera,
``observation.images.wrist`` or ``wrist_image`` the wrist camera, each resized (bilinear, as
``bomb-data export --image-size`` resized them) to the training size; a state input
(``observation.state`` or ``state``) of 8 gets the exports' state (eef position, axis-angle, two
fingers); the instruction goes under ``task`` (language-conditioned policies tokenize it in their
preprocessor). Per episode ``reset()``, per step ``select_action`` with the preprocessor before and
the postprocessor after (0.4; for 0.3 the model normalises itself), as ``lerobot-eval`` of that line
does; torch is seeded with the episode's policy seed.
"""

from __future__ import annotations

import contextlib
import copy
import json
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, PolicyError
from .protocol import EpisodeStart, PolicyFailure

#: Input image key (its last dotted part) -> the camera bomb-data renders for it.
CAMERA_OF = {"agentview": "agentview", "image": "agentview", "wrist": "wrist", "wrist_image": "wrist"}
#: Length of the state vector of each layout (bomb_data.evaluate.adapt.state_vector).
STATE_DIMS = {"eef_axisangle_fingers": 8, "eef_quat_fingers": 9, "joints_fingers": 9, "none": 0}
#: Key of the instruction in the observation (lerobot's "task", as lerobot-eval sends it).
TASK_KEY = "task"
#: Key of the opaque episode id (``bomb-data serve`` resets its policy when it changes).
EPISODE_ID_KEY = "bomb/episode_id"


@dataclass(frozen=True)
class CheckpointInfo:
    """What a LeRobot checkpoint expects, from its ``config.json``."""

    path: Path
    type: str
    images: dict[str, tuple[int, int, int]]  # observation key (the dataset's, before a rename) -> (C, H, W)
    state: dict[str, tuple[int, ...]]  # observation key -> shape
    action_dim: int
    config: dict[str, Any] = field(default_factory=dict, repr=False)
    #: "0.4" (pre/post-processor files) or "0.3" (normalisation buffers inside the model)
    line: str = "0.4"

    def describe(self) -> dict[str, Any]:
        return {"kind": "lerobot", "checkpoint": str(self.path), "type": self.type, "lerobot_line": self.line,
                "input_features": {**{k: {"type": "VISUAL", "shape": list(v)} for k, v in self.images.items()},
                                   **{k: {"type": "STATE", "shape": list(v)} for k, v in self.state.items()}},
                "action_dim": self.action_dim,
                **{k: self.config[k] for k in ("chunk_size", "n_action_steps", "n_obs_steps") if k in self.config}}


def resolve_checkpoint(path: str | Path) -> Path:
    """The ``pretrained_model`` directory for ``path`` (that directory, a step directory, or a run
    directory whose ``checkpoints/last`` is used). Raises ``PolicyError`` (one line)."""
    p = Path(path).expanduser()
    for c in (p, p / "pretrained_model", p / "checkpoints" / "last" / "pretrained_model"):
        if (c / "config.json").is_file():
            return c
    if not p.exists():
        raise PolicyError(f"policy lerobot:{path}: no such directory")
    raise PolicyError(f"policy lerobot:{path}: not a LeRobot checkpoint (no config.json; expected the "
                      "pretrained_model directory lerobot-train writes, e.g. "
                      "outputs/train/RUN/checkpoints/last/pretrained_model)")


def read_checkpoint(path: str | Path) -> CheckpointInfo:
    """Read and check what the checkpoint at ``path`` expects. Raises ``PolicyError`` (one line)."""
    d = resolve_checkpoint(path)
    where = f"policy lerobot:{path}"
    try:
        cfg = json.loads((d / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{where}: config.json is not readable JSON ({str(exc).splitlines()[0][:80]})") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("type"), str) or not isinstance(
            cfg.get("input_features"), dict):
        raise PolicyError(f"{where}: config.json is not a LeRobot policy config (no 'type' and 'input_features')")
    if not (d / "model.safetensors").is_file():
        raise PolicyError(f"{where}: {d.name} has config.json but no model.safetensors")
    if (d / "policy_preprocessor.json").is_file():
        line = "0.4"
    elif _has_inner_normalisation(d / "model.safetensors"):
        line = "0.3"
    else:
        raise PolicyError(f"{where}: neither policy_preprocessor.json (lerobot 0.4) nor normalisation buffers in "
                          "model.safetensors (lerobot 0.3): not a checkpoint lerobot-train wrote")
    # a checkpoint trained with --rename_map renames the dataset's keys in its preprocessor: send those
    renamed = {dst: src for src, dst in _rename_map(d / "policy_preprocessor.json").items()}
    images: dict[str, tuple[int, int, int]] = {}
    state: dict[str, tuple[int, ...]] = {}
    for name, ft in cfg["input_features"].items():
        key = renamed.get(name, name)
        kind, shape = (ft or {}).get("type"), tuple(int(x) for x in (ft or {}).get("shape") or ())
        if kind == "VISUAL":
            if len(shape) != 3 or shape[0] != 3:
                raise PolicyError(f"{where}: image input {key!r} has shape {list(shape)}; expected [3, H, W]")
            images[key] = shape  # type: ignore[assignment]
        elif kind == "STATE":
            state[key] = shape
        else:
            raise PolicyError(f"{where}: input {key!r} of type {kind}: bomb-data sends images, the robot state and "
                              "the instruction only")
    out = (cfg.get("output_features") or {}).get("action") or {}
    adim = int((out.get("shape") or [0])[0])
    if adim != 7:
        raise PolicyError(f"{where}: the checkpoint's action has {adim} dimensions; bomb-data executes the 7-D "
                          "canonical action of its exports")
    return CheckpointInfo(d, cfg["type"], images, state, adim, cfg, line)


def _has_inner_normalisation(path: Path) -> bool:
    """Whether the safetensors file at ``path`` holds lerobot 0.3's ``normalize_inputs.*`` buffers
    (read from its JSON header; no torch needed). False for an unreadable file."""
    try:
        with path.open("rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            if not 0 < n < 100_000_000:
                return False
            header = json.loads(f.read(n))
    except (OSError, ValueError, struct.error, UnicodeDecodeError):
        return False
    return isinstance(header, dict) and any(str(k).startswith("normalize_inputs.") for k in header)


def installed_lerobot_line() -> str | None:
    """"0.4", "0.3" (the installed lerobot's minor line, as ``0.MINOR``) or None (not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("lerobot")
    except PackageNotFoundError:
        return None
    parts = v.split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 else v


def _rename_map(path: Path) -> dict[str, str]:
    """The ``rename_map`` of the preprocessor's ``rename_observations_processor`` step ({} if none)."""
    try:
        steps = json.loads(path.read_text(encoding="utf-8")).get("steps") or []
    except (OSError, ValueError, UnicodeDecodeError, AttributeError):
        return {}
    for st in steps:
        if isinstance(st, dict) and st.get("registry_name") == "rename_observations_processor":
            m = (st.get("config") or {}).get("rename_map") or {}
            return {str(k): str(v) for k, v in m.items()} if isinstance(m, dict) else {}
    return {}


def camera_of(key: str) -> str | None:
    """The camera that feeds input ``key`` (by its last dotted part), or None."""
    return CAMERA_OF.get(key.rsplit(".", 1)[-1])


def adapter_preset(info: CheckpointInfo) -> dict[str, Any]:
    """``AdapterConfig`` fields that show the environment to the checkpoint as its training data did."""
    keys: dict[str, str] = {}
    for key in info.images:
        cam = camera_of(key)
        if cam is None or cam in keys:
            raise PolicyError(f"policy lerobot:{info.path}: image input {key!r} is not a camera bomb-data renders "
                              f"(inputs named {', '.join(sorted(CAMERA_OF))} after their last dot); "
                              "map it with --image-keys agentview=KEY")
        keys[cam] = key
    sizes = {v[1:] for v in info.images.values()}
    preset: dict[str, Any] = dict(image_keys=keys, resize_mode="stretch", instruction_key=TASK_KEY,
                                  gripper="canonical", replan_steps=None)
    if len(sizes) == 1:
        (h, w), = sizes
        if h == w:
            preset["image_size"] = h
    if info.state:
        (skey, shape), = list(info.state.items())[:1]
        preset["state_key"] = skey
        preset["state_layout"] = "eef_axisangle_fingers" if shape == (8,) else "none"
    else:
        preset.update(state_key=None, state_layout="none")
    return preset


def check_adapter(info: CheckpointInfo, acfg: Any, where: str, render_size: int | None = None) -> None:
    """Refuse (one line, before any episode) an adapter that would not send what the checkpoint was
    trained on: a missing image key, another image size, images upsampled from smaller renders
    (``render_size``), a missing or other-sized state.

    Raises:
        ConfigError: the first mismatch.
    """
    sent = {key: cam for cam, key in acfg.image_keys.items()}
    for key, (_, h, w) in info.images.items():
        if key not in sent:
            raise ConfigError(f"{where}: the checkpoint needs image {key!r}, which --image-keys does not send")
        if (h, w) != (acfg.image_size, acfg.image_size):
            size = "as rendered" if acfg.image_size is None else f"{acfg.image_size}x{acfg.image_size}"
            raise ConfigError(f"{where}: the checkpoint was trained on {h}x{w} images ({key}), the evaluation would "
                              f"send {size}: drop --policy-image-size (the checkpoint's size is the default) or "
                              "evaluate a checkpoint trained at that size")
        if render_size is not None and render_size < h:
            raise ConfigError(f"{where}: the checkpoint was trained on {h}x{w} images ({key}), the environment "
                              f"renders {render_size}x{render_size}, which would be upsampled: render at least "
                              f"that size (--image-size {h}; ideally the size of the store it was trained on)")
    lowdim = dict(getattr(acfg, "lowdim_keys", None) or {})
    vectors = {k: v for k, v in info.state.items() if k not in lowdim}
    if len(vectors) > 1:
        raise ConfigError(f"{where}: the checkpoint has {len(vectors)} state inputs; bomb-data sends one state "
                          "vector (and the HDF5 export's low-dim keys, adapter preset robomimic)")
    from .adapt import LOWDIM_DIMS

    for key, shape in info.state.items():
        if key in lowdim:
            if (LOWDIM_DIMS[lowdim[key]],) != shape:
                raise ConfigError(f"{where}: the checkpoint needs {key!r} of {list(shape)}, the evaluation would "
                                  f"send {lowdim[key]} of [{LOWDIM_DIMS[lowdim[key]]}]")
            continue
        dim = STATE_DIMS.get(acfg.state_layout, 0) if acfg.state_key else 0
        if acfg.state_key != key or (dim,) != shape:
            raise ConfigError(f"{where}: the checkpoint needs state {key!r} of {list(shape)}, the evaluation would "
                              f"send {acfg.state_key!r} of [{dim}] ({acfg.state_layout}); the exports' state is 8-D "
                              "(--state-layout eef_axisangle_fingers)")


class LeRobotPolicy:
    """A LeRobot checkpoint as a bomb-data policy (needs ``lerobot`` and ``torch`` in this environment).

    Args:
        path: the checkpoint (see ``resolve_checkpoint``).
        device: torch device (``cpu``, ``cuda``...).
    """

    privileged = False

    def __init__(self, path: str | Path, device: str = "cpu"):
        self.info = read_checkpoint(path)
        self.name = f"lerobot:{path}"
        self.device = device
        want = self.info.line
        serve = ("serve the checkpoint from an environment that has it (bomb-data serve --policy lerobot:DIR "
                 "--port 8000) and evaluate --policy openpi://HOST:8000")
        have, missing = installed_lerobot_line(), "no lerobot"
        try:
            import torch
            from lerobot.configs.policies import PreTrainedConfig
            from lerobot.policies.factory import get_policy_class
        except ImportError as exc:
            have, missing = None, str(exc)
        if have is None:
            extra = "pip install 'bomb-data[lerobot]', or " if want == "0.4" else "pip install 'lerobot==0.3.3', or "
            raise PolicyError(f"policy {self.name}: a checkpoint of lerobot {want}, which needs lerobot {want}.x and "
                              f"torch in this environment ({missing}): {extra}{serve}") from None
        if have != want:
            hint = ("or convert it to 0.4 with lerobot 0.4's migrate_policy_normalization script"
                    if want == "0.3" else "or retrain it with this line")
            raise PolicyError(f"policy {self.name}: a checkpoint of lerobot {want} (trained on the "
                              f"{'v2.1' if want == '0.3' else 'v3.0'} export's line), this environment has lerobot "
                              f"{have}: {serve}, {hint}")
        self._torch = torch
        d = str(self.info.path)
        try:
            # lerobot prints ("Loading weights from local directory") to stdout, which holds eval's JSON brief
            with contextlib.redirect_stdout(sys.stderr):
                self._load(PreTrainedConfig, get_policy_class, d, device, want)
        except Exception as exc:  # draccus/lerobot/torch raise many kinds; one line for the user
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise PolicyError(f"policy {self.name}: lerobot cannot load this checkpoint (type {self.info.type!r}): "
                              f"{type(exc).__name__}: {first}") from None

    def _load(self, config_cls: Any, get_policy_class: Any, d: str, device: str, line: str) -> None:
        cfg = config_cls.from_pretrained(d)
        cfg.device = device
        if getattr(cfg, "pretrained_backbone_weights", None):
            cfg.pretrained_backbone_weights = None  # the checkpoint holds the weights: download nothing
        self.model = get_policy_class(cfg.type).from_pretrained(d, config=cfg)
        self.model.eval()
        if line == "0.4":
            from lerobot.policies.factory import make_pre_post_processors

            self.pre, self.post = make_pre_post_processors(
                cfg, pretrained_path=d, preprocessor_overrides={"device_processor": {"device": device}},
                postprocessor_overrides={"device_processor": {"device": "cpu"}})
        else:  # 0.3: the model normalises its inputs and unnormalises its action; lerobot 0.3's eval
            # moves the batch to the device and hands it over as it is
            self.pre, self.post = self._to_device, self._identity

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v.to(self.device) if hasattr(v, "to") else v for k, v in batch.items()}

    @staticmethod
    def _identity(x: Any) -> Any:
        return x

    def fork(self) -> LeRobotPolicy:
        """A policy with its own episode state (action queue, observation history) and the same
        weights and processors; ``bomb-data serve`` keeps one per episode in flight."""
        other = copy.copy(self)
        other.model = copy.deepcopy(self.model)
        return other

    def reset(self, start: EpisodeStart) -> None:
        self.model.reset()
        self._torch.manual_seed(int(start.seed) % (2**63))

    def batch(self, observation: dict[str, Any]) -> dict[str, Any]:
        """The observation as lerobot-eval hands it to the preprocessor (float CHW images in [0, 1],
        float32 state, batch of one, ``task``). Raises ``PolicyFailure("bad_input")``."""
        torch = self._torch
        b: dict[str, Any] = {}
        for key, (c, h, w) in self.info.images.items():
            img = observation.get(key)
            if img is None:
                raise PolicyFailure("bad_input", f"the observation has no {key!r}, an input of the checkpoint "
                                                 f"(sent: {', '.join(sorted(map(str, observation)))})")
            a = np.asarray(img)
            if a.shape != (h, w, c) or a.dtype != np.uint8:
                raise PolicyFailure("bad_input", f"{key}: image {a.dtype} {list(a.shape)}, the checkpoint was "
                                                 f"trained on uint8 [{h}, {w}, {c}]")
            b[key] = torch.from_numpy(a.copy()).permute(2, 0, 1).unsqueeze(0).float().div_(255)
        for key, shape in self.info.state.items():
            s = observation.get(key)
            a = None if s is None else np.asarray(s, np.float32)
            if a is None or a.shape != shape:
                raise PolicyFailure("bad_input", f"{key}: state {None if a is None else list(a.shape)}, the "
                                                 f"checkpoint was trained on {list(shape)}")
            b[key] = torch.from_numpy(a.copy()).unsqueeze(0)
        b[TASK_KEY] = [str(observation.get(TASK_KEY) or "")]
        return b

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        t0 = time.perf_counter()
        b = self.batch(observation)
        try:
            with self._torch.inference_mode():
                t1 = time.perf_counter()
                x = self.pre(b)
                t2 = time.perf_counter()
                y = self.model.select_action(x)
                t3 = time.perf_counter()
                action = self.post(y)
        except Exception as exc:  # the model's own code
            raise PolicyFailure("policy_exception", f"{type(exc).__name__}: {exc}") from None
        out = np.asarray(action.detach().cpu().numpy(), np.float32).reshape(-1, self.info.action_dim)[0]
        t4 = time.perf_counter()
        # where the time of the last call went (benchmarks/bench_eval.py; bomb-data serve replies with it)
        self.last_timing = {"batch_ms": (t1 - t0) * 1e3, "preprocess_ms": (t2 - t1) * 1e3,
                            "select_action_ms": (t3 - t2) * 1e3, "postprocess_ms": (t4 - t3) * 1e3}
        return out

    def close(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return self.info.describe()
