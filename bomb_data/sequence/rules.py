"""Go sequences: a start position and the next K moves, from an SGF game record or generated play.

Rules (legality, captures, ko) come from ``sgfmill`` (its ``Board.play`` performs the captures and
returns the simple-ko point); this module only adds what sgfmill leaves to the caller: a move on an
occupied point, a suicide (sgfmill allows self-capture) and a retaking of a simple ko are illegal.

Coordinates are the project's 0-based ``(row, col)``: row 0 is the row farthest from the robot (the
top of a Go diagram), so an SGF/sgfmill point ``(r, c)`` (row 0 at the bottom) is ``(n - 1 - r, c)``.

A sequence becomes subtasks: each move is a ``place`` (the stone of the mover's colour from its
bowl onto the intersection), followed by one ``remove`` per stone it captured (that stone off the
board into the captures lid), in row-major order.

Rule-derived instructions (``rule_instruction``: ``capture`` or ``save``) name the first move by
what it must do, not where: "capture the white stone in atari", "save the black group in atari".
``rule_target`` lists the legal moves that do it, decided by sgfmill's board (a capture: the move
removes stones; a save: the side's one group in atari keeps all its stones and has two or more
liberties after the move). Such an instruction is only given when exactly one move satisfies it:
generated play redraws the opening (from the same generator, so deterministically) until the start
position has a unique one, and that move is the sequence's first; an SGF game's next move must be it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from sgfmill import boards, sgf, sgf_moves

from ..errors import ConfigError

Color = Literal["black", "white"]
Point = tuple[int, int]
RuleKind = Literal["none", "capture", "save"]
RULE_TRIES = 400  # openings generated play draws for a position with a unique rule-derived move
_SGF_COLOR = {"b": "black", "w": "white"}
_MILL_COLOR = {"black": "b", "white": "w"}


@dataclass(frozen=True)
class Move:
    """One move: ``color`` plays ``point``; ``captures`` are the stones it removes."""

    color: Color
    point: Point
    captures: tuple[Point, ...] = ()


@dataclass(frozen=True)
class Subtask:
    """``place``: a ``color`` stone from its bowl onto ``point``; ``remove``: the ``color`` stone on
    ``point`` into the lid. ``move`` is the index of the move it belongs to."""

    kind: Literal["place", "remove"]
    color: Color
    point: Point
    move: int
    rule: RuleTarget | None = None  # a place instructed by what it must do (rule-derived), not where


@dataclass(frozen=True)
class RuleTarget:
    """A rule-derived instruction resolved in a position: ``color`` to move must ``kind`` (capture /
    save) the ``stones`` of ``target_color`` (the opponent's group(s) in atari / the mover's one group
    in atari); ``moves`` are the legal moves that do it (the instruction is given only when there is
    exactly one, ``point``)."""

    kind: Literal["capture", "save"]
    color: Color
    target_color: Color
    stones: tuple[Point, ...]
    moves: tuple[Point, ...]

    @property
    def unique(self) -> bool:
        return len(self.moves) == 1

    @property
    def point(self) -> Point:
        if not self.unique:
            raise ValueError(f"{self.kind}: {len(self.moves)} moves satisfy it, not one")
        return self.moves[0]


@dataclass
class GoSequence:
    """A start position (``initial``: point -> colour) and the moves to play from it."""

    board_size: int
    initial: dict[Point, Color]
    moves: list[Move]
    source: str = "generated"
    move_number: int = 0  # moves of the game played before the start position
    final: dict[Point, Color] = field(default_factory=dict)  # the rules library's position after the moves
    rule: RuleTarget | None = None  # the first move's rule-derived instruction (its unique move is moves[0])

    def subtasks(self) -> list[Subtask]:
        out: list[Subtask] = []
        for i, mv in enumerate(self.moves):
            out.append(Subtask("place", mv.color, mv.point, i, self.rule if i == 0 else None))
            other: Color = "white" if mv.color == "black" else "black"
            out += [Subtask("remove", other, p, i) for p in sorted(mv.captures)]
        return out

    def placements(self, color: Color) -> int:
        return sum(1 for m in self.moves if m.color == color)


def position(board: boards.Board) -> dict[Point, Color]:
    """The stones of an sgfmill board in project coordinates."""
    n = board.side
    return {(n - 1 - r, c): _SGF_COLOR[col] for col, (r, c) in board.list_occupied_points()}


class _Game:
    """An sgfmill board plus the simple-ko point, playing moves and reporting captures."""

    def __init__(self, n: int, board: boards.Board | None = None):
        self.n = n
        self.board = board or boards.Board(n)
        self.ko: tuple[Point, str] | None = None  # (sgfmill point, colour forbidden to play it)

    def illegal(self, color: Color, point: Point) -> str | None:
        """Why ``color`` may not play ``point`` now, or None when the move is legal."""
        r, c = self.n - 1 - point[0], point[1]
        if not (0 <= point[0] < self.n and 0 <= point[1] < self.n):
            return "off the board"
        if self.board.get(r, c) is not None:
            return "occupied"
        if self.ko is not None and self.ko == ((r, c), _MILL_COLOR[color]):
            return "retakes a ko"
        trial = self.board.copy()
        trial.play(r, c, _MILL_COLOR[color])
        if trial.get(r, c) is None:
            return "suicide"
        return None

    def play(self, color: Color, point: Point) -> Move:
        """Play a legal move (call ``illegal`` first) and return it with its captures."""
        before = position(self.board)
        r, c = self.n - 1 - point[0], point[1]
        ko = self.board.play(r, c, _MILL_COLOR[color])
        other = "w" if color == "black" else "b"
        self.ko = (ko, other) if ko is not None else None
        after = position(self.board)
        captured = tuple(sorted(p for p in before if p not in after))
        return Move(color, point, captured)

    def legal_moves(self, color: Color) -> list[Point]:
        return [(r, c) for r in range(self.n) for c in range(self.n) if self.illegal(color, (r, c)) is None]


def _read_sgf(path: Path) -> sgf.Sgf_game:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"--sgf {path}: cannot read ({exc.strerror or exc})") from None
    try:
        return sgf.Sgf_game.from_bytes(data)
    except ValueError as exc:
        raise ConfigError(f"--sgf {path}: not a valid SGF game record ({exc})") from None


def resolve_sgf(path: str | Path) -> Path:
    """``path`` as given when it exists, else the same relative path under the shipped
    ``bomb_data/configs/sgf/`` when that exists (``9x9``, ``9x9/capture_ko_9x9.sgf``), else as given."""
    p = Path(path)
    if p.exists() or p.is_absolute():
        return p
    from .._resources import shipped

    s = shipped("sgf", *p.parts)
    return Path(str(s)) if s.is_file() or s.is_dir() else p


def sgf_files(path: str | Path) -> list[Path]:
    """The ``.sgf`` files of a file or directory (sorted), refusing a path with none; a relative path
    that does not exist is looked up under the shipped SGF records (``resolve_sgf``)."""
    p = resolve_sgf(path)
    if p.is_dir():
        files = sorted(x for x in p.iterdir() if x.suffix.lower() == ".sgf" and x.is_file())
        if not files:
            raise ConfigError(f"--sgf {p}: no .sgf file in this directory")
        return files
    if not p.exists():
        raise ConfigError(f"--sgf {p}: no such file or directory")
    return [p]


def sequence_from_sgf(path: str | Path, board_size: int, move_number: int, k: int,
                      rule: RuleKind = "none") -> GoSequence:
    """The position after ``move_number`` moves of the game's main line, and its next ``k`` moves.

    Raises:
        ConfigError (one line each): unreadable or malformed SGF, another board size than
            ``board_size``, a pass or an illegal move up to the end of the sequence, a game
            with fewer than ``move_number + k`` moves, or (``rule``) a next move that is not the
            one move satisfying the rule-derived instruction.
    """
    p = Path(path)
    game = _read_sgf(p)
    try:
        size = game.get_size()
    except ValueError as exc:
        raise ConfigError(f"--sgf {p}: not a valid SGF game record ({exc})") from None
    if size != board_size:
        raise ConfigError(f"--sgf {p}: a {size}x{size} game, but the scene's board is {board_size}x{board_size} "
                          f"(sequence.board_size)")
    if move_number < 0 or k < 1:
        raise ConfigError(f"sequence: expected move_number >= 0 and length >= 1, given {move_number} and {k}")
    try:
        board, plays = sgf_moves.get_setup_and_moves(game)
    except ValueError as exc:
        raise ConfigError(f"--sgf {p}: not a valid SGF game record ({exc})") from None
    if move_number + k > len(plays):
        raise ConfigError(f"--sgf {p}: the game has {len(plays)} moves, fewer than move number {move_number} + "
                          f"sequence length {k}")
    g = _Game(size, board)
    initial: dict[Point, Color] = {}
    moves: list[Move] = []
    target: RuleTarget | None = None
    for i, (colour, mv) in enumerate(plays[: move_number + k], start=1):
        color: Color = _SGF_COLOR[colour]
        if mv is None:
            raise ConfigError(f"--sgf {p}: move {i} is a pass ({color}); a sequence is made of stone placements, "
                              f"choose a move number and length without passes")
        point = (size - 1 - mv[0], mv[1])
        why = g.illegal(color, point)
        if why is not None:
            raise ConfigError(f"--sgf {p}: move {i} ({color} at {_name(point, size)}) is illegal: {why}")
        if i == move_number + 1:
            initial = position(g.board)
            if rule != "none":
                target = rule_target(g, color, rule)
                if target.moves != (point,):
                    raise ConfigError(f"--sgf {p}: move {i} ({color} at {_name(point, size)}) is not the only move "
                                      f"that {_RULE_VERB[rule]} (sequence.rule_instruction {rule}): "
                                      f"{_moves_text(target, size)}")
        played = g.play(color, point)
        if i > move_number:
            moves.append(played)
    return GoSequence(size, initial, moves, source=p.name, move_number=move_number, final=position(g.board),
                      rule=target)


def _name(point: Point, n: int) -> str:
    from ..perturb.language import go_coordinate

    return go_coordinate(point[0], point[1], n)


def generate_sequence(rng: np.random.Generator, board_size: int, move_number: int, k: int,
                      capture_bias: float = 0.0, rule: RuleKind = "none") -> GoSequence:
    """Seeded legal play from the empty board: ``move_number`` opening moves, then ``k`` moves.

    Every move is legal by the rules above. With probability ``capture_bias`` a move captures when
    any legal move does, and otherwise ataris (leaves an opponent group with one liberty) when one
    can; the rest are uniform among the legal moves that do not fill the mover's own single-point
    eyes. Black moves first. With ``rule`` (``capture``/``save``) the opening is drawn again, from
    the same generator, until the side to move has exactly one move satisfying the rule (at most
    ``RULE_TRIES`` openings), and that move is the first of the sequence.

    Raises:
        ConfigError: a knob out of range, no legal move left before the sequence is complete, or no
            opening with a unique rule-derived move in ``RULE_TRIES`` draws.
    """
    if not 0.0 <= capture_bias <= 1.0:
        raise ConfigError(f"sequence.capture_bias: expected 0..1, given {capture_bias}")
    if move_number < 0 or k < 1:
        raise ConfigError(f"sequence: expected move_number >= 0 and length >= 1, given {move_number} and {k}")
    if rule == "none":
        return _generate(rng, board_size, move_number, k, capture_bias)
    for _ in range(RULE_TRIES):
        seq = _generate(rng, board_size, move_number, k, capture_bias, rule)
        if seq is not None:
            return seq
    raise ConfigError(f"sequence.rule_instruction: no opening of {move_number} moves with exactly one move that "
                      f"{_RULE_VERB[rule]} on the {board_size}x{board_size} board in {RULE_TRIES} draws; use a later "
                      f"move number or a higher capture_bias")


def _generate(rng: np.random.Generator, board_size: int, move_number: int, k: int, capture_bias: float,
              rule: RuleKind = "none") -> GoSequence | None:
    """One draw of ``generate_sequence``; None when ``rule`` has no unique move at the start position."""
    g = _Game(board_size)
    color: Color = "black"
    initial: dict[Point, Color] = {}
    moves: list[Move] = []
    target: RuleTarget | None = None
    for i in range(move_number + k):
        if i == move_number:
            initial = position(g.board)
            if rule != "none":
                target = rule_target(g, color, rule)
                if not target.unique:
                    return None
                moves.append(g.play(color, target.point))
                color = "white" if color == "black" else "black"
                continue
        legal = [p for p in g.legal_moves(color) if not _own_eye(g, color, p)]
        if not legal:
            raise ConfigError(f"sequence: no legal move for {color} at move {i + 1} on the {board_size}x{board_size} "
                              f"board; use a smaller move number or sequence length")
        point = _choose(rng, g, color, legal, capture_bias)
        mv = g.play(color, point)
        if i >= move_number:
            moves.append(mv)
        color = "white" if color == "black" else "black"
    return GoSequence(board_size, initial, moves, source="generated", move_number=move_number,
                      final=position(g.board), rule=target)


_RULE_VERB = {"capture": "captures the stones in atari", "save": "saves the group in atari"}


def _moves_text(t: RuleTarget, n: int) -> str:
    if not t.moves:
        return "no move does"
    return f"{len(t.moves)} moves do ({', '.join(_name(p, n) for p in t.moves)})"


def _group(pos: dict[Point, Color], n: int, start: Point) -> tuple[set[Point], set[Point]]:
    """The stones of the group at ``start`` and its liberties."""
    color = pos[start]
    seen, stack, libs = {start}, [start], set()
    while stack:
        q = stack.pop()
        for nb in _neighbours(n, q):
            if nb not in pos:
                libs.add(nb)
            elif pos[nb] == color and nb not in seen:
                seen.add(nb)
                stack.append(nb)
    return seen, libs


def groups_in_atari(pos: dict[Point, Color], n: int, color: Color) -> list[tuple[Point, ...]]:
    """The groups of ``color`` with exactly one liberty, each as its sorted stones."""
    out, done = [], set()
    for p, c in sorted(pos.items()):
        if c != color or p in done:
            continue
        stones, libs = _group(pos, n, p)
        done |= stones
        if len(libs) == 1:
            out.append(tuple(sorted(stones)))
    return out


def rule_target(g: _Game, color: Color, kind: RuleKind) -> RuleTarget:
    """What the rule-derived instruction ``kind`` asks of ``color`` in ``g``'s position, and the legal
    moves that do it (module docstring). A ``save`` with no own group, or more than one, in atari
    has no move (the instruction would not say which group)."""
    other: Color = "white" if color == "black" else "black"
    pos = position(g.board)
    if kind == "capture":
        stones = groups_in_atari(pos, g.n, other)
        moves = []
        for p in g.legal_moves(color):
            trial = _Game(g.n, g.board.copy())
            if trial.play(color, p).captures:
                moves.append(p)
        captured: tuple[Point, ...] = ()
        if len(moves) == 1:
            trial = _Game(g.n, g.board.copy())
            captured = trial.play(color, moves[0]).captures
        return RuleTarget("capture", color, other, captured or tuple(p for s in stones for p in s), tuple(moves))
    if kind != "save":
        raise ValueError(f"rule_instruction: expected capture or save, given {kind!r}")
    mine = groups_in_atari(pos, g.n, color)
    if len(mine) != 1:
        return RuleTarget("save", color, color, tuple(p for s in mine for p in s), ())
    group = mine[0]
    moves = []
    for p in g.legal_moves(color):
        trial = _Game(g.n, g.board.copy())
        trial.play(color, p)
        after = position(trial.board)
        if all(after.get(q) == color for q in group) and len(_group(after, g.n, group[0])[1]) >= 2:
            moves.append(p)
    return RuleTarget("save", color, color, group, tuple(moves))


def _neighbours(n: int, p: Point) -> list[Point]:
    r, c = p
    return [(r + dr, c + dc) for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)) if 0 <= r + dr < n and 0 <= c + dc < n]


def _own_eye(g: _Game, color: Color, p: Point) -> bool:
    pos = position(g.board)
    return all(pos.get(q) == color for q in _neighbours(g.n, p))


def _choose(rng: np.random.Generator, g: _Game, color: Color, legal: list[Point], bias: float) -> Point:
    if bias > 0 and rng.random() < bias:
        capturing, atari = [], []
        for p in legal:
            trial = _Game(g.n, g.board.copy())
            mv = trial.play(color, p)
            if mv.captures:
                capturing.append(p)
            elif _makes_atari(trial, color, p):
                atari.append(p)
        pool = capturing or atari
        if pool:
            return pool[int(rng.integers(len(pool)))]
    return legal[int(rng.integers(len(legal)))]


def _liberties(pos: dict[Point, Color], n: int, start: Point) -> int:
    """How many liberties the group at ``start`` has."""
    return len(_group(pos, n, start)[1])


def _makes_atari(g: _Game, color: Color, p: Point) -> bool:
    pos = position(g.board)
    return any(pos.get(q) not in (None, color) and _liberties(pos, g.n, q) == 1 for q in _neighbours(g.n, p))
