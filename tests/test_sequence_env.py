"""bomb_data/GoSequence-v0: scene option, subtasks, instructions, success and failure, the expert."""

from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np
import pytest

from bomb_data._resources import shipped
from bomb_data.config import BombConfig
from bomb_data.env import GoPlaceEnv
from bomb_data.errors import ConfigError
from bomb_data.params import EpisodeParams, LanguageParams, SceneParams
from bomb_data.perturb.language import parse_target
from bomb_data.rollout import expert_rngs, rollout_expert
from bomb_data.sequence.env import GoSequenceEnv
from bomb_data.sequence.rules import sequence_from_sgf
from bomb_data.task import nearest_intersection
from scripted_policies.sequence import SequenceExpert

SGF9 = shipped("sgf") / "9x9"
CFG = BombConfig.model_validate({"sim": {"image_height": 48, "image_width": 48}})
P9 = EpisodeParams(scene=SceneParams(board_size=9))


def _run_expert(env, seed, options=None, hook=None):
    obs, info = env.reset(seed=seed, options=options)
    ex = SequenceExpert(CFG.expert, CFG.sim.control_hz)
    ex.reset(info, expert_rngs(seed)[0])
    infos = [info]
    while True:
        obs, _, term, trunc, info = env.step(ex.act(obs, info))
        infos.append(info)
        if hook is not None:
            hook(env, info)
        if term or trunc:
            return infos


def _physical_board(env) -> dict:
    """Colour per intersection of every stone resting on the board now."""
    sc, d = env.scene, env.data
    out = {}
    for k, b in enumerate(sc.stone_bodies):
        pos = d.xpos[b]
        (r, c), local = nearest_intersection(sc, env.params.scene, pos)
        if abs(pos[2] - 0.02 - sc.geom.stone_thickness / 2) < 0.004 and np.all(np.abs(local) <= sc.geom.half_extent):
            col = "black" if sc.model.geom_matid[sc.stone_vis_geoms[k]] == sc.ids["mat_black"] else "white"
            assert (r, c) not in out
            out[(r, c)] = col
    return out


def test_registered_and_scene_has_bowls_and_lid_not_the_tray():
    env = gym.make("bomb_data/GoSequence-v0", config=CFG, params=P9, render_images=False).unwrapped
    env.reset(seed=0)
    m = env.model
    names = {m.body(i).name for i in range(m.nbody)}
    assert {"bowl_black", "bowl_white", "lid"} <= names and "tray" not in names and "stone_active" not in names
    assert len(env.scene.stone_bodies) == len(env.game.initial) + len(env.game.moves)
    assert _physical_board(env) == env.game.initial  # the start position, stone for stone
    # every bowl stone rests inside its bowl
    for col in ("black", "white"):
        bid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, f"bowl_{col}")
        n_col = env.game.placements(col)
        first = len(env.game.initial) + (0 if col == "black" else env.game.placements("black"))
        for k in range(first, first + n_col):
            rel = env.data.xpos[env.scene.stone_bodies[k]][:2] - env.data.xpos[bid][:2]
            assert np.all(np.abs(rel) < 0.1)


def test_goplace_episode_unchanged_after_sequence_episodes_in_the_same_process():
    """The scene option leaves the single task alone: a GoPlace episode is bit-identical before and
    after GoSequence episodes built their scenes (scene cache, materials, appearance)."""
    cfg = BombConfig.model_validate({"sim": {"image_height": 32, "image_width": 32}})
    p = EpisodeParams(scene=SceneParams(board_size=9, n_board_stones=6))
    a, _ = rollout_expert(GoPlaceEnv(cfg), cfg, p, seed=5)
    seq = GoSequenceEnv(cfg, P9)
    for s in range(2):
        seq.reset(seed=s)
        seq.step(np.zeros(7, np.float32))
    b, _ = rollout_expert(GoPlaceEnv(cfg), cfg, p, seed=5)
    assert np.array_equal(a.mj_state, b.mj_state)
    assert a.jpeg == b.jpeg
    assert all(np.array_equal(a.steps[k], b.steps[k], equal_nan=True) for k in a.steps)


def test_expert_plays_a_ko_capture_and_the_final_board_is_the_rules_position():
    game = sequence_from_sgf(SGF9 / "capture_ko_9x9.sgf", 9, 8, 2)  # B F5 takes E5 (remove it), W plays C7
    env = GoSequenceEnv(CFG, P9, render_images=False)
    infos = _run_expert(env, 3, {"game": game})
    last = infos[-1]
    assert [k for k, _, _ in last["plan"]] == ["place", "remove", "place"]
    assert last["success"] and last["subtasks_completed"] == 3, last.get("failure_reason")
    assert _physical_board(env) == game.final  # stone for stone, colour for colour
    captured = env.scene.stone_bodies[env.stone_of[1]]
    rel = env.data.xpos[captured][:2] - env.scene.lid_center[:2]
    assert np.all(np.abs(rel) <= env.scene.lid_half)
    # info: subtask index advances 0 -> 1 -> 2, each step's instruction is its subtask's
    idx = [i["subtask_index"] for i in infos]
    assert idx[0] == 0 and idx == sorted(idx) and set(idx) == {0, 1, 2}
    assert all(i["instruction"] == env.subtask_texts[i["subtask_index"]] for i in infos)


def test_a_stone_moved_after_its_subtask_fails_the_next_one():
    game = sequence_from_sgf(SGF9 / "capture_ko_9x9.sgf", 9, 8, 2)
    env = GoSequenceEnv(CFG, P9, render_images=False)
    state = {"done": False}

    def knock(env, info):  # once subtask 1 begins, shift the stone placed by subtask 0 by 8 mm
        if info["subtask_index"] == 1 and not state["done"]:
            adr = env.scene.stone_qpos_adr[env.stone_of[0]]
            env.data.qpos[adr] += 0.008
            mujoco.mj_forward(env.model, env.data)
            state["done"] = True

    last = _run_expert(env, 3, {"game": game}, hook=knock)[-1]
    assert state["done"]
    assert not last["success"] and last["failed_subtask"] == 1 and last["failure_reason"] == "displaced_stones"


@pytest.mark.parametrize("convention", ["zero_based", "one_based", "go_letters"])
@pytest.mark.parametrize("template_set", ["train", "unseen"])
def test_subtask_instructions_name_their_intersection_in_every_convention(convention, template_set):
    p = P9.model_copy(update={"language": LanguageParams(convention=convention, template_set=template_set)})
    env = GoSequenceEnv(CFG, p, render_images=False, sequence={"capture_bias": 1.0, "move_number": 20})
    seen = set()
    for seed in range(4):
        env.reset(seed=seed)
        for st, text in zip(env.subtasks, env.subtask_texts):
            assert parse_target(text, 9, convention) == st.point, text
            assert st.color in text and (("lid" in text) == (st.kind == "remove")), text
            seen.add(st.kind)
    assert seen == {"place", "remove"}


def test_plan_mode_gives_the_whole_plan_at_every_step():
    env = GoSequenceEnv(CFG, P9, render_images=False, sequence={"plan_mode": True, "capture_bias": 1.0,
                                                               "move_number": 20})
    obs, info = env.reset(seed=2)
    plan = obs["instruction"]
    assert plan.startswith("in order, play ") and plan.count("remove") == sum(k == "remove" for k, _, _ in info["plan"])
    obs, _, _, _, info2 = env.step(np.zeros(7, np.float32))
    assert obs["instruction"] == plan and info2["subtask_instruction"] == env.subtask_texts[0]


def test_timeout_names_the_failed_subtask_and_reason():
    cfg = BombConfig.model_validate({"sim": {"image_height": 48, "image_width": 48, "max_steps": 12}})
    env = GoSequenceEnv(cfg, P9, render_images=False)
    env.reset(seed=1)
    for i in range(12):  # noqa: B007 (i is checked after the loop)
        _, r, term, trunc, info = env.step(np.zeros(7, np.float32))
    assert trunc and not term and i == 11
    assert info["failed_subtask"] == 0 and info["failure_reason"] == "missed_grasp" and not info["success"]


def test_deterministic_per_seed():
    env = GoSequenceEnv(CFG, P9, render_images=False, sequence={"capture_bias": 0.7})
    a = env.reset(seed=4)[1], env.mj_state(), list(env.subtask_texts)
    b = env.reset(seed=5)[1], env.mj_state(), list(env.subtask_texts)
    c = env.reset(seed=4)[1], env.mj_state(), list(env.subtask_texts)
    assert a[0]["plan"] == c[0]["plan"] and np.array_equal(a[1], c[1]) and a[2] == c[2]
    assert a[0]["plan"] != b[0]["plan"]


def test_bad_sequence_input_is_one_line(tmp_path):
    env = GoSequenceEnv(CFG, P9, render_images=False)
    cases = [({"source": "sgf", "sgf": str(shipped("sgf") / "5x5")}, "a 5x5 game, but the scene's board is 9x9"),
             ({"source": "sgf"}, "sequence.sgf: expected"),
             ({"length": 0}, "sequence: length"),
             ({"source": "sgf", "sgf": str(SGF9), "move_number": 40}, "fewer than move number 40")]
    for sp, msg in cases:
        with pytest.raises(ConfigError) as ei:
            env.reset(seed=0, options={"sequence": sp})
        assert msg in str(ei.value) and "\n" not in str(ei.value), str(ei.value)
