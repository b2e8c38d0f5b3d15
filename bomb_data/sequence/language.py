"""Instructions of the GoSequence task: one per subtask, or the whole plan at once.

The intersection is written with the coordinate phrasings of ``bomb_data/configs/instructions.yaml`` and
``bomb_data.perturb.language.format_coordinate`` (every convention, both template sets), so a
subtask's sentence names its intersection exactly as the single task does and
``parse_target`` reads it back. Only the verbs differ: a stone is taken from the bowl of its colour
("place a white stone at D4"), a captured stone goes into the lid ("remove the black stone at C3 and
put it in the lid"). The whole-plan mode gives one sentence listing every subtask in order, SGF-like
for Go coordinates ("play B D4, W C3, remove B C3 into the lid").
"""

from __future__ import annotations

import numpy as np

from ..params import LanguageParams
from ..perturb.language import format_coordinate, load_templates
from .rules import Subtask

TEMPLATES = {
    "place": {
        "train": ("place a {color} stone at {coord}",
                  "put a {color} stone from the {color} bowl on {coord}",
                  "take a {color} stone from its bowl and place it at {coord}"),
        "unseen": ("set a {color} stone from the {color} bowl down on {coord}",
                   "a {color} stone goes on {coord}, take it from its bowl"),
    },
    "remove": {
        "train": ("remove the {color} stone at {coord} and put it in the lid",
                  "take the captured {color} stone at {coord} off the board and drop it into the lid"),
        "unseen": ("lift the {color} stone on {coord} off the board into the lid",
                   "the {color} stone at {coord} is captured, put it in the lid"),
    },
}


def _coord(st: Subtask, n: int, p: LanguageParams, rng: np.random.Generator) -> str:
    phrasings = getattr(getattr(load_templates().coordinates, p.convention), p.template_set)
    return format_coordinate(st.point[0], st.point[1], n, p.convention, phrasings[int(rng.integers(len(phrasings)))])


def subtask_instruction(st: Subtask, n: int, p: LanguageParams, rng: np.random.Generator) -> str:
    """The sentence for one subtask (template and phrasing drawn from ``rng``)."""
    tpls = TEMPLATES[st.kind][p.template_set]
    return tpls[int(rng.integers(len(tpls)))].format(color=st.color, coord=_coord(st, n, p, rng))


def plan_instruction(subtasks: list[Subtask], n: int, p: LanguageParams, rng: np.random.Generator) -> str:
    """The whole plan in one sentence, subtasks in order: ``play B D4, W C3, remove B C3 into the lid``
    (with the convention's phrasing of each intersection in parentheses for the counted conventions)."""
    parts = []
    for st in subtasks:
        c = _coord(st, n, p, rng)
        if p.convention != "go_letters":
            c = f"({c})"
        parts.append(f"{st.color[0].upper()} {c}" if st.kind == "place" else f"remove {st.color[0].upper()} {c} "
                                                                                 f"into the lid")
    return "in order, play " + ", ".join(parts) + "; B = a black stone from the black bowl, W = a white stone " \
                                                   "from the white bowl"
