"""Rule-derived instructions ("capture the white stone in atari", "save the black group in atari"):
the uniqueness check, the resolved target against a liberty count written here, the env and grids."""

from __future__ import annotations

import numpy as np
import pytest
from sgfmill import sgf, sgf_moves

from bomb_data.config import BombConfig
from bomb_data.errors import ConfigError
from bomb_data.params import EpisodeParams, LanguageParams, SceneParams
from bomb_data.perturb.grid import grid_from_dict
from bomb_data.perturb.language import parse_target
from bomb_data.rollout import expert_rngs
from bomb_data.sequence.env import GoSequenceEnv
from bomb_data.sequence.language import plan_instruction, subtask_instruction
from bomb_data.sequence.rules import _Game, generate_sequence, rule_target, sequence_from_sgf
from scripted_policies.sequence import SequenceExpert


def _sgf_text(n: int, black: list, white: list, move: tuple) -> str:
    """A 5x5 record: setup stones (project (row, col), row 0 at the top) and black's next move."""
    def pt(p):
        return f"[{chr(97 + p[1])}{chr(97 + p[0])}]"
    return (f"(;GM[1]FF[4]SZ[{n}]AB{''.join(pt(p) for p in black)}" + (f"AW{''.join(pt(p) for p in white)}" if white
                                                                         else "") + f";B{pt(move)})")


# (black stones, white stones, black's next move, kind, moves that satisfy the instruction)
POSITIONS = [
    # capture: the white stone has three liberties -> none; one white stone in atari -> one;
    # two white stones in atari on different points -> two
    ([(1, 2)], [(2, 2)], (4, 4), "capture", 0),
    ([(0, 1)], [(0, 0)], (1, 0), "capture", 1),
    ([(0, 1), (0, 3)], [(0, 0), (0, 4)], (1, 0), "capture", 2),
    # save: extending leaves one liberty -> none; extending is the only way -> one; extending or
    # capturing the white stone that ataris -> two
    ([(0, 0)], [(0, 1), (2, 0)], (1, 0), "save", 0),
    ([(0, 0)], [(0, 1)], (1, 0), "save", 1),
    ([(0, 0), (0, 2)], [(0, 1)], (1, 0), "save", 2),
]


@pytest.mark.parametrize("black, white, move, kind, count", POSITIONS)
def test_only_a_position_with_exactly_one_satisfying_move_is_accepted(tmp_path, black, white, move, kind, count):
    path = tmp_path / "p.sgf"
    path.write_text(_sgf_text(5, black, white, move))
    board, _ = sgf_moves.get_setup_and_moves(sgf.Sgf_game.from_bytes(path.read_bytes()))
    t = rule_target(_Game(5, board), "black", kind)
    assert len(t.moves) == count and t.unique == (count == 1)
    if count == 1:
        assert t.moves == (move,)
        seq = sequence_from_sgf(path, 5, 0, 1, kind)
        assert seq.rule == t and seq.moves[0].point == move and seq.subtasks()[0].rule == t
    else:
        with pytest.raises(ConfigError) as e:
            sequence_from_sgf(path, 5, 0, 1, kind)
        msg = str(e.value)
        assert "is not the only move" in msg and "\n" not in msg
        assert (f"{count} moves do" if count else "no move does") in msg
    # without a rule-derived instruction every one of these is a sequence
    assert sequence_from_sgf(path, 5, 0, 1).moves[0].point == move


# ------------------------------------------------------------ an independent liberty count (not sgfmill)
def _nbrs(n, p):
    r, c = p
    return [(r + a, c + b) for a, b in ((1, 0), (-1, 0), (0, 1), (0, -1)) if 0 <= r + a < n and 0 <= c + b < n]


def _group_libs(pos, n, p):
    col, stones, libs, todo = pos[p], {p}, set(), [p]
    while todo:
        q = todo.pop()
        for x in _nbrs(n, q):
            if x not in pos:
                libs.add(x)
            elif pos[x] == col and x not in stones:
                stones.add(x)
                todo.append(x)
    return stones, libs


def _play(pos, n, color, p):
    """Place and remove the opponent groups left without liberties; None for a suicide."""
    pos = {**pos, p: color}
    for x in _nbrs(n, p):
        if x in pos and pos[x] != color:
            stones, libs = _group_libs(pos, n, x)
            if not libs:
                for s in stones:
                    del pos[s]
    return pos if _group_libs(pos, n, p)[1] else None


@pytest.mark.parametrize("kind", ["capture", "save"])
def test_generated_instruction_target_equals_an_independent_liberty_count(kind):
    n = 9
    for seed in range(4):
        seq = generate_sequence(np.random.default_rng(seed), n, 10, 2, 0.5, kind)
        pos, first, r = seq.initial, seq.moves[0], seq.rule
        assert r is not None and r.kind == kind and first.point == r.point and first.color == r.color
        other = "white" if first.color == "black" else "black"
        empty = [(i, j) for i in range(n) for j in range(n) if (i, j) not in pos]
        if kind == "capture":
            in_atari = {}
            for p, col in pos.items():
                if col == other:
                    stones, libs = _group_libs(pos, n, p)
                    if len(libs) == 1:
                        in_atari.setdefault(next(iter(libs)), set()).update(stones)
            assert list(in_atari) == [first.point], (seed, in_atari)
            assert set(first.captures) == in_atari[first.point] == set(r.stones)
        else:
            mine = {frozenset(_group_libs(pos, n, p)[0]) for p, col in pos.items()
                    if col == first.color and len(_group_libs(pos, n, p)[1]) == 1}
            assert len(mine) == 1 and set(r.stones) == set(next(iter(mine)))
            group = next(iter(mine))
            saving = []
            for p in empty:
                after = _play(pos, n, first.color, p)
                if after is not None and all(after.get(q) == first.color for q in group) and \
                        len(_group_libs(after, n, next(iter(group)))[1]) >= 2:
                    saving.append(p)
            assert saving == [first.point], (seed, saving)
        # the same seed resolves the same target
        again = generate_sequence(np.random.default_rng(seed), n, 10, 2, 0.5, kind)
        assert again.rule == r and again.moves == seq.moves


def test_instructions_name_no_intersection_and_plan_hides_the_captured_points():
    seq = generate_sequence(np.random.default_rng(1), 9, 10, 3, 0.5, "capture")
    sts = seq.subtasks()
    for ts in ("train", "unseen"):
        lp = LanguageParams(template_set=ts, convention="go_letters")
        text = subtask_instruction(sts[0], 9, lp, np.random.default_rng(0))
        assert "white" in text and "atari" in text and "black" in text
        with pytest.raises(ValueError):
            parse_target(text, 9, "go_letters")
    plan = plan_instruction(sts, 9, LanguageParams(convention="go_letters"), np.random.default_rng(0))
    assert plan.startswith("in order, play B: capture the W stone") and "remove the captured W stone" in plan
    from bomb_data.perturb.language import go_coordinate

    assert go_coordinate(*sts[0].point, 9) not in plan.split(",")[0]


def test_env_scores_the_rule_target_and_the_expert_plays_it():
    cfg = BombConfig.model_validate({"sim": {"image_height": 32, "image_width": 32}})
    env = GoSequenceEnv(cfg, EpisodeParams(scene=SceneParams(board_size=9)), render_images=False,
                        sequence={"length": 1, "move_number": 10, "capture_bias": 0.5, "rule_instruction": "capture"})
    obs, info = env.reset(seed=5)
    rule = env.game.rule
    assert rule is not None and info["plan"][0] == ("place", rule.color, rule.point) and info["target"] == rule.point
    assert "atari" in info["instruction"] and info["subtask_kind"] == "place"
    assert [p for k, _, p in info["plan"] if k == "remove"] == sorted(rule.stones)
    ex = SequenceExpert(cfg.expert, cfg.sim.control_hz)
    ex.reset(info, expert_rngs(5)[0])
    while True:
        obs, _, term, trunc, info = env.step(ex.act(obs, info))
        if term or trunc:
            break
    assert info["success"], info.get("failure_reason")
    env.close()


def test_rule_instruction_axis_and_load_time_checks():
    base = {"task": "sequence", "sequence": {"board_size": 9, "length": 1, "move_number": 14}}
    g = grid_from_dict({**base, "mode": "one-at-a-time",
                        "axes": {"rule_instruction": {"levels": ["capture", "save"]}}})
    assert [c.params.sequence.rule_instruction for c in g.cells()] == ["none", "capture", "save"]
    # capture_ko_9x9.sgf: move 15 (black J8) is the only capture of the white stone in atari at J9
    g = grid_from_dict({**base, "mode": "full", "axes": {"rule_instruction": {"levels": ["capture"]},
                                                         "sequence_source": {"levels": ["9x9/capture_ko_9x9.sgf"]}}})
    assert g.cells()[0].params.sequence.rule_instruction == "capture"
    with pytest.raises(ConfigError) as e:  # move 11 of that game captures nothing
        grid_from_dict({**base, "sequence": {**base["sequence"], "move_number": 10}, "mode": "full",
                        "axes": {"rule_instruction": {"levels": ["capture"]},
                                 "sequence_source": {"levels": ["9x9/capture_ko_9x9.sgf"]}}})
    assert "move 11" in str(e.value) and "is not the only move that captures" in str(e.value)
    with pytest.raises(ConfigError) as e:
        grid_from_dict({**base, "sequence": {**base["sequence"], "move_number": 4}, "mode": "one-at-a-time",
                        "axes": {"rule_instruction": {"levels": ["save"]}}})
    assert "expected at least 10 with rule_instruction save" in str(e.value)
