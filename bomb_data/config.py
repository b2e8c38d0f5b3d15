"""Typed, frozen configuration (pydantic, unknown keys forbidden) loaded from YAML.

The defaults live in ``bomb_data/configs/default.yaml`` (kept equal to the model defaults by a test). Errors
are one line naming the key, what was expected and what was given.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from ._model import StrictFrozen
from ._resources import shipped
from ._yaml import read_yaml
from .errors import ConfigError
from .params import MIN_EMPTY_POINTS
from .sequence.params import SequenceParams

DEFAULT_CONFIG = shipped("default.yaml")  # package data, read through importlib.resources


class SimConfig(StrictFrozen):
    """Simulator settings that are not perturbed."""

    image_height: int = Field(256, ge=16, le=2048)
    image_width: int = Field(256, ge=16, le=2048)
    control_hz: float = Field(10.0, gt=0, le=100)
    physics_dt: float = Field(0.004, gt=0, le=0.01)
    max_steps: int = Field(160, ge=10, le=10_000, description="step limit of an episode")
    shadow_size: int = Field(512, ge=0, le=8192,
                             description="shadow map size when a scene casts shadows; 0 disables shadows")
    msaa_samples: int = Field(0, ge=0, le=16, description="multisample anti-aliasing (costs render time)")
    grid_spacing_m: float | None = Field(None, gt=0.01, le=0.1, description="None = fit the board to the workspace")
    max_spacing_m: float = Field(0.05, gt=0.01, le=0.1)
    max_grid_extent_m: float = Field(0.44, gt=0.05, le=0.6)
    stone_diameter_ratio: float = Field(0.88, gt=0.5, lt=0.98, description="stone diameter / grid spacing")
    stone_thickness_ratio: float = Field(0.4, gt=0.2, le=0.8, description="stone thickness / diameter")
    success_tolerance_cells: float = Field(0.3, gt=0, le=0.5)
    displaced_tolerance_m: float = Field(0.005, gt=0)
    max_tilt_deg: float = Field(10.0, gt=0, le=45)
    min_empty_points: int = Field(MIN_EMPTY_POINTS, ge=1, le=360,
                                  description="empty intersections every episode keeps; the target is drawn among "
                                              "them (more board stones are a configuration error)")


class ExpertConfig(StrictFrozen):
    """Scripted expert settings."""

    speed_m_s: tuple[float, float] = (0.18, 0.26)
    clearance_m: tuple[float, float] = (0.07, 0.10)
    xy_jitter_m: float = Field(0.001, ge=0, le=0.005)
    action_noise_std: float = Field(0.0, ge=0, le=0.05,
                                    description="noise added to executed actions; labels stay clean")


class GenerateConfig(StrictFrozen):
    """Generation run settings (episode content depends on seed, grid, sim and expert only)."""

    n: int = Field(20, ge=1)
    seed: int = Field(0, ge=0)
    grid: str = "nominal"
    val_fraction: float = Field(0.1, ge=0, lt=1)
    max_attempts: int = Field(5, ge=1, le=100, description="seeds tried per episode index before giving up")
    keep_failures: bool = False
    jpeg_quality: int = Field(95, ge=50, le=100)
    fixed_horizon: int | None = Field(None, ge=10, le=10_000,
                                      description="record every episode for exactly this many steps, holding "
                                                  "still after the task ends (ACT/ALOHA-style); None = end with "
                                                  "the task")


class BombConfig(StrictFrozen):
    """The whole configuration."""

    sim: SimConfig = SimConfig()
    expert: ExpertConfig = ExpertConfig()
    generate: GenerateConfig = GenerateConfig()
    task: Literal["place", "sequence"] = Field("place", description="place: bomb_data/GoPlace-v0, one stone; "
                                                                   "sequence: bomb_data/GoSequence-v0")
    sequence: SequenceParams = SequenceParams()

    @model_validator(mode="after")
    def _check(self) -> BombConfig:
        lo, hi = self.expert.speed_m_s
        if not 0 < lo <= hi:
            raise ValueError(f"expert.speed_m_s must be 0 < low <= high, got {self.expert.speed_m_s}")
        return self

    def content_hash(self) -> str:
        """Hash of everything that determines episode content (not n, workers or paths)."""
        d = self.model_dump(mode="json")
        # (fixed_horizon only when set, so configs without it keep the hash they had before it existed)
        d["generate"] = {k: v for k, v in d["generate"].items()
                         if k not in ("n",) and not (k == "fixed_horizon" and v is None)}
        if d["task"] == "place":  # (task and sequence only for sequence stores: older hashes stay valid)
            del d["task"], d["sequence"]
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line: the first problem with its key path, the expectation and the given value."""
    errs = exc.errors()
    e = errs[0]
    key = ".".join(str(x) for x in e["loc"]) or "(top level)"
    msg = e["msg"]
    if e["type"] == "extra_forbidden":
        msg = "unknown key"
    given = e.get("input")
    given_s = json.dumps(given, default=str) if not isinstance(given, dict) else "{...}"
    more = f" (+{len(errs) - 1} more)" if len(errs) > 1 else ""
    return f"{source}: {key}: {msg} (given {given_s[:80]}){more}"


_SCALAR_KEYS = ("task",)  # top-level keys that are values, not sections


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> BombConfig:
    """Load the shipped ``bomb_data/configs/default.yaml`` or the file ``path``, apply nested ``overrides``, validate.

    Raises:
        ConfigError: unknown key, wrong type or impossible value (one line).
    """
    src = Path(path) if path is not None else DEFAULT_CONFIG
    data: dict[str, Any] = {}
    if path is not None or src.is_file():
        data = read_yaml(src, "config file") or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{src}: expected a mapping at the top level, found {type(data).__name__}")
        for section, values in data.items():
            if values is not None and not isinstance(values, dict) and section not in _SCALAR_KEYS:
                raise ConfigError(f"{src}: section {section!r} must be a mapping of keys, found "
                                  f"{type(values).__name__}")
    for section, values in (overrides or {}).items():
        if section in _SCALAR_KEYS:
            data[section] = values
            continue
        data.setdefault(section, {})
        data[section] = {**(data[section] or {}), **values}
    try:
        return BombConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, src.name)) from None
