"""Observation and action adaptation between the environment and a policy — configurable and recorded.

Observation side (environment → policy): which cameras go under which keys, resizing (``pad``
like openpi's ``resize_with_pad``, ``stretch``, optional centre crop like OpenVLA's
``center_crop``), the proprioceptive state layout, and the key and template of the instruction.
Action side (policy → environment): the gripper convention and binarisation, how many actions of
a chunk to execute before asking again (``replan_steps``), and settle steps at episode start.

Gripper conventions (``gripper``), decoded to the canonical ``-1 open / +1 closed``:

| name           | policy output              | to canonical g       | who uses it                                  |
|----------------|----------------------------|----------------------|----------------------------------------------|
| ``canonical``  | -1 open, +1 closed         | g = x                | bomb-data exports, openpi LIBERO, robosuite  |
| ``openvla``    | [0, 1], 1 open, 0 closed   | g = -(2x - 1)        | OpenVLA / OpenVLA-OFT trained on RLDS        |
| ``close01``    | [0, 1], 1 closed, 0 open   | g = 2x - 1           | datasets storing gripper as 0 open / 1 close |
| ``inverted``   | -1 closed, +1 open         | g = -x               |                                              |

With ``binarize`` the result becomes +1 if g > 0 else -1 (OpenVLA's LIBERO eval uses ``np.sign``).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..rotations import quat_wxyz_to_axis_angle, state8
from .protocol import PolicyFailure, policy_seed

GripperMode = Literal["canonical", "openvla", "close01", "inverted"]
StateLayout = Literal["eef_axisangle_fingers", "eef_quat_fingers", "joints_fingers", "none"]
LowDim = Literal["ee_pos", "ee_ori", "ee_states", "gripper_states", "joint_states"]
ACTION_DIM = 7


class AdapterConfig(BaseModel):
    """How observations are shown to a policy and how its outputs are executed (recorded per run)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image_keys: dict[str, str] = Field(default_factory=lambda: {"agentview": "agentview", "wrist": "wrist"},
                                       description="environment camera -> key in the policy's observation")
    image_size: int | None = Field(None, ge=8, le=2048, description="resize to SIZE x SIZE (None = as rendered)")
    resize_mode: Literal["pad", "stretch"] = "pad"
    center_crop: float | None = Field(None, gt=0.1, le=1.0, description="crop this area fraction at the centre first")
    flip_180: bool = Field(False, description="rotate images by 180 degrees (LIBERO-trained models)")
    state_key: str | None = "state"
    state_layout: StateLayout = "eef_axisangle_fingers"
    lowdim_keys: dict[str, LowDim] = Field(default_factory=dict,
                                        description="more low-dim inputs: key in the policy's observation -> "
                                        "quantity (LOWDIM_DIMS: ee_pos, ee_ori, ee_states, gripper_states, "
                                        "joint_states), as the HDF5 export's obs/* hold them (robomimic)")
    instruction_key: str = "instruction"
    prompt_template: str = Field("{instruction}", description="text sent = template with {instruction}")
    lowercase: bool = False
    extra: dict[str, Any] = Field(default_factory=dict, description="constant keys added to every observation")
    send_episode_id: bool = Field(False, description="add bomb/episode_id: the episode's policy seed in hex, opaque "
                                  "(stateful servers reset when it changes)")
    send_privileged: bool = Field(False,
                                  description="add bomb/privileged, bomb/seed, bomb/step (expert behind a server)")
    gripper: GripperMode = "canonical"
    binarize_gripper: bool = False
    replan_steps: int | None = Field(None, ge=1,
                                     description="actions of a chunk executed before re-asking (None = all)")
    settle_steps: int = Field(0, ge=0, le=100, description="no-op steps (gripper open) before the policy acts")
    action_scale: float = Field(1.0, gt=0, description="multiply translation and rotation deltas")

    @field_validator("prompt_template")
    @classmethod
    def _template_has_instruction(cls, v: str) -> str:
        problem = prompt_template_problem(v)
        if problem:
            raise ValueError(problem)
        return v


def prompt_template_problem(template: str) -> str | None:
    """What is wrong with a prompt template, or None: it must use ``{instruction}`` (at least once)
    and no other field, with balanced braces (``{{`` and ``}}`` for literal ones)."""
    import string

    try:
        fields = [f for _, f, spec, _ in string.Formatter().parse(template) if f is not None]
        specs = [spec for _, f, spec, _ in string.Formatter().parse(template) if f is not None and spec]
    except ValueError as exc:
        return f"malformed braces ({exc}); write {{{{ and }}}} for literal braces"
    unknown = sorted({f for f in fields if f != "instruction"})
    if unknown:
        return (f"unknown field(s) {', '.join('{' + f + '}' for f in unknown)}; only {{instruction}} is filled "
                "in (write {{ and }} for literal braces)")
    if "instruction" not in fields:
        return "expected {instruction} in the template, where the task's instruction goes"
    if any("{" in sp for sp in specs):
        return "a nested field in a format spec; only {instruction} is filled in"
    try:
        template.format(instruction="x")
    except (ValueError, KeyError, IndexError, AttributeError) as exc:
        return f"cannot be filled in ({type(exc).__name__}: {exc})"
    return None


PRESETS: dict[str, dict[str, Any]] = {
    # the canonical observation, as the environment emits it (in-process policies)
    "canonical": {},
    # openpi LIBERO example: keys, 224 resize-with-pad, 8-D state, prompt, replan 5
    "openpi": dict(image_keys={"agentview": "observation/image", "wrist": "observation/wrist_image"},
                   image_size=224, resize_mode="pad", state_key="observation/state", instruction_key="prompt",
                   gripper="canonical", replan_steps=5),
    # robomimic/LIBERO keys of the HDF5 export (obs/*): two images, every low-dim key, no single state
    # vector (robomimic: checkpoints keep the keys their config names, with its image size)
    "robomimic": dict(image_keys={"agentview": "agentview_rgb", "wrist": "eye_in_hand_rgb"}, resize_mode="stretch",
                      state_key=None, state_layout="none",
                      lowdim_keys={k: k for k in ("ee_pos", "ee_ori", "ee_states", "gripper_states", "joint_states")},
                      gripper="canonical", replan_steps=None),
    # LeRobot v3.0 export keys (lerobot: checkpoints refine it from their config.json: keys, size)
    "lerobot": dict(image_keys={"agentview": "observation.images.agentview", "wrist": "observation.images.wrist"},
                    resize_mode="stretch", state_key="observation.state", instruction_key="task",
                    gripper="canonical", replan_steps=None),
    # OpenVLA deploy.py: one image, instruction, unnorm_key; gripper [0,1] 1 = open, binarised
    "openvla": dict(image_keys={"agentview": "image"}, image_size=224, resize_mode="stretch", state_key=None,
                    instruction_key="instruction", gripper="openvla", binarize_gripper=True, replan_steps=1),
    # OpenVLA-OFT deploy.py: full_image + wrist_image + state, chunks of 8
    "openvla-oft": dict(image_keys={"agentview": "full_image", "wrist": "wrist_image"}, image_size=224,
                        resize_mode="stretch", state_key="state", instruction_key="instruction", gripper="openvla",
                        binarize_gripper=True, replan_steps=8),
}


def adapter_for(preset: str, **overrides: Any) -> AdapterConfig:
    """The preset's configuration with ``overrides`` (None values are ignored)."""
    d = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    return AdapterConfig(**d)


# ---------------------------------------------------------------------------------- observations
def _resize(img: NDArray[np.uint8], size: int, mode: str) -> NDArray[np.uint8]:
    h, w = img.shape[:2]
    if (h, w) == (size, size):
        return img
    pil = Image.fromarray(img)
    if mode == "stretch":
        return np.asarray(pil.resize((size, size), Image.BILINEAR))
    ratio = max(w / size, h / size)  # resize with zero padding, as tf.image.resize_with_pad
    rw, rh = int(w / ratio), int(h / ratio)
    canvas = Image.new("RGB", (size, size), 0)
    canvas.paste(pil.resize((rw, rh), Image.BILINEAR), ((size - rw) // 2, (size - rh) // 2))
    return np.asarray(canvas)


def _center_crop(img: NDArray[np.uint8], area: float) -> NDArray[np.uint8]:
    h, w = img.shape[:2]
    s = math.sqrt(area)
    ch, cw = max(1, round(h * s)), max(1, round(w * s))
    y, x = (h - ch) // 2, (w - cw) // 2
    return np.asarray(Image.fromarray(img[y:y + ch, x:x + cw]).resize((w, h), Image.BILINEAR))


def adapt_image(img: NDArray[np.uint8], cfg: AdapterConfig) -> NDArray[np.uint8]:
    """One camera frame as the policy sees it (uint8 (S, S, 3))."""
    if cfg.flip_180:
        img = img[::-1, ::-1]
    if cfg.center_crop is not None and cfg.center_crop < 1.0:
        img = _center_crop(np.ascontiguousarray(img), cfg.center_crop)
    if cfg.image_size is not None:
        img = _resize(np.ascontiguousarray(img), cfg.image_size, cfg.resize_mode)
    return np.ascontiguousarray(img)


#: Low-dim quantities of the HDF5 export (converters/hdf5.py, robomimic layout) -> length.
LOWDIM_DIMS = {"ee_pos": 3, "ee_ori": 3, "ee_states": 6, "gripper_states": 2, "joint_states": 7}


def lowdim_value(obs: dict[str, Any], name: str) -> NDArray[np.float32]:
    """One low-dim quantity of ``LOWDIM_DIMS`` from the environment's observation, float32, computed from
    the float32 parts exactly as the HDF5 export computes it (bit-identical to the training data)."""
    if name == "ee_pos":
        return np.asarray(obs["eef_pos"], np.float32)
    if name == "ee_ori":
        return quat_wxyz_to_axis_angle(obs["eef_quat"])
    if name == "ee_states":
        return np.concatenate([np.asarray(obs["eef_pos"], np.float32), quat_wxyz_to_axis_angle(obs["eef_quat"])])
    if name == "gripper_states":
        return np.asarray(obs["gripper_qpos"], np.float32)
    if name == "joint_states":
        return np.asarray(obs["joint_pos"], np.float32)
    raise ValueError(f"low-dim quantity: unknown {name!r} (known: {', '.join(LOWDIM_DIMS)})")


def state_vector(obs: dict[str, Any], layout: str) -> NDArray[np.float32]:
    """Proprioceptive state in ``layout``: eef pos + axis-angle + fingers (8, LIBERO/openpi), eef pos +
    quaternion w-x-y-z + fingers (9), or joint positions + fingers (9)."""
    if layout == "eef_axisangle_fingers":
        if "eef_quat" in obs:  # from the float32 parts, as the exports derive it (bit-identical to training data)
            return state8(obs["eef_pos"], obs["eef_quat"], obs["gripper_qpos"])
        return np.asarray(obs["state"], np.float32)
    if layout == "eef_quat_fingers":
        return np.concatenate([obs["eef_pos"], obs["eef_quat"], obs["gripper_qpos"]]).astype(np.float32)
    if layout == "joints_fingers":
        return np.concatenate([obs["joint_pos"], obs["gripper_qpos"]]).astype(np.float32)
    raise ValueError(f"state_layout: unknown {layout!r}")


def adapt_observation(obs: dict[str, Any], cfg: AdapterConfig, *, privileged: dict[str, Any] | None = None,
                      seed: int | None = None, step: int = 0) -> dict[str, Any]:
    """The policy's observation built from the environment's (see ``AdapterConfig``)."""
    out: dict[str, Any] = {}
    for cam, key in cfg.image_keys.items():
        out[key] = adapt_image(obs[cam], cfg)
    if cfg.state_key and cfg.state_layout != "none":
        out[cfg.state_key] = state_vector(obs, cfg.state_layout)
    for key, name in cfg.lowdim_keys.items():
        out[key] = lowdim_value(obs, name)
    text = cfg.prompt_template.format(instruction=obs["instruction"])
    out[cfg.instruction_key] = text.lower() if cfg.lowercase else text
    out.update(cfg.extra)
    if cfg.send_episode_id and seed is not None:
        out["bomb/episode_id"] = f"{policy_seed(seed):016x}"  # opaque: the one-way policy seed, never the episode's
    if cfg.send_privileged:
        out["bomb/privileged"] = privileged
        out["bomb/seed"] = int(seed or 0)
        out["bomb/step"] = int(step)
    return out


# --------------------------------------------------------------------------------------- actions
def decode_gripper(g: NDArray[np.float64], mode: str, binarize: bool) -> NDArray[np.float64]:
    """Policy gripper values → canonical (-1 open, +1 closed); see the table in the module docstring."""
    if mode == "openvla":
        g = -(2.0 * g - 1.0)
    elif mode == "close01":
        g = 2.0 * g - 1.0
    elif mode == "inverted":
        g = -g
    if binarize:
        g = np.where(g > 0, 1.0, -1.0)
    return g


def encode_gripper(g: NDArray[np.float64], mode: str) -> NDArray[np.float64]:
    """Canonical gripper values → ``mode`` (inverse of ``decode_gripper`` without binarisation)."""
    if mode == "openvla":
        return (1.0 - g) / 2.0
    if mode == "close01":
        return (g + 1.0) / 2.0
    if mode == "inverted":
        return -g
    return g


def _numeric(raw: Any) -> NDArray[np.float64]:
    """``raw`` as float64 if it holds numbers only (no strings, None, objects), else ``bad_reply``."""
    try:
        a = np.asarray(raw)
        if a.dtype.kind == "O":  # e.g. a list mixing floats and numpy scalars: numbers only
            if not all(isinstance(x, (int, float, np.integer, np.floating)) for x in a.flat):
                raise TypeError("holds values that are not numbers")
        elif a.dtype.kind not in "biuf":
            raise TypeError(f"dtype {a.dtype}")
        return a.astype(np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise PolicyFailure("bad_reply", f"action is not numeric ({str(exc)[:200]})") from None


def to_action_chunk(raw: Any, cfg: AdapterConfig) -> NDArray[np.float32]:
    """Validate a policy output and turn it into canonical actions to execute, (k, 7).

    Accepts one action (7,), a chunk (H, 7), a list of H actions, or a map with ``actions``.
    Raises:
        PolicyFailure: ``bad_shape`` (not 7 per action, empty), ``nan`` (non-finite values),
            ``bad_reply`` (not numeric).
    """
    if isinstance(raw, dict):
        if "actions" not in raw:
            raise PolicyFailure("bad_reply", f"reply has no 'actions' (keys: {sorted(map(str, raw))[:8]})")
        raw = raw["actions"]
    a = _numeric(raw)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] != ACTION_DIM:
        raise PolicyFailure("bad_shape", f"expected an action ({ACTION_DIM},) or a chunk (H, {ACTION_DIM}), "
                                         f"found shape {tuple(np.shape(raw))}")
    if not np.all(np.isfinite(a)):
        raise PolicyFailure("nan", f"action contains {int((~np.isfinite(a)).sum())} non-finite value(s)")
    if cfg.replan_steps is not None:
        a = a[: cfg.replan_steps]
    a = a.copy()
    a[:, :6] *= cfg.action_scale
    a[:, 6] = decode_gripper(a[:, 6], cfg.gripper, cfg.binarize_gripper)
    return a.astype(np.float32)
