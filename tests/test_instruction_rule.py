"""Every default instruction fixes its intersection by the written rule (issue 21, finding 7).

``reference_target`` below is written from docs/conventions.md ("How an instruction names the
intersection") alone, word by word, and shares no code with ``bomb_data.perturb.language``. Every
template x phrasing x distractor of both template sets and all three conventions, on boards of
3, 5, 9 and 19, must name exactly the target the sentence was written for, and name the stone as
the one in the tray.
"""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest

from bomb_data.params import LanguageParams
from bomb_data.perturb.language import CONVENTIONS, format_coordinate, load_templates, write_instruction

LETTERS = "ABCDEFGHJKLMNOPQRST"
ORDINAL_WORDS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
                 "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth", "seventeenth",
                 "eighteenth", "nineteenth"]
EDGE_AXIS = {"near": "row", "far": "row", "left": "column", "right": "column"}


def _ordinal_value(word: str) -> int | None:
    if word in ORDINAL_WORDS:
        return ORDINAL_WORDS.index(word) + 1
    for suffix in ("st", "nd", "rd", "th"):
        if word.endswith(suffix) and word[: -len(suffix)].isdigit():
            return int(word[: -len(suffix)])
    return None


def reference_target(sentence: str, n: int) -> tuple[int, int]:
    """The 0-based data (row, col) the sentence names on an n x n board, by the documented rule."""
    go = [w for w in re.findall(r"[A-Za-z0-9]+", sentence)
          if len(w) >= 2 and w[0] in LETTERS and w[1:].isdigit()]
    words = re.findall(r"[a-z0-9]+", sentence.lower())
    # phrases "row K from the E edge", "[the] ORD row from the E edge" (and the same for column)
    found: dict[str, list[tuple[str, int, str]]] = {"row": [], "column": []}
    for i, w in enumerate(words):
        if w not in ("row", "column"):
            continue
        if i + 1 < len(words) and words[i + 1].isdigit():  # row K from the E edge
            kind, k, rest = "bare", int(words[i + 1]), words[i + 2:i + 6]
        else:  # [the] ORD row from the E edge
            kind, k, rest = "ordinal", _ordinal_value(words[i - 1]) if i > 0 else None, words[i + 1:i + 5]
        ok = (k is not None and len(rest) == 4 and rest[:2] == ["from", "the"] and rest[3] == "edge"
              and EDGE_AXIS.get(rest[2]) == w)
        assert ok, (f"'{w}' is not part of a phrase '{w} K from the E edge' or 'ORD {w} from the E edge'", sentence)
        found[w].append((kind, k, rest[2]))
    starts = {m for m in ("zero", "one") if f"counting from {m}" in sentence.lower()}
    if go:
        assert not found["row"] and not found["column"] and len(go) == 1, sentence
        letter, number = go[0][0], int(go[0][1:])
        return n - number, LETTERS.index(letter)
    assert len(found["row"]) == 1 and len(found["column"]) == 1, (sentence, found)
    bare = any(kind == "bare" for kind, _, _ in found["row"] + found["column"])
    assert not bare or len(starts) == 1, ("a bare number needs exactly one 'counting from'", sentence)
    start = 0 if starts == {"zero"} else 1

    def steps(kind: str, k: int) -> int:  # lines away from the named edge
        return k - start if kind == "bare" else k - 1

    (rk, rv, redge), = found["row"]
    (ck, cv, cedge), = found["column"]
    row = n - 1 - steps(rk, rv) if redge == "near" else steps(rk, rv)
    col = steps(ck, cv) if cedge == "left" else n - 1 - steps(ck, cv)
    assert 0 <= row < n and 0 <= col < n, sentence
    return row, col


def counts_from(sentence: str) -> str:
    """The convention the sentence's own words state."""
    s = sentence.lower()
    if "counting from zero" in s:
        return "zero_based"
    if "counting from one" in s or re.search(r"\b(\d+(st|nd|rd|th)|" + "|".join(ORDINAL_WORDS) + r") (row|column)\b",
                                             s):
        return "one_based"
    return "go_letters"


def names_the_tray_stone(sentence: str, color: str) -> bool:
    return re.search(rf"\bthe {color} (stone|piece) (from|in) the tray\b", sentence) is not None


def _points(n: int) -> list[tuple[int, int]]:
    if n <= 5:
        return [(r, c) for r in range(n) for c in range(n)]
    rng = np.random.default_rng(n)
    corners = [(0, 0), (0, n - 1), (n - 1, 0), (n - 1, n - 1), (n // 2, n // 2)]
    return corners + [tuple(int(v) for v in rng.integers(0, n, 2)) for _ in range(12)]


@pytest.mark.parametrize("n", [3, 5, 9, 19])
def test_every_template_and_phrasing_names_one_intersection_by_the_written_rule(n: int) -> None:
    t = load_templates()
    prefixes, suffixes = ("", *t.distractors.prefix), ("", *t.distractors.suffix)
    checked = 0
    for conv, tset in itertools.product(CONVENTIONS, ("train", "unseen")):
        templates = getattr(t.templates, tset)
        phrasings = getattr(getattr(t.coordinates, conv), tset)
        for i, (tpl, ph, (row, col)) in enumerate(itertools.product(templates, phrasings, _points(n))):
            color = ("black", "white")[i % 2]
            core = tpl.format(color=color, coord=format_coordinate(row, col, n, conv, ph))
            sentence = f"{prefixes[i % len(prefixes)]} {core} {suffixes[i % len(suffixes)]}".strip()
            assert reference_target(sentence, n) == (row, col), (conv, sentence)
            assert counts_from(sentence) == conv, sentence
            assert names_the_tray_stone(sentence, color), sentence
            checked += 1
    assert checked == sum(len(getattr(t.templates, s)) * len(getattr(getattr(t.coordinates, c), s))
                          for c in CONVENTIONS for s in ("train", "unseen")) * len(_points(n))


def test_written_instructions_follow_the_rule() -> None:
    """The env's writer (template, phrasing and distractor choice) against the reference parser."""
    rng = np.random.default_rng(0)
    for k in range(600):
        n = (3, 5, 7, 9, 13, 19)[k % 6]
        p = LanguageParams(convention=CONVENTIONS[k % 3], template_set=("train", "unseen")[k % 2],
                           distractor_words=bool(k % 5 == 0))
        row, col = (int(v) for v in rng.integers(0, n, 2))
        color = ("black", "white")[k % 2]
        text, conv = write_instruction(row, col, n, color, p, rng)
        assert reference_target(text, n) == (row, col) and counts_from(text) == conv == p.convention, text
        assert names_the_tray_stone(text, color), text


def test_reference_parser_reads_the_documented_examples() -> None:
    """The worked examples of docs/conventions.md, so the reference is checked against the text too."""
    ex = {
        "place the black stone from the tray at row 2 from the near edge, column 3 from the left edge, "
        "counting from zero": (2, 3),
        "put the black stone from the tray on the 3rd row from the near edge and the 4th column from the left edge":
            (2, 3),
        "move the black stone from the tray to D3": (2, 3),
        "row 1 from the near edge, column 1 from the left edge, counting from one": (4, 0),
        "row 0 from the near edge, column 0 from the left edge, counting from zero": (4, 0),
        "the black stone from the tray to A1": (4, 0),
        "the first row from the far edge, the second column from the right edge": (0, 3),
    }
    for text, want in ex.items():
        assert reference_target(text, 5) == want, text


def test_the_old_wording_is_ambiguous_to_the_reference() -> None:
    """0.2.0's default sentence states no origin and no start: the rule gives it no intersection."""
    with pytest.raises(AssertionError):
        reference_target("place the black stone at row 1, column 1", 5)


@pytest.mark.parametrize("edit, needle", [
    (("the {color} stone from the tray at {coord}", "the {color} stone at {coord}"), "from the tray"),
    (("row {near0} from the near edge, column {left0} from the left edge, counting from zero",
      "row {near0}, column {left0}"), "says where it counts from"),
    (("row {near1} from the near edge, column {left1} from the left edge, counting from one",
      "row {near1} from the far edge, column {left1} from the left edge, counting from one"), "coordinates.one_based"),
    (('    - "and then stop"', '    - "and then the left one"'), "distractors"),
    (("the {color} stone from the tray at {coord}", "the {color} stone from the tray at {coord} {size}"),
     "templates.train"),
    (("row {near1} from the near edge, column {left1}", "row {middle} from the near edge, column {left1}"),
     "coordinates.one_based"),
])
def test_instruction_files_that_break_the_rule_are_refused(tmp_path, edit: tuple[str, str], needle: str) -> None:
    from bomb_data.errors import ConfigError
    from bomb_data.perturb.language import INSTRUCTIONS_FILE

    text = INSTRUCTIONS_FILE.read_text()
    assert edit[0] in text
    bad = tmp_path / "instructions.yaml"
    bad.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(ConfigError, match=re.escape(needle)) as exc:
        load_templates(bad)
    assert "\n" not in str(exc.value)
