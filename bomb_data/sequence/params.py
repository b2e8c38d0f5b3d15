"""Parameters of the GoSequence task (``sequence:`` in a configuration file); light to import."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .._model import StrictFrozen


class SequenceParams(StrictFrozen):
    """Where the sequence comes from and how it is instructed."""

    source: Literal["generated", "sgf"] = "generated"
    sgf: str | None = Field(None, description="an .sgf file or a directory of them (source: sgf)")
    board_size: int | None = Field(9, ge=3, le=19, description="board of the sequence task, overriding the grid's "
                                                                "board_size (null: the grid's)")
    length: int = Field(5, ge=1, le=12, description="K: moves to play")
    move_number: int = Field(10, ge=0, le=300, description="moves of the game before the start position")
    capture_bias: float = Field(0.5, ge=0, le=1, description="generated play: probability of a capture "
                                                                "(else an atari) when one is legal")
    plan_mode: bool = Field(False, description="the whole plan as the instruction, instead of the current "
                                               "subtask's")
    rule_instruction: Literal["none", "capture", "save"] = Field(
        "none", description="the first move instructed by what it must do (capture the stones in atari, save the "
                            "group in atari) instead of where; only when exactly one move does it")
