"""Which episodes an evaluation runs: one ``EpisodeSpec`` per episode, each carrying its cell.

Episodes are (cell, j) for every cell of the grid (held-out levels included) and j < K; episode
(c, j) runs with ``c.params`` and the seed ``eval_seed(root seed, c.id, j)``, so its content
depends on nothing else (not on worker count or order). A ``random`` grid is sampled as generation
samples it: episode ``random/k`` (k < K x listed cells) takes every axis at once from
``grid.episode_params(root seed, k)`` and the seed ``eval_seed(root seed, "random", k)``.
``replay:STORE`` instead runs every episode of the store with its recorded seed, parameters and target.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import BombConfig
from ..errors import BombDataError, ConfigError, PolicyError
from ..seeds import eval_seed

#: Cell id of every episode of a ``random`` grid (each samples its own combination of levels).
RANDOM_CELL = "random"


@dataclass(frozen=True)
class EpisodeCell:
    """The cell an episode belongs to, as structured data: what results are grouped by.

    Attributes:
        id: the cell id (``nominal``, ``axis=level``, ``a=x,b=y``, or ``random``).
        axis, level: the perturbed axis and its level id, when the cell perturbs exactly one axis.
        levels: (axis, level id) of every non-nominal level of the cell.
        heldout: some level of the cell is held out of training.
        grid_levels: (axis, level id) of every axis of the grid, where the cell takes one level of each.
    """

    id: str
    axis: str | None = None
    level: str | None = None
    levels: tuple[tuple[str, str], ...] = ()
    heldout: bool = False
    grid_levels: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, cell: Any, cell_id: str | None = None) -> EpisodeCell:
        """The episode cell of a grid's ``Cell`` (under ``cell_id`` if given: a random grid's episodes
        are all in the cell ``random``)."""
        return cls(cell.id if cell_id is None else cell_id, cell.axis, cell.level,
                   tuple(tuple(x) for x in cell.levels), bool(cell.heldout), tuple(cell.grid_levels))

    @classmethod
    def of_stored(cls, meta: dict[str, Any]) -> EpisodeCell:
        """The cell of a stored episode (its metadata). A store records the cell by its id alone, so its
        levels are read back from the id, written ``a=x,b=y`` by ``perturb.grid`` (one level: its axis
        and level); held out is the episode's split."""
        cid = str(meta.get("cell_id") or "nominal")
        pairs = tuple(tuple(x.split("=", 1)) for x in cid.split(",") if "=" in x)
        axis, level = pairs[0] if len(pairs) == 1 and "," not in cid else (None, None)
        return cls(cid, axis, level, pairs, meta.get("split") == "heldout")


@dataclass(frozen=True)
class EpisodeSpec:
    """One evaluation episode (small and picklable; parameters as a JSON dict)."""

    episode_id: str
    cell_id: str
    j: int
    seed: int
    params: dict[str, Any]
    axis: str | None = None
    level: str | None = None
    levels: tuple[tuple[str, str], ...] = ()
    heldout: bool = False
    target: tuple[int, int] | None = None
    source_index: int | None = None
    source_success: bool | None = None
    record_video: bool = False
    grid_levels: tuple[tuple[str, str], ...] = ()  # every axis's level (random and full grids)

    @classmethod
    def in_cell(cls, cell: EpisodeCell, j: int, seed: int, params: dict[str, Any], **more: Any) -> EpisodeSpec:
        """Episode ``j`` of ``cell`` (id ``cell/j``)."""
        return cls(f"{cell.id}/{j}", cell.id, j, seed, params, cell.axis, cell.level, cell.levels, cell.heldout,
                   grid_levels=cell.grid_levels, **more)

    @property
    def cell(self) -> EpisodeCell:
        return EpisodeCell(self.cell_id, self.axis, self.level, self.levels, self.heldout, self.grid_levels)


def grid_episodes(grid: Any, k: int, root_seed: int, videos_per_cell: int) -> list[EpisodeSpec]:
    """Cells x K episode specs of a grid, cell by cell; for a ``random`` grid, K x (listed cells)
    episodes whose levels are drawn together by ``grid.episode_params`` (as generation draws them)."""
    if grid.mode == "random":
        out = []
        for i in range(k * len(grid.cells())):
            c, p = grid.episode_params(root_seed, i)
            out.append(EpisodeSpec.in_cell(EpisodeCell.of(c, RANDOM_CELL), i, eval_seed(root_seed, RANDOM_CELL, i),
                                           p.model_dump(mode="json"), record_video=i < videos_per_cell))
        return out
    return [EpisodeSpec.in_cell(EpisodeCell.of(c), j, eval_seed(root_seed, c.id, j), c.params.model_dump(mode="json"),
                                record_video=j < videos_per_cell)
            for c in grid.cells() for j in range(k)]


def store_config(store: Any, label: object, default: BombConfig) -> BombConfig:
    """The configuration a store was made with (``default`` for a store that records none); ConfigError
    in one line naming ``label`` when it is not valid."""
    if not store.config:
        return default
    from pydantic import ValidationError

    from ..config import format_validation_error

    try:
        return BombConfig.model_validate(store.config)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, f"{label} config")) from None


def store_episodes(store: Any, videos_per_cell: int) -> list[EpisodeSpec]:
    """One spec per episode of a store, with its recorded seed, parameters and target (replay)."""
    out, per_cell = [], {}
    for i, m in enumerate(store.episodes):
        cell = EpisodeCell.of_stored(m)
        j = per_cell.get(cell.id, 0)
        per_cell[cell.id] = j + 1
        out.append(EpisodeSpec.in_cell(cell, j, int(m["seed"]), dict(m.get("params") or {}),
                                       target=tuple(m["target"]) if m.get("target") else None, source_index=i,
                                       source_success=bool(m.get("success")), record_video=j < videos_per_cell))
    return out


@dataclass
class EvalPlan:
    """What an evaluation runs: the configuration (a replayed store's own), the episodes, the grid's
    description for the run key, and what ``run.json`` records of the grid (mode, levels per axis)."""

    cfg: BombConfig
    episodes: list[EpisodeSpec]
    grid: dict[str, Any]
    grid_meta: dict[str, Any] = field(default_factory=dict)


def plan_evaluation(cfg: BombConfig, policy: str, spec: Any, grid: str, episodes_per_cell: int, seed: int,
                    videos_per_cell: int) -> EvalPlan:
    """The episodes of ``policy`` (parsed: ``spec``): every episode of the store for ``replay:STORE``,
    else K per cell of ``grid``.

    Raises:
        PolicyError: the replayed store cannot be opened. StoreError: it holds no episodes.
        ConfigError: its configuration is invalid; an unknown grid, or one whose scenes leave too few
            empty intersections.
    """
    from .sequence import is_sequence_run, sequence_config

    if spec.kind == "replay":
        from ..store import EpisodeStore

        try:
            store = EpisodeStore(spec.target)
        except BombDataError as exc:
            raise PolicyError(f"policy {policy}: {exc}") from None
        store.require_nonempty()
        cfg = store_config(store, spec.target, cfg)
        if is_sequence_run(cfg, store=store):  # GoSequence episodes (evaluate/sequence.py)
            return EvalPlan(cfg.model_copy(update={"task": "sequence"}), store_episodes(store, videos_per_cell),
                            {"name": f"replay:{spec.target}", "hash": store.description.get("config_hash")},
                            {"task": "sequence"})
        return EvalPlan(cfg, store_episodes(store, videos_per_cell),
                        {"name": f"replay:{spec.target}", "hash": store.description.get("config_hash")})
    from ..perturb.grid import load_grid

    g = load_grid(grid)
    sequence = is_sequence_run(cfg, g)
    if sequence:  # GoSequence episodes (evaluate/sequence.py); bad sources: one line, nothing written
        cfg = sequence_config(cfg, g)
    else:
        g.require_empty_points(cfg.sim.min_empty_points)
    return EvalPlan(cfg, grid_episodes(g, episodes_per_cell, seed, videos_per_cell),
                    {"name": g.name, "hash": g.hash, "cells": len(g.cells())},
                    {"grid_mode": g.mode,  # the levels of each axis, in grid order (per-axis marginals)
                     "grid_axes": {a: [[lv.id, lv.heldout] for lv in lvs] for a, lvs in g.levels.items()},
                     **({"task": "sequence"} if sequence else {})})
