"""Instructions of the GoSequence task: one per subtask, or the whole plan at once.

The intersection is written with the coordinate phrasings of ``bomb_data/configs/instructions.yaml`` and
``bomb_data.perturb.language.format_coordinate`` (every convention, both template sets), so a
subtask's sentence names its intersection exactly as the single task does and
``parse_target`` reads it back. Only the verbs differ: a stone is taken from the bowl of its colour
("place a white stone at D4"), a captured stone goes into the lid ("remove the black stone at C3 and
put it in the lid"). The whole-plan mode gives one sentence listing every subtask in order, SGF-like
for Go coordinates ("play B D4, W C3, remove B C3 into the lid").

A rule-derived first move (``Subtask.rule``) names no intersection: "capture the white stone in
atari with a black stone", "save the black group in atari"; in plan mode it reads "B: capture the
W stone in atari", and the removes of the stones it captures "remove the captured W stone into the
lid" (their points would give the answer away).
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


RULE_TEMPLATES = {
    "capture": {
        "train": ("capture the {target} {stones} in atari with a {color} stone",
                  "play a {color} stone from its bowl that captures the {target} {stones} in atari"),
        "unseen": ("take the {target} {stones} in atari: play the {color} stone that captures {them}",),
    },
    "save": {
        "train": ("save the {color} group in atari with a {color} stone",
                  "play a {color} stone from its bowl that saves the {color} group in atari"),
        "unseen": ("the {color} group is in atari: rescue it with a {color} stone",),
    },
}


def _rule_text(st: Subtask, p: LanguageParams, rng: np.random.Generator) -> str:
    r = st.rule
    assert r is not None
    k = len(r.stones) if r.kind == "capture" else 1
    tpls = RULE_TEMPLATES[r.kind][p.template_set]
    return tpls[int(rng.integers(len(tpls)))].format(
        color=st.color, target=r.target_color, stones="stone" if k == 1 else f"{k} stones",
        them="it" if k == 1 else "them")


def _coord(st: Subtask, n: int, p: LanguageParams, rng: np.random.Generator) -> str:
    phrasings = getattr(getattr(load_templates().coordinates, p.convention), p.template_set)
    return format_coordinate(st.point[0], st.point[1], n, p.convention, phrasings[int(rng.integers(len(phrasings)))])


def subtask_instruction(st: Subtask, n: int, p: LanguageParams, rng: np.random.Generator) -> str:
    """The sentence for one subtask (template and phrasing drawn from ``rng``)."""
    if st.rule is not None:
        return _rule_text(st, p, rng)
    tpls = TEMPLATES[st.kind][p.template_set]
    return tpls[int(rng.integers(len(tpls)))].format(color=st.color, coord=_coord(st, n, p, rng))


def plan_instruction(subtasks: list[Subtask], n: int, p: LanguageParams, rng: np.random.Generator) -> str:
    """The whole plan in one sentence, subtasks in order: ``play B D4, W C3, remove B C3 into the lid``
    (with the convention's phrasing of each intersection in parentheses for the counted conventions)."""
    parts = []
    ruled = {st.move for st in subtasks if st.rule is not None}
    for st in subtasks:
        if st.rule is not None:
            r = st.rule
            k = len(r.stones) if r.kind == "capture" else 1
            what = (f"capture the {r.target_color[0].upper()} {'stone' if k == 1 else f'{k} stones'} in atari"
                    if r.kind == "capture" else f"save the {r.color[0].upper()} group in atari")
            parts.append(f"{st.color[0].upper()}: {what}")
            continue
        if st.kind == "remove" and st.move in ruled:
            parts.append(f"remove the captured {st.color[0].upper()} stone into the lid")
            continue
        c = _coord(st, n, p, rng)
        if p.convention != "go_letters":
            c = f"({c})"
        parts.append(f"{st.color[0].upper()} {c}" if st.kind == "place" else f"remove {st.color[0].upper()} {c} "
                                                                                 f"into the lid")
    return "in order, play " + ", ".join(parts) + "; B = a black stone from the black bowl, W = a white stone " \
                                                   "from the white bowl"
