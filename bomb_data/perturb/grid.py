"""Perturbation grids: which axes vary, at which levels, and how episodes are assigned to cells.

A grid file (shipped ``bomb_data/configs/grids/NAME.yaml``, or any path) looks like::

    description: one line for people
    task: place                  # place (default) | sequence: the task family of every cell
    mode: one-at-a-time          # nominal | one-at-a-time | full | random
    max_cells: 1000              # full: refuse a factorial with more cells than this
    heldout_rate: 0.1            # random: fraction of episodes that use a held-out level
    axes:
      table_color:
        levels: [red, blue, [0.2, 0.6, 0.2], {name: olive, value: [0.4, 0.4, 0.1]}]
        heldout: [blue]          # level ids kept out of training

Modes:

- ``nominal``: one cell, the nominal episode (no axes).
- ``one-at-a-time``: the nominal cell, then each non-nominal level of each axis with every other
  axis nominal (cell id ``axis=level``).
- ``full``: the factorial product of the listed levels (cell id ``a=x,b=y`` naming the non-nominal
  levels); more than ``max_cells`` cells is an error.
- ``random``: every episode samples every axis uniformly among its training levels; with
  probability ``heldout_rate`` one axis that has held-out levels takes one of them instead (the
  episode is then held out). ``cells()`` lists the levels sampled from, one cell per level (for
  previews and ``grid show``); episodes are not run per listed cell.

A sequence grid (``task: sequence``) also has a ``sequence:`` section, the nominal
``SequenceParams`` of its cells (docs/sequences.md), and may list the ``sequence`` axes
(``sequence_length``, ``capture_bias``, ``move_number``, ``plan_mode``, ``sequence_source``); every
cell's ``params.sequence`` is then the whole ``SequenceParams`` of its episodes. A place grid may not
list them, and a sequence grid may not list the axes a game decides (``n_board_stones``,
``stone_layout``, ``stone_color``, ``active_stone_position``). Every sequence a sequence grid can
make (every cell; in random mode every combination of its sequence and ``board_size`` levels) is
checked when it loads (``bomb_data.sequence.check``).

Episode k's parameters depend only on (seed, k, grid content): in the enumerated modes episode k
uses cell ``k mod n_cells``; in random mode the draw uses ``SeedSequence([seed, grid_hash32, k])``.
``bomb-data generate`` and ``bomb-data eval`` both take a random grid's episodes from
``episode_params(seed, k)``, so the same (seed, k, grid) gives the same parameters in both.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, ValidationError

from .._model import StrictFrozen
from .._resources import shipped
from .._yaml import read_yaml
from ..errors import ConfigError
from ..params import MIN_EMPTY_POINTS, EpisodeParams, check_room
from ..sequence.params import SequenceParams
from .axes import NOMINAL, NOMINAL_SEQUENCE, get_axis

if TYPE_CHECKING:
    from importlib.abc import Traversable

log = logging.getLogger(__name__)

GRIDS_DIR = shipped("grids")  # package data, read through importlib.resources
Mode = Literal["nominal", "one-at-a-time", "full", "random"]
NOMINAL_ID = "nominal"


class NamedLevel(StrictFrozen):
    """A raw level value with a name of its own (``{name: olive, value: [0.4, 0.4, 0.1]}``)."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.+-]+$")
    value: Any


class AxisSpec(StrictFrozen):
    """The levels of one axis in a grid file."""

    levels: tuple[NamedLevel | str | float | int | bool | tuple[float, ...] | None, ...] = Field(min_length=1)
    heldout: tuple[str | float | int, ...] = ()


class GridSpec(StrictFrozen):
    """A grid file, validated (unknown keys are errors)."""

    name: str | None = None
    description: str = ""
    task: Literal["place", "sequence"] = Field("place", description="task family of every cell")
    sequence: dict[str, Any] | None = Field(None, description="task: sequence: the cells' nominal SequenceParams")
    mode: Mode
    max_cells: int = Field(1000, ge=1, le=1_000_000, description="full: the largest factorial accepted")
    heldout_rate: float = Field(0.0, ge=0, le=1, description="random: fraction of held-out episodes")
    axes: dict[str, AxisSpec] = Field(default_factory=dict)


@dataclass(frozen=True)
class Level:
    """A resolved level of an axis."""

    axis: str
    id: str
    value: Any
    heldout: bool
    nominal: bool


@dataclass(frozen=True)
class Cell:
    """A named, hashable set of episode parameters.

    Attributes:
        id: stable, readable id: ``nominal``, ``axis=level`` or ``a=x,b=y`` (non-nominal levels only).
        params: the resolved ``EpisodeParams``.
        axis: the perturbed axis of a one-at-a-time cell (None for nominal and combined cells).
        level: the level id of that axis (None likewise).
        heldout: some level of the cell is held out of training.
        levels: (axis, level id) of every non-nominal level in the cell.
        grid_levels: (axis, level id) of every axis of the grid, nominal levels included, in grid
            order, where the cell takes one listed level of every axis (cells of ``full`` grids and
            the sampled cells of ``random`` grids); empty otherwise. Per-axis marginals group
            episodes by it.
    """

    id: str
    params: EpisodeParams
    axis: str | None = None
    level: str | None = None
    heldout: bool = False
    levels: tuple[tuple[str, str], ...] = field(default=())
    grid_levels: tuple[tuple[str, str], ...] = field(default=())


def _to_jsonable(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def compose(levels: list[Level], where: str, sequence: SequenceParams | None = None) -> EpisodeParams:
    """Nominal ``EpisodeParams`` updated by the levels (disjoint fields), validated; with ``sequence``
    (a sequence grid's nominal sequence) its ``sequence`` is that updated by the sequence levels.

    Raises:
        ConfigError: the combination is impossible (e.g. more stones than the board holds with the
            default ``sim.min_empty_points`` intersections left empty, or a sequence that cannot be
            played: ``bomb_data.sequence.check``).
    """
    data = NOMINAL.model_dump()
    if sequence is not None:
        data["sequence"] = sequence.model_dump()
    for lv in levels:
        for section, fields in get_axis(lv.axis).updates(lv.value).items():
            data[section].update(fields)
    try:
        p = EpisodeParams.model_validate(data)
    except ValidationError as exc:
        from ..config import format_validation_error

        raise ConfigError(format_validation_error(exc, where)) from None
    check_room(p.scene.board_size, p.scene.n_board_stones, MIN_EMPTY_POINTS, where)
    if p.sequence is not None:
        from ..sequence.check import check_sequence, sequence_board_size

        check_sequence(p.sequence, sequence_board_size(p), where)
    return p


def _cell(levels: list[Level], where: str, axis: str | None = None, every_axis: bool = False,
          sequence: SequenceParams | None = None) -> Cell:
    """The cell of ``levels``; ``every_axis``: they are one level of each axis of the grid (``grid_levels``)."""
    active = [lv for lv in levels if not lv.nominal]
    cid = ",".join(f"{lv.axis}={lv.id}" for lv in active) or NOMINAL_ID
    one = active[0] if axis is not None and active else None
    return Cell(id=cid, params=compose(active, f"{where}: cell {cid}", sequence), axis=one.axis if one else None,
                level=one.id if one else None, heldout=any(lv.heldout for lv in levels),
                levels=tuple((lv.axis, lv.id) for lv in active),
                grid_levels=tuple((lv.axis, lv.id) for lv in levels) if every_axis else ())


class Grid:
    """A loaded, validated perturbation grid.

    Use ``load_grid(NAME_OR_PATH)``; ``Grid(spec, name)`` builds one from a ``GridSpec``.

    Raises (constructor):
        ConfigError: unknown axis, level out of range, duplicate or unknown held-out level,
            impossible combination, or a factorial past ``max_cells``.
    """

    def __init__(self, spec: GridSpec, name: str, source: str | None = None):
        self.spec = spec
        self.name = spec.name or name
        self.source = source or self.name
        self.mode: str = spec.mode
        where = f"grid {self.source}"
        if spec.mode == "nominal" and spec.axes:
            raise ConfigError(f"{where}: axes: expected none in mode nominal, given {', '.join(spec.axes)}")
        if spec.mode != "nominal" and not spec.axes:  # else silently one nominal cell
            raise ConfigError(f"{where}: axes: expected at least one axis in mode {spec.mode}, given none "
                              "(mode: nominal is the nominal episode alone)")
        self.task: str = spec.task
        self.sequence: SequenceParams | None = _sequence_base(spec, where)
        self.levels: dict[str, list[Level]] = {}
        for axis_name, aspec in spec.axes.items():
            self._check_task(axis_name, f"{where}: axes.{axis_name}")
            self.levels[axis_name] = self._resolve_axis(axis_name, aspec, f"{where}: axes", self.sequence)
        self.hash = self._content_hash()
        self.hash32 = int(self.hash[:8], 16)
        self._cells: list[Cell] | None = None
        self._check(where)

    # ---------------------------------------------------------------------------------- loading
    def _check_task(self, axis_name: str, where: str) -> None:
        """Refuse an axis the grid's task family does not have (one line)."""
        from ..sequence.check import PLACE_ONLY_AXES

        axis = get_axis(axis_name, where.rsplit(".", 1)[0])
        if self.task == "place" and axis.kind == "sequence":
            raise ConfigError(f"{where}: a sequence axis, expected task: sequence in the grid file (this grid's "
                              "task is place)")
        if self.task == "sequence" and axis_name in PLACE_ONLY_AXES:
            raise ConfigError(f"{where}: decided by the game in a sequence grid (task: sequence); vary "
                              "move_number or sequence_source instead")
        if self.task == "sequence" and axis_name == "board_size" and self.sequence is not None \
                and self.sequence.board_size is not None:
            raise ConfigError(f"{where}: the grid's sequence.board_size ({self.sequence.board_size}) replaces the "
                              "scene's board size in every cell; set sequence.board_size: null to vary it")

    @staticmethod
    def _resolve_axis(axis_name: str, aspec: AxisSpec, where: str,
                      sequence: SequenceParams | None = None) -> list[Level]:
        axis = get_axis(axis_name, where)
        out: list[Level] = []
        seen: set[str] = set()
        for i, raw in enumerate(aspec.levels):
            w = f"{where}.{axis_name}.levels[{i}]"
            if isinstance(raw, NamedLevel):
                value, lid = axis.raw_value(raw.value, w), raw.name
            else:
                value, lid = axis.raw_value(raw, w), axis.level_id(raw)
            if lid in seen:
                raise ConfigError(f"{w}: expected distinct levels, given {lid!r} twice")
            seen.add(lid)
            nominal = (_sequence_nominal(axis.updates(value), sequence) if axis.kind == "sequence" and sequence
                       else axis.is_nominal(value))
            out.append(Level(axis=axis_name, id=lid, value=value, heldout=False, nominal=nominal))
        ids = [lv.id for lv in out]
        held = []
        for h in aspec.heldout:
            hid = axis.level_id(h)
            if hid not in ids:
                raise ConfigError(f"{where}.{axis_name}.heldout: expected one of the levels ({', '.join(ids)}), "
                                  f"given {h!r}")
            held.append(hid)
        return [Level(lv.axis, lv.id, lv.value, lv.id in held, lv.nominal) for lv in out]

    def _content_hash(self) -> str:
        content: dict[str, Any] = {
            "mode": self.spec.mode,
            "axes": [[a, [[lv.id, _to_jsonable(lv.value), lv.heldout] for lv in lvs]]
                     for a, lvs in self.levels.items()],
        }
        if self.spec.mode == "full":
            content["max_cells"] = self.spec.max_cells
        if self.spec.mode == "random":
            content["heldout_rate"] = self.spec.heldout_rate
        if self.sequence is not None:  # (place grids hash as before)
            content["task"] = self.task
            content["sequence"] = self.sequence.model_dump(mode="json")
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]

    def _check(self, where: str) -> None:
        mode = self.spec.mode
        if mode == "full":
            n = int(np.prod([len(v) for v in self.levels.values()], dtype=np.float64)) if self.levels else 1
            if n > self.spec.max_cells:
                sizes = " x ".join(f"{len(v)} {a}" for a, v in self.levels.items())
                raise ConfigError(f"{where}: max_cells: the full factorial has {n} cells ({sizes}), expected at most "
                                  f"{self.spec.max_cells}; raise max_cells or use mode one-at-a-time or random")
        if mode == "random":
            for a, lvs in self.levels.items():
                if all(lv.heldout for lv in lvs):
                    raise ConfigError(f"{where}: axes.{a}.heldout: expected at least one training level in mode "
                                      f"random, given all {len(lvs)} levels held out")
            if self.spec.heldout_rate > 0 and not any(lv.heldout for lvs in self.levels.values() for lv in lvs):
                raise ConfigError(f"{where}: heldout_rate: expected 0 when no level is held out, "
                                  f"given {self.spec.heldout_rate}")
            # The worst combination must be possible: most stones on the smallest board.
            stones = [lv for lv in self.levels.get("n_board_stones", [])]
            sizes = [lv for lv in self.levels.get("board_size", [])]
            if stones and sizes:
                worst = [max(stones, key=lambda lv: lv.value), min(sizes, key=lambda lv: lv.value)]
                compose(worst, f"{where}: combination {worst[0].axis}={worst[0].id},{worst[1].axis}={worst[1].id}")
            if self.sequence is not None:  # episodes combine levels: every sequence they can make
                rel = [lvs for a, lvs in self.levels.items() if a == "board_size" or get_axis(a).kind == "sequence"]
                for combo in itertools.product(*rel):
                    active = [lv for lv in combo if not lv.nominal]
                    ids = ",".join(f"{lv.axis}={lv.id}" for lv in active) or NOMINAL_ID
                    compose(active, f"{where}: combination {ids}", self.sequence)
        self.cells()  # validates every cell

    # ------------------------------------------------------------------------------------ cells
    def cells(self) -> list[Cell]:
        """The grid's cells, in a stable order (nominal first where it is a cell).

        In ``random`` mode: the nominal cell and one cell per non-nominal level (the levels the
        episodes combine), as in one-at-a-time.
        """
        if self._cells is not None:
            return self._cells
        where = f"grid {self.source}"
        mode = self.spec.mode
        cells: list[Cell] = []
        sq = self.sequence
        if mode in ("nominal", "one-at-a-time", "random"):
            cells.append(_cell([], where, sequence=sq))
            for lvs in self.levels.values():
                for lv in lvs:
                    if not lv.nominal:
                        cells.append(_cell([lv], where, axis=lv.axis, sequence=sq))
        else:  # full
            for combo in itertools.product(*self.levels.values()):
                cells.append(_cell(list(combo), where, every_axis=True, sequence=sq))
        seen: dict[str, int] = {}
        for c in cells:
            if c.id in seen:
                raise ConfigError(f"{where}: expected distinct cells, given cell {c.id!r} twice "
                                  "(two levels of an axis equal to nominal?)")
            seen[c.id] = 1
        self._cells = cells
        return cells

    def require_empty_points(self, min_empty_points: int) -> None:
        """Refuse the grid when some episode would leave fewer than ``min_empty_points`` empty
        intersections (``sim.min_empty_points`` of the configuration in use).

        Raises:
            ConfigError: one line naming the cell (or, in random mode, the worst combination).
        """
        where = f"grid {self.source}"
        for c in self.cells():
            ps = c.params.scene
            check_room(ps.board_size, ps.n_board_stones, min_empty_points, f"{where}: cell {c.id}")
        if self.mode == "random":  # episodes combine levels: most stones on the smallest board
            sizes = [lv.value for lv in self.levels.get("board_size", [])] or [NOMINAL.scene.board_size]
            stones = [lv.value for lv in self.levels.get("n_board_stones", [])] or [NOMINAL.scene.n_board_stones]
            check_room(int(min(sizes)), int(max(stones)), min_empty_points,
                       f"{where}: combination n_board_stones={max(stones)},board_size={min(sizes)}")

    @property
    def max_board_stones(self) -> int:
        """The most stones on the board any episode of this grid can have."""
        return max(c.params.scene.n_board_stones for c in self.cells())

    def rng(self, seed: int, episode_index: int) -> np.random.Generator:
        """The generator of episode ``episode_index``: ``SeedSequence([seed, grid_hash32, index])``."""
        return np.random.default_rng(np.random.SeedSequence([int(seed), self.hash32, int(episode_index)]))

    def episode_params(self, seed: int, episode_index: int) -> tuple[Cell, EpisodeParams]:
        """Cell and parameters of episode ``episode_index``; depends only on (seed, index, grid content)."""
        if episode_index < 0:
            raise ValueError(f"episode_index: expected >= 0, found {episode_index}")
        if self.spec.mode != "random":
            cells = self.cells()
            c = cells[episode_index % len(cells)]
            return c, c.params
        rng = self.rng(seed, episode_index)
        held_axes = [a for a, lvs in self.levels.items() if any(lv.heldout for lv in lvs)]
        heldout_axis = None
        if held_axes and rng.random() < self.spec.heldout_rate:
            heldout_axis = held_axes[int(rng.integers(len(held_axes)))]
        chosen: list[Level] = []
        for a, lvs in self.levels.items():
            pool = [lv for lv in lvs if lv.heldout == (a == heldout_axis)]
            chosen.append(pool[int(rng.integers(len(pool)))])
        c = _cell(chosen, f"grid {self.source}", every_axis=True, sequence=self.sequence)
        return c, c.params

    # ---------------------------------------------------------------------------------- reports
    def describe(self) -> dict[str, Any]:
        """JSON-ready description: name, mode, hash, axes with levels, and every cell's changes."""
        out = {
            "name": self.name,
            "description": self.spec.description,
            "task": self.task,
            "mode": self.mode,
            "hash": self.hash,
            "heldout_rate": self.spec.heldout_rate if self.mode == "random" else None,
            "axes": {a: [{"id": lv.id, "value": _to_jsonable(lv.value), "heldout": lv.heldout, "nominal": lv.nominal}
                         for lv in lvs] for a, lvs in self.levels.items()},
            "cells": [{"id": c.id, "heldout": c.heldout, "changes": changes(c.params, self.sequence)}
                      for c in self.cells()],
        }
        if self.sequence is not None:
            out["sequence"] = self.sequence.model_dump(mode="json")
        return out

    def __repr__(self) -> str:
        return f"Grid({self.name!r}, mode={self.mode!r}, cells={len(self.cells())}, hash={self.hash})"


def changes(p: EpisodeParams, sequence: SequenceParams | None = None) -> dict[str, Any]:
    """Dotted field -> value for every field of ``p`` that differs from the nominal episode (its
    ``sequence`` fields: from ``sequence``, a sequence grid's nominal, else ``SequenceParams()``)."""
    out: dict[str, Any] = {}
    for section in ("scene", "image", "language", "sequence"):
        cur = getattr(p, section)
        if cur is None:
            continue
        nom = (sequence or NOMINAL_SEQUENCE) if section == "sequence" else getattr(NOMINAL, section)
        for k in type(cur).model_fields:
            v = getattr(cur, k)
            if v != getattr(nom, k):
                out[f"{section}.{k}"] = _to_jsonable(v)
    return out


def _sequence_base(spec: GridSpec, where: str) -> SequenceParams | None:
    """A sequence grid's nominal ``SequenceParams`` (its ``sequence:`` section); None for a place grid."""
    if spec.task == "place":
        if spec.sequence is not None:
            raise ConfigError(f"{where}: sequence: expected only in a grid with task: sequence, given it in a "
                              "place grid")
        return None
    try:
        return SequenceParams.model_validate(spec.sequence or {})
    except ValidationError as exc:
        from ..config import format_validation_error

        raise ConfigError(format_validation_error(exc, f"{where}: sequence")) from None


def _sequence_nominal(updates: dict[str, dict[str, Any]], base: SequenceParams) -> bool:
    """A sequence level leaves the grid's nominal sequence unchanged."""
    return all(getattr(base, k) == v for k, v in updates.get("sequence", {}).items())


def list_grids(directory: Path | Traversable = GRIDS_DIR) -> list[str]:
    """Names of the grids shipped in ``bomb_data/configs/grids/`` (or of the ``*.yaml`` in ``directory``)."""
    return sorted(p.name[:-len(".yaml")] for p in directory.iterdir() if p.name.endswith(".yaml"))


def grid_from_dict(data: dict[str, Any], name: str = "inline", source: str | None = None) -> Grid:
    """Validate a grid given as a mapping (as read from YAML).

    Raises:
        ConfigError: one line naming the key, the expectation and the given value.
    """
    from ..config import format_validation_error

    src = source or name
    if not isinstance(data, dict):
        raise ConfigError(f"grid {src}: expected a mapping at the top level, given {type(data).__name__}")
    try:
        spec = GridSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, f"grid {src}")) from None
    return Grid(spec, name, src)


def load_grid(grid: str | Path | Grid) -> Grid:
    """Load a shipped grid by name (``bomb_data/configs/grids/NAME.yaml``) or a grid file by path.

    Raises:
        ConfigError: unknown name, missing file, invalid YAML or invalid content (one line).
    """
    if isinstance(grid, Grid):
        return grid
    s = str(grid)
    path: Path | Traversable = Path(s)
    if not (s.endswith((".yaml", ".yml")) or Path(s).exists() or "/" in s):
        path = GRIDS_DIR / f"{s}.yaml"
        if not path.is_file():
            raise ConfigError(f"grid: unknown grid {s!r}, expected one of ({', '.join(list_grids())}) or a YAML path")
    data = read_yaml(path, "grid")
    return grid_from_dict(data or {}, name=path.name.rsplit(".", 1)[0], source=path.name)
