"""The catalogue of perturbation axes.

An axis is one thing a grid may vary: a name, what it changes (``scene``, ``image`` or
``language`` fields of ``EpisodeParams``), its nominal level, named levels, and which raw values
a grid may give instead of a name (numbers, vectors or choices, with ranges kept moderate so the
scripted expert still succeeds and the cameras keep the whole board in view).

Axes of kind ``sequence`` set ``SequenceParams`` fields (``EpisodeParams.sequence``); only a sequence
grid (``task: sequence``) may list them, and their nominal level is the grid's own ``sequence:``
section (docs/sequences.md).

A level in a grid file is either a name from the axis' presets (``high``), a raw value (``45``,
``[1.2, 1.0, 0.8]``, ``cloth``), or ``{name: NAME, value: VALUE}`` to name a raw value. Resolving
a level gives its id (the name, or the value written compactly) and the updates it makes to the
nominal ``EpisodeParams``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import ConfigError
from ..params import EpisodeParams
from ..sequence.params import SequenceParams

Kind = Literal["scene", "image", "language", "sequence"]
ValueKind = Literal["float", "int", "vector", "choice", "bool", "optional_int", "text"]

NOMINAL = EpisodeParams()
NOMINAL_SEQUENCE = SequenceParams()


def _fmt_number(v: float) -> str:
    return f"{v:g}"


def format_value(v: Any) -> str:
    """Compact, stable text of a raw level value (used as its id)."""
    if isinstance(v, bool):
        return "on" if v else "off"
    if v is None:
        return "off"
    if isinstance(v, (int, float)):
        return _fmt_number(float(v)) if isinstance(v, float) else str(v)
    if isinstance(v, (tuple, list)):
        return "/".join(_fmt_number(float(x)) for x in v)
    return str(v)


@dataclass(frozen=True)
class Axis:
    """One perturbation axis.

    Attributes:
        name: identifier used in grid files.
        kind: ``scene`` (changes the model or initial state before the rollout), ``image``
            (applied to every rendered frame) or ``language`` (the instruction text).
        description: what the axis changes, for people.
        fields: the ``EpisodeParams`` fields it sets, dotted (``scene.board_specular``).
        value_kind: type of a raw level value.
        presets: named levels -> raw values; always holds ``nominal``.
        bounds: allowed range of a raw value (per component for vectors: one pair for all, or one
            pair per component).
        size: number of components of a vector value.
        choices: allowed raw values of a ``choice`` axis.
        to_fields: raw value -> {dotted field: value}.
        study: the axis was perturbed in the original BOMB study.
    """

    name: str
    kind: Kind
    description: str
    fields: tuple[str, ...]
    value_kind: ValueKind
    presets: Mapping[str, Any]
    to_fields: Callable[[Any], dict[str, Any]]
    bounds: tuple[tuple[float, float], ...] = ()
    size: int = 1
    choices: tuple[str, ...] = ()
    study: bool = False
    scalar_to_vector: Callable[[float], tuple[float, ...]] | None = field(default=None, repr=False)

    # ------------------------------------------------------------------------------------ levels
    def _expected(self) -> str:
        names = ", ".join(self.presets)
        if self.value_kind == "choice":
            return f"one of ({', '.join(dict.fromkeys([*self.presets, *self.choices]))})"
        if self.value_kind == "bool":
            return "on/off (true/false)"
        rng = " x ".join(f"[{_fmt_number(lo)}, {_fmt_number(hi)}]" for lo, hi in self.bounds)
        if self.value_kind == "vector":
            what = f"{self.size} numbers in {rng}" + (" or one number" if self.scalar_to_vector else "")
        elif self.value_kind == "optional_int":
            what = f"an integer in {rng} or off"
        else:
            what = f"{'an integer' if self.value_kind == 'int' else 'a number'} in {rng}"
        return f"{what} or one of ({names})"

    def _bad(self, where: str, given: Any) -> ConfigError:
        return ConfigError(f"{where}: expected {self._expected()}, given {given!r}")

    def _check_number(self, x: Any, k: int, where: str, given: Any, integer: bool = False) -> float | int:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or (integer and not float(x).is_integer()):
            raise self._bad(where, given)
        if not math.isfinite(float(x)):
            raise self._bad(where, given)
        lo, hi = self.bounds[min(k, len(self.bounds) - 1)]
        if not lo <= float(x) <= hi:
            raise self._bad(where, given)
        return int(x) if integer else float(x)

    def raw_value(self, level: Any, where: str = "level") -> Any:
        """The canonical raw value of a level given as a preset name or a raw value.

        Raises:
            ConfigError: unknown name, wrong type or out of range (one line naming ``where``).
        """
        if isinstance(level, str) and level in self.presets:
            return self.presets[level]
        vk = self.value_kind
        if vk == "choice":
            if isinstance(level, str) and level in self.choices:
                return level
            raise self._bad(where, level)
        if vk == "text":
            if isinstance(level, str) and level.strip() and "," not in level and "=" not in level:
                return level
            raise self._bad(where, level)
        if vk == "bool":
            if isinstance(level, bool):
                return level
            if isinstance(level, str) and level.lower() in ("on", "off", "true", "false"):
                return level.lower() in ("on", "true")
            raise self._bad(where, level)
        if vk == "optional_int":
            if level is None or (isinstance(level, str) and level.lower() in ("off", "none")):
                return None
            return self._check_number(level, 0, where, level, integer=True)
        if vk == "vector":
            if isinstance(level, (int, float)) and not isinstance(level, bool) and self.scalar_to_vector:
                self._check_number(level, 0, where, level)
                level = list(self.scalar_to_vector(float(level)))
            if not isinstance(level, (list, tuple)) or len(level) != self.size:
                raise self._bad(where, level)
            return tuple(self._check_number(x, k, where, level) for k, x in enumerate(level))
        return self._check_number(level, 0, where, level, integer=(vk == "int"))

    def level_id(self, level: Any) -> str:
        """Readable id of a level: its preset name, or its raw value written compactly."""
        if isinstance(level, str):
            return level
        return format_value(level)

    def updates(self, value: Any) -> dict[str, dict[str, Any]]:
        """Section -> {field: value} updates that a raw value makes to ``EpisodeParams``."""
        out: dict[str, dict[str, Any]] = {}
        for dotted, v in self.to_fields(value).items():
            section, name = dotted.split(".")
            out.setdefault(section, {})[name] = v
        return out

    def is_nominal(self, value: Any) -> bool:
        """True when the raw value leaves ``EpisodeParams()`` unchanged."""
        for section, fields in self.updates(value).items():
            current = NOMINAL_SEQUENCE if section == "sequence" else getattr(NOMINAL, section)
            for k, v in fields.items():
                if _norm(getattr(current, k)) != _norm(v):
                    return False
        return True


def _norm(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return tuple(float(x) for x in v)
    if isinstance(v, float):
        return round(v, 12)
    return v


def _set(*dotted: str) -> Callable[[Any], dict[str, Any]]:
    """Mapping of a raw value onto fields: one field gets the value, several get its components."""
    if len(dotted) == 1:
        return lambda v: {dotted[0]: v}
    return lambda v: dict(zip(dotted, v))


def _nominal(*dotted: str) -> Any:
    vals = []
    for d in dotted:
        section, name = d.split(".")
        vals.append(getattr(NOMINAL_SEQUENCE if section == "sequence" else getattr(NOMINAL, section), name))
    return vals[0] if len(vals) == 1 else tuple(vals)


def _axis(name: str, kind: Kind, description: str, fields: tuple[str, ...], value_kind: ValueKind,
          presets: dict[str, Any], **kw: Any) -> Axis:
    nominal = _nominal(*fields) if "nominal" not in presets else presets.pop("nominal")
    to_fields = kw.pop("to_fields", None) or _set(*fields)
    return Axis(name=name, kind=kind, description=description, fields=fields, value_kind=value_kind,
                presets={"nominal": nominal, **presets}, to_fields=to_fields, **kw)


def _reflectivity(r: float) -> tuple[float, float, float]:
    """One number r in [0, 1] -> (specular, shininess, reflectance) = (r, r, r / 2)."""
    return (r, r, r / 2)


_AXES: list[Axis] = [
    # ---------------------------------------------------------------- the study's axes
    _axis("table_color", "scene", "base colour of the table (RGB in [0, 1], multiplied by its texture)",
          ("scene.table_rgb",), "vector",
          {"red": (0.70, 0.15, 0.12), "green": (0.20, 0.50, 0.22), "blue": (0.18, 0.30, 0.65),
           "white": (0.90, 0.90, 0.88), "gray": (0.45, 0.45, 0.45), "dark": (0.10, 0.09, 0.08)},
          bounds=((0.0, 1.0),), size=3, study=True),
    _axis("table_texture", "scene", "procedural texture of the table top", ("scene.table_texture",), "choice",
          {}, choices=("none", "wood", "cloth", "checker", "noise"), study=True),
    _axis("board_reflectivity", "scene",
          "board material: specular, shininess, reflectance together (one number r means (r, r, r/2))",
          ("scene.board_specular", "scene.board_shininess", "scene.board_reflectance"), "vector",
          {"matte": (0.0, 0.0, 0.0), "medium": (0.5, 0.5, 0.1), "high": (0.9, 0.9, 0.3)},
          bounds=((0.0, 1.0),), size=3, scalar_to_vector=_reflectivity, study=True),
    _axis("stone_reflectivity", "scene",
          "stone material: specular, shininess, reflectance together (one number r means (r, r, r/2))",
          ("scene.stone_specular", "scene.stone_shininess", "scene.stone_reflectance"), "vector",
          {"matte": (0.0, 0.0, 0.0), "medium": (0.6, 0.7, 0.1), "high": (1.0, 1.0, 0.3)},
          bounds=((0.0, 1.0),), size=3, scalar_to_vector=_reflectivity, study=True),
    _axis("n_board_stones", "scene", "number of stones already on the board (at most n*n - 1)",
          ("scene.n_board_stones",), "int", {"none": 0, "few": 3, "some": 8, "many": 14},
          bounds=((0, 360),), study=True),
    _axis("stone_layout", "scene", "arrangement of the stones already on the board", ("scene.layout",), "choice",
          {}, choices=("random", "clustered", "line"), study=True),
    _axis("active_stone_position", "scene", "offset (x forward, y left; m) of the active stone in the supply tray",
          ("scene.active_stone_offset_m",), "vector",
          {"center": (0.0, 0.0), "front": (0.015, 0.0), "back": (-0.015, 0.0), "left": (0.0, 0.015),
           "right": (0.0, -0.015), "corner": (0.015, -0.015)},
          bounds=((-0.02, 0.02),), size=2, study=True),
    _axis("color_balance", "image", "per-channel gains (R, G, B) on every rendered frame",
          ("image.color_gains",), "vector",
          {"warm": (1.15, 1.0, 0.85), "cool": (0.85, 1.0, 1.15), "green": (0.9, 1.15, 0.9),
           "magenta": (1.1, 0.85, 1.1)},
          bounds=((0.5, 1.5),), size=3, study=True),
    _axis("brightness", "image", "offset added to [0, 1] intensities of every rendered frame",
          ("image.brightness",), "float", {"darker": -0.2, "dark": -0.1, "bright": 0.1, "brighter": 0.2},
          bounds=((-0.4, 0.4),), study=True),
    _axis("camera_fov", "scene", "agentview vertical field of view (deg); the distance refits the board",
          ("scene.camera_fovy_deg",), "float", {"narrow": 28.0, "wide": 45.0, "wider": 55.0},
          bounds=((20.0, 60.0),), study=True),
    _axis("camera_azimuth", "scene", "agentview azimuth about the board centre (deg; 0 = facing the robot)",
          ("scene.camera_azimuth_deg",), "float", {"left": 20.0, "right": -20.0, "far_left": 35.0,
                                                   "far_right": -35.0},
          bounds=((-45.0, 45.0),), study=True),
    _axis("camera_elevation", "scene", "agentview elevation above the table (deg)",
          ("scene.camera_elevation_deg",), "float", {"low": 64.0, "high": 80.0, "top": 86.0},
          bounds=((62.0, 89.0),), study=True),
    _axis("camera_distance", "scene", "agentview distance relative to the fitted nominal distance",
          ("scene.camera_distance_scale",), "float", {"near": 0.95, "far": 1.25, "farther": 1.5},
          bounds=((0.9, 1.8),), study=True),
    # ---------------------------------------------------------------- robustness benchmarks since
    _axis("light_direction", "scene", "key light direction: azimuth (deg), elevation (deg)",
          ("scene.light_azimuth_deg", "scene.light_elevation_deg"), "vector",
          {"left": (90.0, 45.0), "right": (-90.0, 45.0), "front": (180.0, 45.0), "low": (30.0, 20.0),
           "overhead": (0.0, 90.0)},
          bounds=((-180.0, 180.0), (10.0, 90.0)), size=2),
    _axis("light_intensity", "scene", "diffuse intensity of the lights (shared)", ("scene.light_intensity",),
          "float", {"dim": 0.4, "bright": 1.3}, bounds=((0.2, 1.6),)),
    _axis("n_lights", "scene", "number of directional lights, spread evenly in azimuth", ("scene.n_lights",), "int",
          {"two": 2, "three": 3, "four": 4}, bounds=((1, 4),)),
    _axis("shadows", "scene", "the key light casts shadows", ("scene.shadows",), "bool", {"on": True, "off": False}),
    _axis("robot_init", "scene",
          "std (rad) of Gaussian noise, truncated at 2 std, on the arm's initial joint angles",
          ("scene.robot_init_noise_rad",), "float", {"small": 0.05, "large": 0.12}, bounds=((0.0, 0.15),)),
    _axis("instruction_templates", "language", "instruction phrasings: train set or unseen paraphrases",
          ("language.template_set",), "choice", {}, choices=("train", "unseen")),
    _axis("coordinate_convention", "language", "coordinates in the text: 0-based, 1-based or Go letters",
          ("language.convention",), "choice", {}, choices=("zero_based", "one_based", "go_letters")),
    _axis("distractor_words", "language", "irrelevant words before and after the instruction",
          ("language.distractor_words",), "bool", {"on": True, "off": False}),
    _axis("image_noise", "image", "Gaussian sensor noise std in [0, 1] intensity units", ("image.noise_std",),
          "float", {"low": 0.02, "medium": 0.05, "high": 0.1}, bounds=((0.0, 0.2),)),
    _axis("image_blur", "image", "Gaussian blur sigma in pixels of the rendered frame", ("image.blur_sigma_px",),
          "float",
          {"slight": 0.8, "strong": 2.0}, bounds=((0.0, 4.0),)),
    _axis("jpeg_quality", "image", "re-encode every frame as JPEG at this quality (off = no artefacts)",
          ("image.jpeg_quality",), "optional_int", {"off": None, "medium": 40, "low": 15}, bounds=((5, 100),)),
    _axis("n_distractors", "scene", "distractor objects on the table (off the board and tray)",
          ("scene.n_distractors",), "int", {"few": 2, "many": 5}, bounds=((0, 8),)),
    _axis("board_position", "scene", "board displacement on the table (x forward, y left; m)",
          ("scene.board_offset_m",), "vector",
          {"near": (-0.04, 0.0), "far": (0.04, 0.0), "left": (0.0, 0.04), "right": (0.0, -0.03)},
          bounds=((-0.05, 0.05), (-0.03, 0.05)), size=2),
    _axis("board_yaw", "scene", "board rotation about the vertical (deg)", ("scene.board_yaw_deg",), "float",
          {"ccw": 15.0, "cw": -15.0}, bounds=((-20.0, 20.0),)),
    _axis("board_size", "scene", "n of the n x n board (the grid spacing shrinks past 9 x 9)",
          ("scene.board_size",), "int", {"small": 3, "medium": 7, "large": 9}, bounds=((3, 19),)),
    _axis("stone_color", "scene", "colour of the stone to place", ("scene.stone_color",), "choice", {},
          choices=("black", "white")),
    # ---------------------------------------------------------------- Go sequences (task: sequence grids)
    _axis("sequence_length", "sequence", "K: moves of the sequence to play", ("sequence.length",), "int",
          {"one": 1, "short": 3, "long": 8}, bounds=((1, 12),)),
    _axis("capture_bias", "sequence",
          "generated play: probability that a move captures (else ataris) when one can (captures frequency)",
          ("sequence.capture_bias",), "float", {"none": 0.0, "some": 0.5, "frequent": 0.9}, bounds=((0.0, 1.0),)),
    _axis("move_number", "sequence", "moves of the game before the start position (board fullness)",
          ("sequence.move_number",), "int", {"opening": 0, "early": 10, "middle": 20, "late": 30},
          bounds=((0, 300),)),
    _axis("plan_mode", "sequence", "the whole plan as one instruction (B D4, W C3, ...) instead of per subtask",
          ("sequence.plan_mode",), "bool", {"on": True, "off": False}),
    _axis("sequence_source", "sequence",
          "where the moves come from: generated (seeded play) or an SGF file or directory (a path, or one "
          "under the shipped bomb_data/configs/sgf/)", ("sequence.source", "sequence.sgf"), "text",
          {"nominal": "generated"}, to_fields=lambda v: {"sequence.source": "generated", "sequence.sgf": None}
          if v == "generated" else {"sequence.source": "sgf", "sequence.sgf": v}),
    _axis("rule_instruction", "sequence",
          "the first move named by what it must do (capture the stones in atari / save the group in atari), "
          "the position chosen so that exactly one move does it", ("sequence.rule_instruction",), "choice", {},
          choices=("none", "capture", "save")),
]

AXES: dict[str, Axis] = {a.name: a for a in _AXES}


def get_axis(name: str, where: str = "axis") -> Axis:
    """The axis called ``name``.

    Raises:
        ConfigError: unknown axis (one line listing the known ones).
    """
    try:
        return AXES[name]
    except KeyError:
        raise ConfigError(f"{where}: unknown axis {name!r}, expected one of ({', '.join(AXES)})") from None
