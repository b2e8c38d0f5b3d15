"""Instruction writing and parsing: templates, coordinate conventions, distractor words.

Board coordinates in data are 0-based ``(row, col)``: row 0 is the row farthest from the robot
(top of the agentview picture), column 0 the left column of the agentview picture. The text may
use another convention (``LanguageParams.convention``):

- ``zero_based``: "row 2, column 3" is ``(2, 3)``.
- ``one_based``: "the 3rd row and the 4th column" / "row 3, column 4, counting from one" is ``(2, 3)``.
- ``go_letters``: as printed on a Go board seen in the agentview picture. Columns are letters
  ``A B C D E F G H J K L M N O P Q R S T`` (no ``I``) from left to right, so letter index = ``col``;
  rows are numbered from the bottom of the picture (the row nearest the robot) starting at 1, so
  number = ``board_size - row``. On a 5 x 5 board ``(0, 0)`` is "A5", ``(4, 0)`` is "A1",
  ``(2, 3)`` is "D3".

Templates, phrasings and distractor phrases live in ``configs/instructions.yaml``.
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
    """The validated content of ``configs/instructions.yaml``."""

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
    for s in ("train", "unseen"):
        for tpl in getattr(t.templates, s):
            if "{coord}" not in tpl or "{color}" not in tpl:
                raise ConfigError(f"{p.name}: templates.{s}: expected {{color}} and {{coord}} in every template, "
                                  f"given {tpl!r}")
    for phrase in (*t.distractors.prefix, *t.distractors.suffix):
        if re.search(r"\d|\brow|\bcolumn|counting", phrase, re.IGNORECASE):
            raise ConfigError(f"{p.name}: distractors: expected no digits or row/column words, given {phrase!r}")
    return t


def _ordinal(k: int) -> str:
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def format_coordinate(row: int, col: int, board_size: int, convention: str, phrasing: str = "{go}") -> str:
    """Fill one coordinate phrasing for the 0-based intersection ``(row, col)``."""
    n = board_size
    return phrasing.format(r0=row, c0=col, r1=row + 1, c1=col + 1, r1o=_ordinal(row + 1), c1o=_ordinal(col + 1),
                           r1w=_ORDINAL_WORDS[row], c1w=_ORDINAL_WORDS[col], go=go_coordinate(row, col, n))


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
        ``(text, convention)``.

    Raises:
        ConfigError: the target is off the board or the board size is unsupported.
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
    text = tpl.format(color=color, coord=coord)
    if p.distractor_words:
        pre = t.distractors.prefix[int(rng.integers(len(t.distractors.prefix)))]
        suf = t.distractors.suffix[int(rng.integers(len(t.distractors.suffix)))]
        text = f"{pre} {text} {suf}"
    return text, p.convention


_GO_RE = re.compile(r"\b([A-HJ-T])(\d{1,2})\b")
_ORD = r"(\d{1,2})(?:st|nd|rd|th)|(" + "|".join(_ORDINAL_WORDS) + r")"
_ROW_ORD_RE = re.compile(r"\b(?:" + _ORD + r")\s+row\b", re.IGNORECASE)
_COL_ORD_RE = re.compile(r"\b(?:" + _ORD + r")\s+column\b", re.IGNORECASE)
_ROW_RE = re.compile(r"\brow\s+(\d{1,2})\b", re.IGNORECASE)
_COL_RE = re.compile(r"\bcolumn\s+(\d{1,2})\b", re.IGNORECASE)
_ONE_RE = re.compile(r"counting from (?:one|1)|1-based|one-based", re.IGNORECASE)


def _ord_value(m: re.Match[str]) -> int:
    return int(m.group(1)) if m.group(1) else _ORDINAL_WORDS.index(m.group(2).lower()) + 1


def infer_convention(text: str) -> str:
    """The coordinate convention an instruction is written in, from its wording."""
    if _GO_RE.search(text):
        return "go_letters"
    if _ONE_RE.search(text) or _ROW_ORD_RE.search(text) or _COL_ORD_RE.search(text):
        return "one_based"
    return "zero_based"


def parse_target(text: str, board_size: int, convention: str | None = None) -> tuple[int, int]:
    """The 0-based ``(row, col)`` an instruction names (inverse of ``write_instruction``).

    Args:
        text: the instruction.
        board_size: n of the n x n board.
        convention: the convention if known (e.g. from the episode record); inferred from the
            wording when None.

    Raises:
        ValueError: no coordinate found, or it is off the board.
    """
    conv = convention or infer_convention(text)
    if conv not in CONVENTIONS:
        raise ValueError(f"convention: expected one of {CONVENTIONS}, given {conv!r}")
    n = board_size
    if conv == "go_letters":
        m = _GO_RE.search(text)
        if m is None:
            raise ValueError(f"no Go coordinate (letter A-T without I, then a number) in {text!r}")
        col, number = GO_LETTERS.index(m.group(1)), int(m.group(2))
        row = n - number
    else:
        base = 1 if conv == "one_based" else 0
        mr = _ROW_ORD_RE.search(text) if conv == "one_based" else None
        mc = _COL_ORD_RE.search(text) if conv == "one_based" else None
        r_plain, c_plain = _ROW_RE.search(text), _COL_RE.search(text)
        if (mr is None and r_plain is None) or (mc is None and c_plain is None):
            raise ValueError(f"no row and column numbers in {text!r}")
        row = (_ord_value(mr) if mr else int(r_plain.group(1))) - base  # type: ignore[union-attr]
        col = (_ord_value(mc) if mc else int(c_plain.group(1))) - base  # type: ignore[union-attr]
    if not (0 <= row < n and 0 <= col < n):
        raise ValueError(f"target {(row, col)} parsed from {text!r} is off a {n}x{n} board")
    return row, col
