"""Checks of a sequence's parameters before anything runs, for grids and ``generate`` (no MuJoCo).

``check_sequence(sp, n, where)`` refuses, in one line, a ``SequenceParams`` that cannot give an
episode on an n x n board: an SGF source whose files are malformed, of another board size, illegal
or a pass up to the end of the sequence, or shorter than ``move_number + length``; generated play
longer than half the board's points (past it the seeded player can run out of legal moves); a
rule-derived instruction before move ``RULE_MIN_MOVE_NUMBER`` of generated play, or one whose unique
move is not an SGF game's next move. ``sequence_run``
decides what a ``generate`` run of the sequence task uses: its configuration (``task: sequence``)
and the largest scene.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from .params import SequenceParams

if TYPE_CHECKING:
    from ..config import BombConfig

RULE_MIN_MOVE_NUMBER = 10  # generated play with a rule-derived instruction: the earliest start position

# Axes of the single task that a game decides in a sequence grid (the stones on the board, their colour).
PLACE_ONLY_AXES = ("n_board_stones", "stone_layout", "stone_color", "active_stone_position")


def generated_limit(n: int) -> int:
    """The most moves (``move_number + length``) of generated play accepted on an n x n board."""
    return n * n // 2


@lru_cache(maxsize=512)
def _sgf_ok(path: str, n: int, move_number: int, length: int, rule: str) -> None:
    from .rules import sequence_from_sgf

    sequence_from_sgf(path, n, move_number, length, rule)  # type: ignore[arg-type]


def check_sequence(sp: SequenceParams, n: int, where: str) -> None:
    """Refuse ``sp`` on an n x n board (see the module docstring).

    Raises:
        ConfigError: one line starting with ``where``.
    """
    from .rules import sgf_files

    if sp.source == "generated":
        limit = generated_limit(n)
        if sp.move_number + sp.length > limit:
            raise ConfigError(f"{where}: sequence.move_number + sequence.length: expected at most {limit} moves of "
                              f"generated play on a {n}x{n} board (half its points: past it the seeded player can "
                              f"run out of legal moves), given {sp.move_number} + {sp.length}")
        if sp.rule_instruction != "none" and sp.move_number < RULE_MIN_MOVE_NUMBER:
            raise ConfigError(f"{where}: sequence.move_number: expected at least {RULE_MIN_MOVE_NUMBER} with "
                              f"rule_instruction {sp.rule_instruction} (earlier positions rarely have a group in "
                              f"atari), given {sp.move_number}")
        return
    if not sp.sgf:
        raise ConfigError(f"{where}: sequence.sgf: expected an .sgf file or a directory for source: sgf, given none")
    try:
        for f in sgf_files(sp.sgf):
            _sgf_ok(str(f), n, sp.move_number, sp.length, sp.rule_instruction)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def sequence_board_size(p: Any) -> int:
    """The board of a sequence episode of ``EpisodeParams`` p: ``sequence.board_size``, else the scene's."""
    return int(p.sequence.board_size or p.scene.board_size)


def sequence_run(cfg: BombConfig, grid: Any) -> tuple[BombConfig, int]:
    """The configuration a sequence ``generate`` run uses, and the most stones its scenes hold.

    A sequence grid (``task: sequence``) makes the run a sequence run; its cells carry the sequence
    parameters, so the configuration's ``sequence:`` section must be left at its defaults. A place
    grid with ``task: sequence`` in the configuration uses the configuration's section for every cell.

    Raises:
        ConfigError: one line (fixed horizon; a sequence section beside a sequence grid; bad sources).
    """
    if cfg.generate.fixed_horizon is not None:
        raise ConfigError("generate.fixed_horizon: not available with task: sequence (episodes end when the "
                          "sequence does)")
    if grid.task == "sequence":
        default = SequenceParams()
        given = sorted(k for k in type(default).model_fields if getattr(cfg.sequence, k) != getattr(default, k))
        if given:
            raise ConfigError(f"sequence: the configuration (or --sgf) sets {', '.join(given)}, but grid {grid.name} "
                              "is a sequence grid (task: sequence) whose cells set the sequence; put them in the "
                              "grid's sequence: section or its axes")
        cfg = cfg.model_copy(update={"task": "sequence"})
        cells = [c.params for c in grid.cells()]
        sizes = {sequence_board_size(p) for p in cells}
        return cfg, max(sizes) ** 2 + max(p.sequence.length for p in cells)
    sp = cfg.sequence
    sizes = {sp.board_size} if sp.board_size else {c.params.scene.board_size for c in grid.cells()}
    for n in sorted(sizes):
        check_sequence(sp, n, "sequence")
    return cfg, max(sizes) ** 2 + sp.length
