"""The scene is drawn from the seed alone; the target comes afterwards (issue 21, finding 1)."""

from __future__ import annotations

import re

import gymnasium as gym
import numpy as np
import pytest

from bomb_data.config import SimConfig
from bomb_data.env import GoPlaceEnv, episode_generators
from bomb_data.errors import ConfigError
from bomb_data.params import EpisodeParams, SceneParams
from bomb_data.perturb.grid import grid_from_dict, load_grid
from bomb_data.perturb.language import _ORDINAL_WORDS
from bomb_data.task import draw_board, empty_points, nearest_intersection

SHIPPED = ("nominal", "study", "ablation", "randomized")
TINY = SimConfig(image_height=32, image_width=32)


@pytest.fixture(scope="module")
def env():
    e = GoPlaceEnv(TINY)
    yield e
    e.close()


_COORD_RE = re.compile(r"\b(?:[A-HJ-T]\d{1,2}|\d{1,2}(?:st|nd|rd|th)?|" + "|".join(_ORDINAL_WORDS) + r")\b")


def _mask_coordinate(text: str) -> str:
    """The sentence with its numbers, ordinals and Go points blanked: template, phrasing and distractors."""
    return _COORD_RE.sub("#", text)


def _snapshot(env: GoPlaceEnv, obs: dict) -> dict[str, np.ndarray]:
    out = {k: np.asarray(v).copy() for k, v in obs.items() if k != "instruction"}
    out["mj_state"] = env.mj_state()
    return out


@pytest.mark.parametrize("grid", SHIPPED)
def test_same_seed_two_targets_same_scene_on_every_cell(env: GoPlaceEnv, grid: str) -> None:
    """Every cell of every shipped grid: same seed, two different targets -> identical pictures
    and MuJoCo state at reset and after two identical steps; only the target and its words differ."""
    cells = load_grid(grid).cells()
    action = np.array([0.01, -0.01, 0.005, 0.0, 0.0, 0.02, -1.0], np.float32)
    for i, c in enumerate(cells):
        seed = 1000 + i
        env.reset(seed=seed, options={"params": c.params})
        n = c.params.scene.board_size
        empty = empty_points(n, env.board_cells)
        assert len(empty) == n * n - c.params.scene.n_board_stones >= 3, c.id
        t1, t2 = empty[0], empty[-1]
        shots, texts = [], []
        for t in (t1, t2):
            obs, info = env.reset(seed=seed, options={"params": c.params, "target": t})
            assert info["target"] == t
            snap = [_snapshot(env, obs)]
            for _ in range(2):
                obs, *_ = env.step(action)
                snap.append(_snapshot(env, obs))
            shots.append(snap)
            texts.append(info["instruction"])
        for a, b in zip(*shots):
            assert a.keys() == b.keys() and {"agentview", "wrist", "mj_state", "state"} <= a.keys()
            for k in a:
                assert a[k].tobytes() == b[k].tobytes(), f"{grid} {c.id}: {k} differs between targets {t1}, {t2}"
        assert texts[0] != texts[1] and _mask_coordinate(texts[0]) == _mask_coordinate(texts[1]), (c.id, texts)


def test_reset_draws_the_board_with_draw_board(env: GoPlaceEnv) -> None:
    """env.reset places exactly the stones and target that draw_board gives for the episode's
    generators (the guesser test below relies on this)."""
    state_env = GoPlaceEnv(TINY, render_images=False)
    try:
        for seed in range(12):
            layout = ("random", "clustered", "line")[seed % 3]
            n = (3, 5, 7, 9)[seed % 4]
            k = (1, 3, 5, 6)[seed % 4]
            p = EpisodeParams(scene=SceneParams(board_size=n, n_board_stones=k, layout=layout))
            _, info = state_env.reset(seed=seed, options={"params": p})
            rng = episode_generators(gym.utils.seeding.np_random(seed)[0])
            cells, target = draw_board(rng.layout, rng.target, n, k, layout)
            assert info["target"] == target and state_env.board_cells == cells
            where = sorted(nearest_intersection(state_env.scene, p.scene, xyz)[0]
                           for xyz in info["privileged"]["board_stones"])
            assert where == sorted(cells), (seed, where, cells)
    finally:
        state_env.close()


def test_a_given_target_on_a_stone_and_a_crowded_board_are_one_line_errors() -> None:
    e = GoPlaceEnv(TINY, render_images=False)
    try:
        p = EpisodeParams(scene=SceneParams(n_board_stones=8))
        e.reset(seed=4, options={"params": p})
        stone = e.board_cells[0]
        with pytest.raises(ConfigError, match=r"^target: expected an empty intersection") as exc:
            e.reset(seed=4, options={"params": p, "target": stone})
        assert "\n" not in str(exc.value)
        crowded = EpisodeParams(scene=SceneParams(board_size=3, n_board_stones=7))
        with pytest.raises(ConfigError, match=r"scene.n_board_stones: expected at most 6 on a 3x3 board "
                                              r"\(sim.min_empty_points = 3") as exc:
            e.reset(seed=0, options={"params": crowded})
        assert "\n" not in str(exc.value)
    finally:
        e.close()
    # configurable: with min_empty_points 1 the same board is allowed, with 5 it is refused
    loose = GoPlaceEnv(SimConfig(min_empty_points=2), render_images=False)
    try:
        _, info = loose.reset(seed=0, options={"params": crowded})
        assert info["target"] not in loose.board_cells and len(loose.board_cells) == 7
    finally:
        loose.close()
    strict = GoPlaceEnv(SimConfig(min_empty_points=5), render_images=False)
    try:
        with pytest.raises(ConfigError, match="at most 4 on a 3x3 board"):
            strict.reset(seed=0, options={"params": EpisodeParams(scene=SceneParams(board_size=3, n_board_stones=5))})
    finally:
        strict.close()


def test_grids_refuse_boards_with_fewer_than_three_empty_points() -> None:
    for grid in SHIPPED:  # the shipped grids keep >= 3 empty points in every cell
        for c in load_grid(grid).cells():
            n = c.params.scene.board_size
            assert n * n - c.params.scene.n_board_stones >= 3, (grid, c.id)
    with pytest.raises(ConfigError, match=r"cell n_board_stones=23: scene.n_board_stones: expected at most 22 on a "
                                          r"5x5 board \(sim.min_empty_points = 3") as exc:
        grid_from_dict({"mode": "one-at-a-time", "axes": {"n_board_stones": {"levels": [23]}}})
    assert "\n" not in str(exc.value)
    grid_from_dict({"mode": "one-at-a-time", "axes": {"n_board_stones": {"levels": [22]}}})
    with pytest.raises(ConfigError, match="at most 6 on a 3x3 board"):
        grid_from_dict({"mode": "random", "axes": {"n_board_stones": {"levels": [3, 7]},
                                                    "board_size": {"levels": [3, 5]}}})


def test_a_configuration_asking_more_empty_points_than_a_grid_leaves_is_refused_before_writing(run_cli, tmp_path):
    g = load_grid("study")
    g.require_empty_points(3)
    g.require_empty_points(11)  # its most crowded cell: 14 stones on 5x5
    with pytest.raises(ConfigError, match=r"^grid study.yaml: cell n_board_stones=14: .*at most 13 on a 5x5 board"):
        g.require_empty_points(12)
    rand = grid_from_dict({"mode": "random", "axes": {"n_board_stones": {"levels": [3, 6]},
                                                       "board_size": {"levels": [3, 5]}}})
    rand.require_empty_points(3)  # 6 stones on 3x3 leave 3
    with pytest.raises(ConfigError, match="combination n_board_stones=6,board_size=3"):
        rand.require_empty_points(4)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("sim:\n  min_empty_points: 23\n")
    for args in (("generate", "--n", "1", "--out", str(tmp_path / "store")),
                 ("eval", "--policy", "expert", "--out", str(tmp_path / "eval"))):
        r = run_cli(*args, "--config", str(cfg), timeout=300)
        err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
        assert r.returncode == 2 and len(err) == 1 and "sim.min_empty_points = 23" in err[0], r.stderr[-1500:]
        assert "Traceback" not in r.stderr
    assert not (tmp_path / "store").exists() and not (tmp_path / "eval").exists()
