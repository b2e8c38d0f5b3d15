"""Go sequences (bomb_data.sequence.rules): SGF replay against sgfmill, generated play, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from sgfmill import boards, sgf, sgf_moves

from bomb_data._resources import shipped
from bomb_data.errors import ConfigError
from bomb_data.sequence.rules import generate_sequence, position, sequence_from_sgf

SGF_DIR = shipped("sgf")


def _sgfmill_position(path, upto: int) -> dict:
    """The position after ``upto`` moves, computed by sgfmill alone."""
    game = sgf.Sgf_game.from_bytes(path.read_bytes())
    board, plays = sgf_moves.get_setup_and_moves(game)
    for colour, (r, c) in plays[:upto]:
        board.play(r, c, colour)
    return position(board)


def _apply(seq) -> dict:
    """The position the subtasks leave: every place adds its stone, every remove takes one off."""
    pos = dict(seq.initial)
    for st in seq.subtasks():
        if st.kind == "place":
            assert st.point not in pos
            pos[st.point] = st.color
        else:
            assert pos.pop(st.point) == st.color
    return pos


@pytest.mark.parametrize("name,n,m,k", [("capture_ko_9x9.sgf", 9, 6, 10), ("capture_ko_9x9.sgf", 9, 0, 22),
                                        ("small_5x5.sgf", 5, 2, 5), ("play_b_9x9.sgf", 9, 18, 12)])
def test_sgf_replay_with_captures_matches_sgfmill(name, n, m, k):
    path = SGF_DIR / f"{n}x{n}" / name
    seq = sequence_from_sgf(path, n, m, k)
    assert len(seq.moves) == k
    assert sum(len(mv.captures) for mv in seq.moves) >= 1  # every case includes a capture
    assert seq.initial == _sgfmill_position(path, m)
    want = _sgfmill_position(path, m + k)
    assert seq.final == want
    assert _apply(seq) == want  # stone for stone, colour for colour
    kinds = [s.kind for s in seq.subtasks()]
    assert kinds.count("place") == k and kinds.count("remove") == sum(len(mv.captures) for mv in seq.moves)


def test_ko_capture_is_a_remove_subtask_after_its_move():
    seq = sequence_from_sgf(SGF_DIR / "9x9" / "capture_ko_9x9.sgf", 9, 8, 1)  # move 9: black F5 takes the ko at E5
    st = seq.subtasks()
    assert [(s.kind, s.color, s.point) for s in st] == [("place", "black", (4, 5)), ("remove", "white", (4, 4))]


def test_generated_play_is_seeded_legal_and_captures_with_the_knob():
    a = generate_sequence(np.random.default_rng(3), 9, 10, 20, capture_bias=0.9)
    b = generate_sequence(np.random.default_rng(3), 9, 10, 20, capture_bias=0.9)
    assert a.moves == b.moves and a.initial == b.initial
    assert _apply(a) == a.final
    # replay with sgfmill from the start position: every move legal (empty point, not suicide), same captures
    board = boards.Board(9)
    board.apply_setup([(8 - r, c) for (r, c), col in a.initial.items() if col == "black"],
                      [(8 - r, c) for (r, c), col in a.initial.items() if col == "white"], [])
    for mv in a.moves:
        before = position(board)
        board.play(8 - mv.point[0], mv.point[1], mv.color[0])
        after = position(board)
        assert after.get(mv.point) == mv.color
        assert tuple(sorted(p for p in before if p not in after)) == mv.captures
    caps = lambda bias: sum(len(m.captures) for s in range(6)  # noqa: E731
                            for m in generate_sequence(np.random.default_rng(s), 9, 20, 10, bias).moves)
    assert caps(1.0) > caps(0.0) + 5


def test_bad_input_is_one_line(tmp_path):
    bad = tmp_path / "bad.sgf"
    bad.write_text("(;GM[1]SZ[9];B[ee];W[")
    cases = [
        (bad, 9, 0, 1, "not a valid SGF"),
        (SGF_DIR / "5x5" / "small_5x5.sgf", 9, 0, 3, "a 5x5 game, but the scene's board is 9x9"),
        (SGF_DIR / "bad" / "illegal_ko_9x9.sgf", 9, 5, 5, "move 10 (white at E5) is illegal: retakes a ko"),
        (SGF_DIR / "9x9" / "capture_ko_9x9.sgf", 9, 20, 5,
         "the game has 22 moves, fewer than move number 20 + sequence length 5"),
        (tmp_path / "missing.sgf", 9, 0, 1, "no such file"),
    ]
    (tmp_path / "empty").mkdir()
    cases.append((tmp_path / "empty", 9, 0, 1, "no .sgf file"))
    from bomb_data.sequence.rules import sgf_files

    for path, n, m, k, msg in cases:
        with pytest.raises(ConfigError) as ei:
            for f in sgf_files(path):
                sequence_from_sgf(f, n, m, k)
        text = str(ei.value)
        assert msg in text and "\n" not in text, text
    occupied = tmp_path / "occupied.sgf"
    occupied.write_text("(;GM[1]SZ[9];B[ee];W[ee])")
    with pytest.raises(ConfigError, match="move 2 .* is illegal: occupied"):
        sequence_from_sgf(occupied, 9, 0, 2)
    suicide = tmp_path / "suicide.sgf"
    suicide.write_text("(;GM[1]SZ[9];B[ba];W[ia];B[ab];W[aa])")
    with pytest.raises(ConfigError, match="move 4 .* is illegal: suicide"):
        sequence_from_sgf(suicide, 9, 0, 4)
