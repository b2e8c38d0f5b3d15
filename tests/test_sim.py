"""Simulation core: scene, controller, task, expert, Gymnasium environment (issue 3)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bomb_data.config import SimConfig
from bomb_data.env import GoPlaceEnv
from bomb_data.errors import ConfigError
from bomb_data.params import EpisodeParams, SceneParams
from bomb_data.sim.scene import build_scene, intersection_world
from scripted_policies import PickPlaceExpert

SMALL = SimConfig(image_height=64, image_width=64)


def params(**scene) -> EpisodeParams:
    return EpisodeParams(scene=SceneParams(**scene))


def run_expert(env: GoPlaceEnv, seed: int, p: EpisodeParams | None = None, target=None, until=None):
    opts = {"params": p or EpisodeParams()}
    if target is not None:
        opts["target"] = target
    obs, info = env.reset(seed=seed, options=opts)
    ex = PickPlaceExpert(control_hz=env.cfg.control_hz)
    ex.reset(info, np.random.default_rng(seed))
    for t in range(env.cfg.max_steps):
        if until is not None and until(ex, t):
            return obs, info, ex
        obs, _, term, trunc, info = env.step(ex.act(obs, info))
        if term or trunc:
            break
    return obs, info, ex


@pytest.fixture(scope="module")
def state_env():
    env = GoPlaceEnv(SMALL, render_images=False)
    yield env
    env.close()


@pytest.mark.parametrize("n", [3, 5, 9, 19])
def test_scene_builds_for_board_sizes(n):
    sc = build_scene(SimConfig(), SceneParams(board_size=n, n_board_stones=min(5, n * n - 1)))
    g = sc.geom
    assert sc.model.nbody > 10
    corners = intersection_world(sc, SceneParams(board_size=n), np.array([0, n - 1]), np.array([0, n - 1]))
    # the outermost intersections lie inside the board with a margin, spacing a bit larger than a stone
    assert np.all(np.abs(corners[:, :2] - [0.5, 0.0]) < g.half_extent)
    assert g.spacing > g.stone_diameter > 0.8 * g.spacing
    assert len(sc.stone_bodies) == 1 + min(5, n * n - 1)


def test_expert_succeeds_on_fixed_seeds(state_env):
    results = [run_expert(state_env, s)[1] for s in range(8)]
    assert all(r["success"] for r in results), [r.get("failure_reason") for r in results]


@pytest.mark.parametrize("n", [3, 9, 19])
def test_expert_succeeds_on_other_board_sizes(state_env, n):
    _, info, _ = run_expert(state_env, 11, params(board_size=n, n_board_stones=4))
    assert info["success"], info.get("failure_reason")


# The success check's decision table (off by one, held, displaced, dropped, ...) is tested on
# constructed final states in tests/test_placement.py.


def test_resting_stones_do_not_drift(state_env):
    env = state_env
    obs, info = env.reset(seed=7, options={"params": params(n_board_stones=8)})
    start = np.array([env.data.xpos[b].copy() for b in env.scene.stone_bodies])
    hold = np.zeros(7, np.float32)
    hold[6] = -1
    for _ in range(200):
        env.step(hold)
    end = np.array([env.data.xpos[b].copy() for b in env.scene.stone_bodies])
    assert np.max(np.linalg.norm(end - start, axis=1)) < 0.0005


def test_same_seed_gives_identical_observations():
    env = GoPlaceEnv(SMALL)
    try:
        a, _ = env.reset(seed=123)
        a2, _, _, _, _ = env.step(np.array([0.01, 0, 0, 0, 0, 0, -1], np.float32))
        b, _ = env.reset(seed=123)
        b2, _, _, _, _ = env.step(np.array([0.01, 0, 0, 0, 0, 0, -1], np.float32))
        for k in ("agentview", "wrist", "state", "joint_pos"):
            assert np.array_equal(a[k], b[k]) and np.array_equal(a2[k], b2[k]), k
        assert a["instruction"] == b["instruction"]
        c, _ = env.reset(seed=124)
        assert not np.array_equal(a["agentview"], c["agentview"])
    finally:
        env.close()


@pytest.mark.parametrize("n", [5, 19])
def test_agentview_shows_the_whole_board(n):
    env = GoPlaceEnv(SimConfig(), masks=True)
    try:
        obs, info = env.reset(seed=1, options={"params": params(board_size=n)})
        board = info["masks"]["agentview"]["board"]
        assert board.sum() > 0.03 * board.size
        # the board never touches the picture's border: it is wholly in view
        assert not (board[0].any() or board[-1].any() or board[:, 0].any() or board[:, -1].any())
        target = info["masks"]["agentview"]["target"]
        u, v = info["target_px"]["agentview"]
        assert target[int(v), int(u)]
        assert board[int(v), int(u)] or target.sum() > 0
    finally:
        env.close()


def test_gymnasium_check_env():
    from gymnasium.utils.env_checker import check_env

    env = GoPlaceEnv(SMALL)
    try:
        check_env(env, skip_render_check=True)
    finally:
        env.close()


def test_registered_env_id():
    # as the README says, in a fresh interpreter: the module path form needs no import, and importing
    # bomb_data.env registers the plain id
    code = ("import gymnasium as gym\n"
            "e = gym.make('bomb_data.env:bomb_data/GoPlace-v0', render_images=False)\n"
            "assert e.reset(seed=0)[0]['state'].shape == (8,)\n"
            "import bomb_data.env\n"
            "e = gym.make('bomb_data/GoPlace-v0', render_images=False)\n"
            "assert e.reset(seed=0)[0]['state'].shape == (8,)\n"
            "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False,
                       cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_bad_scene_input_is_one_clear_error(state_env):
    with pytest.raises(ConfigError, match="n_board_stones"):
        state_env.reset(seed=0, options={"params": params(board_size=3, n_board_stones=9)})
    with pytest.raises(ConfigError, match="target"):
        state_env.reset(seed=0, options={"target": (5, 0)})
    with pytest.raises(ConfigError, match="board_size"):
        state_env.reset(seed=0, options={"params": {"scene": {"board_size": 1}}})
