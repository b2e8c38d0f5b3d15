"""Instruction writing and parsing: templates, coordinate conventions, distractor words.

Board coordinates in data are 0-based ``(row, col)``: row 0 is the row farthest from the robot
(top of the agentview picture), column 0 the left column of the agentview picture. The text says
where it counts from, in words, so the sentence alone fixes the intersection (docs/conventions.md,
"How an instruction names the intersection"). Every default phrasing counts as a Go board is
labelled: rows from the near edge (the robot's side, bottom of the agentview picture), columns
from the left edge (the robot's left). ``LanguageParams.convention`` picks the counting:

- ``zero_based``: "row 2 from the near edge, column 3 from the left edge, counting from zero";
  on an n x n board that is ``(n - 1 - 2, 3)``.
- ``one_based``: "row 3 from the near edge, column 4 from the left edge, counting from one" or
  "the 3rd row from the near edge and the 4th column from the left edge": ``(n - 3, 3)``, the
  same intersection as the Go coordinate "D3".
- ``go_letters``: standard Go coordinates. Columns are letters ``A B C D E F G H J K L M N O P Q R
  S T`` (no ``I``) from the left edge, so letter index = ``col``; rows are numbered from the near
  edge starting at 1, so number = ``board_size - row``. On a 5 x 5 board ``(0, 0)`` is "A5",
  ``(4, 0)`` is "A1", ``(2, 3)`` is "D3".

The stone to move is always named as the one in the tray ("the black stone from the tray").
Templates, phrasings and distractor phrases live in ``bomb_data/configs/instructions.yaml``.
"""

from __future__ import annotations

import functools
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import ValidationError

from .._model import Frozen
from .._resources import shipped
from .._yaml import read_yaml
from ..errors import ConfigError
from ..params import LanguageParams

if TYPE_CHECKING:
    from importlib.abc import Traversable

log = logging.getLogger(__name__)

INSTRUCTIONS_FILE = shipped("instructions.yaml")  # package data, read through importlib.resources
GO_LETTERS = "ABCDEFGHJKLMNOPQRST"  # 19 columns, no I
CONVENTIONS = ("zero_based", "one_based", "go_letters")
_ORDINAL_WORDS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth",
                  "tenth", "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth",
                  "seventeenth", "eighteenth", "nineteenth")


class _SetPhrasings(Frozen):
    train: tuple[str, ...]
    unseen: tuple[str, ...]


class _Coordinates(Frozen):
    zero_based: _SetPhrasings
    one_based: _SetPhrasings
    go_letters: _SetPhrasings


class _Distractors(Frozen):
    prefix: tuple[str, ...]
    suffix: tuple[str, ...]


class InstructionTemplates(Frozen):
    """The validated content of ``bomb_data/configs/instructions.yaml``."""

    templates: _SetPhrasings
    coordinates: _Coordinates
    distractors: _Distractors


@functools.lru_cache(maxsize=4)
def load_templates(path: str | Path | Traversable = INSTRUCTIONS_FILE) -> InstructionTemplates:
    """Load and validate the instruction templates.

    Raises:
        ConfigError: missing file, invalid YAML, unknown key or a phrasing that breaks parsing.
    """
    from ..config import format_validation_error

    p = Path(path) if isinstance(path, str) else path
    data = read_yaml(p, "instruction templates") or {}
    try:
        t = InstructionTemplates.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, p.name)) from None
    _check_phrasings(t, p.name)
    for phrase in (*t.distractors.prefix, *t.distractors.suffix):
        if _DISTRACTOR_BAN_RE.search(phrase):
            raise ConfigError(f"{p.name}: distractors: expected no digits, coordinates or the words row, column, "
                              f"counting, edge, tray, zero, one, ordinals, given {phrase!r}")
    return t


def _check_phrasings(t: InstructionTemplates, name: str) -> None:
    """Every template names the tray stone; every phrasing writes sentences ``parse_target`` reads back."""
    for s in ("train", "unseen"):
        for tpl in getattr(t.templates, s):
            try:
                filled = tpl.format(color="black", coord="")
            except (KeyError, IndexError, ValueError):
                filled = ""
            if "{coord}" not in tpl or "{color}" not in tpl or not _TRAY_RE.search(filled):
                raise ConfigError(f"{name}: templates.{s}: expected {{color}}, {{coord}} and the stone named as "
                                  f"'the {{color}} stone from the tray' (or 'in the tray'), given {tpl!r}")
    for conv in CONVENTIONS:
        for s in ("train", "unseen"):
            for ph in getattr(getattr(t.coordinates, conv), s):
                for n, (row, col) in ((3, (0, 2)), (5, (1, 3)), (19, (18, 0)), (19, (2, 17))):
                    try:
                        text = format_coordinate(row, col, n, conv, ph)
                        ok = parse_target(text, n, conv) == (row, col) and infer_convention(text) == conv
                    except (KeyError, IndexError, ValueError):
                        ok = False
                    if not ok:
                        raise ConfigError(f"{name}: coordinates.{conv}.{s}: expected a phrasing that says where it "
                                          f"counts from (docs/conventions.md), given {ph!r}")


def _ordinal(k: int) -> str:
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def format_coordinate(row: int, col: int, board_size: int, convention: str, phrasing: str = "{go}") -> str:
    """Fill one coordinate phrasing for the 0-based intersection ``(row, col)``.

    Placeholders: ``{go}`` (Go coordinate, e.g. "D3"), and for each edge ``E`` in ``near``, ``far``
    (rows) and ``left``, ``right`` (columns) the count of the line from that edge: ``{E0}`` from
    zero, ``{E1}`` from one, ``{E1o}`` as an ordinal ("3rd"), ``{E1w}`` as an ordinal word ("third").
    """
    n = board_size
    counts = {"near": n - 1 - row, "far": row, "left": col, "right": n - 1 - col}
    fields: dict[str, object] = {"go": go_coordinate(row, col, n)}
    for edge, k in counts.items():
        fields.update({f"{edge}0": k, f"{edge}1": k + 1, f"{edge}1o": _ordinal(k + 1), f"{edge}1w": _ORDINAL_WORDS[k]})
    return phrasing.format(**fields)


def go_coordinate(row: int, col: int, board_size: int) -> str:
    """Go-board name of the 0-based intersection: column letter + row number from the bottom, e.g. "D4"."""
    return f"{GO_LETTERS[col]}{board_size - row}"


def write_instruction(row: int, col: int, board_size: int, color: str, p: LanguageParams,
                      rng: np.random.Generator) -> tuple[str, str]:
    """Write the instruction for placing the ``color`` stone on the 0-based intersection ``(row, col)``.

    Args:
        row, col: 0-based target (row 0 farthest from the robot, col 0 left in the agentview picture).
        board_size: n of the n x n board (3..19).
        color: ``"black"`` or ``"white"``.
        p: language parameters (convention, template set, distractor words).
        rng: the episode's language generator (choice of template, phrasing and distractors).

    Returns:
        ``(text, convention)``; ``write_instruction_spans`` also returns where each part is.

    Raises:
        ConfigError: the target is off the board or the board size is unsupported.
    """
    text, convention, _ = write_instruction_spans(row, col, board_size, color, p, rng)
    return text, convention


#: Names of the instruction spans ``write_instruction_spans`` returns (bomb_data.explain masks them).
SPAN_NAMES = ("color", "stone", "verb", "coordinate", "row", "column", "distractor")
_VERB_RE = re.compile(r"\b(pick up|place|put|move|set|grab|take|leave|belongs)\b")
_NOUN_RE = re.compile(r"^\s+(stone|piece)\b")


def write_instruction_spans(row: int, col: int, board_size: int, color: str, p: LanguageParams,
                            rng: np.random.Generator) -> tuple[str, str, dict[str, list[tuple[int, int]]]]:
    """``write_instruction`` that also says where each part of the sentence is (same text, same draws).

    Returns:
        ``(text, convention, spans)``: ``spans`` maps each name of ``SPAN_NAMES`` present in this
        sentence to its character ranges ``[(start, end), ...]`` in ``text``: ``color`` (the colour
        word), ``stone`` (the noun after it: stone/piece), ``verb`` (the template's verbs: place,
        put, move, pick up, set, grab, take, leave, belongs), ``coordinate`` (the whole filled
        coordinate phrasing), ``row`` and ``column`` (inside it: the row and column phrases, e.g.
        "row 2 from the near edge", "3rd column from the left edge", or in a Go coordinate the
        number and the letter), ``distractor`` (the prefix and suffix phrases, when drawn). A span
        absent from this sentence (no distractors) is absent from the map.
    """
    if not 3 <= board_size <= len(GO_LETTERS):
        raise ConfigError(f"board_size: expected 3..{len(GO_LETTERS)}, given {board_size}")
    if not (0 <= row < board_size and 0 <= col < board_size):
        raise ConfigError(f"target: expected row and column in 0..{board_size - 1}, given {(row, col)}")
    t = load_templates()
    templates = getattr(t.templates, p.template_set)
    phrasings = getattr(getattr(t.coordinates, p.convention), p.template_set)
    tpl = templates[int(rng.integers(len(templates)))]
    coord = format_coordinate(row, col, board_size, p.convention, phrasings[int(rng.integers(len(phrasings)))])
    spans: dict[str, list[tuple[int, int]]] = {}

    def add(name: str, a: int, b: int) -> None:
        spans.setdefault(name, []).append((a, b))

    # fill the template piece by piece, keeping offsets (string.Formatter splits it as .format does)
    import string

    text = ""
    for literal, field, _, _ in string.Formatter().parse(tpl):
        for m in _VERB_RE.finditer(literal):
            add("verb", len(text) + m.start(), len(text) + m.end())
        if text and "color" in spans and "stone" not in spans and (m := _NOUN_RE.match(literal)):
            add("stone", len(text) + m.start(1), len(text) + m.end(1))
        text += literal
        if field == "color":
            add("color", len(text), len(text) + len(color))
            text += color
        elif field == "coord":
            c0 = len(text)
            add("coordinate", c0, c0 + len(coord))
            if p.convention == "go_letters":
                g = _GO_RE.search(coord)
                assert g is not None
                add("column", c0 + g.start(1), c0 + g.end(1))
                add("row", c0 + g.start(2), c0 + g.end(2))
            else:
                for name, rx in (("row", _ROW_RE), ("column", _COL_RE)):
                    g = rx.search(coord)
                    assert g is not None
                    add(name, c0 + g.start(), c0 + g.end())
            text += coord
    if p.distractor_words:
        pre = t.distractors.prefix[int(rng.integers(len(t.distractors.prefix)))]
        suf = t.distractors.suffix[int(rng.integers(len(t.distractors.suffix)))]
        shift = len(pre) + 1
        spans = {k: [(a + shift, b + shift) for a, b in v] for k, v in spans.items()}
        add("distractor", 0, len(pre))
        add("distractor", shift + len(text) + 1, shift + len(text) + 1 + len(suf))
        text = f"{pre} {text} {suf}"
    return text, p.convention, spans


_GO_RE = re.compile(r"\b([A-HJ-T])(\d{1,2})\b")
_ORD = r"(?:(\d{1,2})(?:st|nd|rd|th)|(" + "|".join(_ORDINAL_WORDS) + r"))"
_ROW_RE = re.compile(r"\b(?:row\s+" + r"(\d{1,2})|" + _ORD + r"\s+row)\s+from\s+the\s+(near|far)\s+edge\b",
                     re.IGNORECASE)
_COL_RE = re.compile(r"\b(?:column\s+" + r"(\d{1,2})|" + _ORD + r"\s+column)\s+from\s+the\s+(left|right)\s+edge\b",
                     re.IGNORECASE)
_BASE_RE = re.compile(r"\bcounting\s+from\s+(zero|one|0|1)\b", re.IGNORECASE)
_TRAY_RE = re.compile(r"\b(?:black|white)\s+(?:stone|piece)\s+(?:from|in)\s+the\s+tray\b", re.IGNORECASE)
_DISTRACTOR_BAN_RE = re.compile(r"\d|\brow|\bcolumn|counting|\bedge|\btray|\bzero\b|\bone\b|\b[A-HJ-T]\d|"
                                + "|".join(_ORDINAL_WORDS), re.IGNORECASE)


def _line(m: re.Match[str]) -> tuple[int | None, int | None, str]:
    """(bare number or None, ordinal value or None, edge word) of a row or column phrase."""
    bare, ord_digits, ord_word, edge = m.groups()
    if bare is not None:
        return int(bare), None, edge.lower()
    return None, int(ord_digits) if ord_digits else _ORDINAL_WORDS.index(ord_word.lower()) + 1, edge.lower()


def _counts(text: str) -> tuple[tuple[int | None, int | None, str], tuple[int | None, int | None, str], str | None]:
    rows, cols = list(_ROW_RE.finditer(text)), list(_COL_RE.finditer(text))
    if len(rows) != 1 or len(cols) != 1:
        raise ValueError(f"expected one row and one column, each counted from a named edge ('row 2 from the near "
                         f"edge', 'the 3rd column from the left edge'), in {text!r}")
    bases = {m.group(1).lower() for m in _BASE_RE.finditer(text)}
    bases = {"zero" if b in ("zero", "0") else "one" for b in bases}
    if len(bases) > 1:
        raise ValueError(f"both 'counting from zero' and 'counting from one' in {text!r}")
    return _line(rows[0]), _line(cols[0]), next(iter(bases), None)


def infer_convention(text: str) -> str:
    """The coordinate convention an instruction is written in, from its wording.

    Raises:
        ValueError: the wording names no intersection by the rule of docs/conventions.md.
    """
    if _GO_RE.search(text) and not (_ROW_RE.search(text) or _COL_RE.search(text)):
        return "go_letters"
    row, col, base = _counts(text)
    bare = row[0] is not None or col[0] is not None
    if bare and base is None:
        raise ValueError(f"no 'counting from zero' or 'counting from one' for the bare numbers in {text!r}")
    return "zero_based" if base == "zero" else "one_based"


def parse_target(text: str, board_size: int, convention: str | None = None) -> tuple[int, int]:
    """The 0-based ``(row, col)`` an instruction names (inverse of ``write_instruction``).

    Implements the rule of docs/conventions.md: a Go coordinate ("D3"), or one row and one column
    each counted from a named edge ("row 2 from the near edge", "the 3rd column from the left
    edge"), bare numbers counted from zero or one as the sentence says, ordinals from one.

    Args:
        text: the instruction.
        board_size: n of the n x n board.
        convention: the convention if known (e.g. from the episode record); the sentence's own
            counting must agree with it. Inferred from the wording when None.

    Raises:
        ValueError: no coordinate found, a sentence that does not say where or from what it
            counts, counting that contradicts ``convention``, or a point off the board.
    """
    if convention is not None and convention not in CONVENTIONS:
        raise ValueError(f"convention: expected one of {CONVENTIONS}, given {convention!r}")
    conv = convention or infer_convention(text)
    n = board_size
    if conv == "go_letters":
        m = _GO_RE.search(text)
        if m is None:
            raise ValueError(f"no Go coordinate (letter A-T without I, then a number) in {text!r}")
        col, number = GO_LETTERS.index(m.group(1)), int(m.group(2))
        row = n - number
    else:
        (r_bare, r_ord, r_edge), (c_bare, c_ord, c_edge), base = _counts(text)
        if (r_bare is not None or c_bare is not None) and base is None:
            raise ValueError(f"no 'counting from zero' or 'counting from one' for the bare numbers in {text!r}")
        start = 0 if base == "zero" else 1
        said = "zero_based" if base == "zero" else "one_based"
        if (base is not None or conv == "zero_based") and said != conv:
            raise ValueError(f"convention {conv} given, but {text!r} counts from {'zero' if start == 0 else 'one'}")
        r_k = r_bare - start if r_bare is not None else r_ord - 1  # type: ignore[operator]
        c_k = c_bare - start if c_bare is not None else c_ord - 1  # type: ignore[operator]
        row = n - 1 - r_k if r_edge == "near" else r_k
        col = c_k if c_edge == "left" else n - 1 - c_k
    if not (0 <= row < n and 0 <= col < n):
        raise ValueError(f"target {(row, col)} parsed from {text!r} is off a {n}x{n} board")
    return row, col
