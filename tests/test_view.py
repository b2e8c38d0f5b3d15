"""What the agentview camera sees at reset (issue 21, findings 5 and 6): the arm hides no intersection
at any level of any shipped grid, the measure of occlusion sees an arm that does hide the board, the
board fills the same share of the picture at every size, and every episode records the view."""

from __future__ import annotations

import json
import math

import mujoco
import numpy as np
import pytest

import bomb_data.env as env_module
from bomb_data.config import SimConfig, load_config
from bomb_data.env import GoPlaceEnv
from bomb_data.params import EpisodeParams, SceneParams
from bomb_data.perturb.axes import get_axis
from bomb_data.perturb.grid import list_grids, load_grid
from bomb_data.rollout import episode_seed
from bomb_data.sim.framing import BOARD_SHARE
from bomb_data.sim.panda import HOME_QPOS, POSTURE_QPOS
from bomb_data.sim.scene import board_corners_world, intersection_world

SIZE = 128
SEEDS = (0, 1)


def _params(**scene) -> EpisodeParams:
    return EpisodeParams(scene=SceneParams(**scene))


def _intersection_pixels_show_the_board(env: GoPlaceEnv) -> list[tuple[int, int]]:
    """Intersections whose projected pixel does not show a board or stone geom (independent of
    ``board_view``: reads the segmentation at the projection itself)."""
    sc, ps = env.scene, env.params.scene
    ids, is_geom = env._segmentation("agentview")
    n = sc.geom.size
    r, c = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    uv = env.project("agentview", intersection_world(sc, ps, r, c))
    ok_ids = set(sc.board_geoms) | set(sc.stone_vis_geoms)
    bad = []
    for i in range(n):
        for j in range(n):
            if np.isnan(uv[i, j]).any():
                bad.append((i, j))
                continue
            u, v = (int(x) for x in uv[i, j])
            if not (is_geom[v, u] and int(ids[v, u]) in ok_ids):
                bad.append((i, j))
    return bad


def _shipped_episodes() -> list[tuple[str, str, EpisodeParams, int]]:
    """(grid, cell id, params, seed) of every cell of every shipped grid, plus, for the randomized
    grid, episodes as generation draws them (every axis sampled at once)."""
    out = []
    for name in list_grids():
        g = load_grid(name)
        if g.task == "sequence":  # another scene (bowls, lid); its cells are not GoPlace episodes
            continue
        for cell in g.cells():
            seeds = range(8) if cell.axis == "robot_init" else SEEDS
            out += [(name, cell.id, cell.params, s) for s in seeds]
        if g.mode == "random":
            for k in range(24):
                cell, p = g.episode_params(11, k)
                out.append((name, f"episode {k} ({cell.id})", p, episode_seed(11, k, 0)))
    return out


SHIPPED = _shipped_episodes()


@pytest.fixture(scope="module")
def view_env():
    env = GoPlaceEnv(SimConfig(image_height=SIZE, image_width=SIZE))
    yield env
    env.close()


@pytest.mark.parametrize("grid", list_grids())
def test_no_intersection_is_hidden_at_reset_on_any_shipped_cell(grid: str, view_env: GoPlaceEnv) -> None:
    problems = []
    for name, cid, p, seed in SHIPPED:
        if name != grid:
            continue
        _, info = view_env.reset(seed=seed, options={"params": p})
        bad = _intersection_pixels_show_the_board(view_env)
        if (bad or info["hidden_intersections"] != 0 or info["board_visible_fraction"] != 1.0
                or info["target_visible"] is not True):
            problems.append(f"{cid} seed {seed}: pixels not board at {bad[:5]}, reported "
                            f"{info['hidden_intersections']} hidden, {info['board_visible_fraction']:.3f} visible")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("view", [{}, {"board_size": 19}, {"camera_distance_scale": 1.8}, {"camera_fovy_deg": 20.0},
                                  {"camera_elevation_deg": 62.0}, {"camera_azimuth_deg": 45.0}],
                         ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items()) or "nominal")
def test_robot_init_at_its_bound_hides_nothing(view: dict, view_env: GoPlaceEnv) -> None:
    """The noisy ready pose at the axis' upper bound, in the views where the arm comes closest."""
    bound = get_axis("robot_init").bounds[0][1]
    p = _params(robot_init_noise_rad=bound, **view)
    for seed in range(12):
        _, info = view_env.reset(seed=seed, options={"params": p})
        assert info["hidden_intersections"] == 0 and info["board_visible_fraction"] == 1.0, (seed, info)
    # the noise is truncated at 2 std: no joint starts farther than that from the ready pose
    assert np.all(np.abs(view_env.ctrl.joint_pos() - HOME_QPOS) <= 2 * bound + 1e-9)


def test_the_measure_sees_an_arm_that_hides_the_board(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the arm over the board (the 0.2.0 ready pose), the reset view reports what the
    segmentation shows: the hidden share of the board, the hidden intersections, and a hidden target."""
    monkeypatch.setattr(env_module, "HOME_QPOS", POSTURE_QPOS)
    env = GoPlaceEnv(SimConfig(image_height=SIZE, image_width=SIZE))
    try:
        p = _params(n_board_stones=0)
        _, info = env.reset(seed=0, options={"params": p})
        frac, vis = env.board_view()
        hidden = [tuple(int(x) for x in ij) for ij in np.argwhere(~vis)]
        assert info["hidden_intersections"] == len(hidden) >= 2 and 0.5 < info["board_visible_fraction"] < 0.95
        # every intersection whose pixel shows the arm is reported hidden (the measure adds a clearance disc)
        assert set(_intersection_pixels_show_the_board(env)) <= set(hidden)
        # the visible fraction is the board's share still seen, against a picture with the arm moved away
        sc = env.scene
        corners = env.project("agentview", board_corners_world(sc, p.scene), inside_only=False)
        board_ids = list(sc.board_geoms)

        def board_px() -> int:
            from PIL import Image, ImageDraw

            ids, is_geom = env._segmentation("agentview")
            face = Image.new("L", (SIZE, SIZE), 0)
            ImageDraw.Draw(face).polygon([tuple(x) for x in corners.tolist()], fill=1)
            return int((is_geom & np.isin(ids, board_ids) & np.asarray(face, bool)).sum())

        with_arm = board_px()
        env.data.qpos[env.ctrl.qadr] = HOME_QPOS  # the arm back at the ready pose
        mujoco.mj_forward(env.model, env.data)
        assert env.board_view()[1].all()
        without = board_px()
        assert abs(with_arm / without - info["board_visible_fraction"]) < 0.02
        # a target under the arm is reported hidden, one in view visible
        for target, seen in ((hidden[len(hidden) // 2], False), (tuple(np.argwhere(vis)[0]), True)):
            _, info = env.reset(seed=0, options={"params": p, "target": target})
            assert info["target_visible"] is seen, target
        # a state-only environment renders nothing and says so
        blind = GoPlaceEnv(SimConfig(image_height=SIZE, image_width=SIZE), render_images=False)
        _, info = blind.reset(seed=0, options={"params": p})
        assert info["board_visible_fraction"] is None and info["target_visible"] is None
        assert info["line_spacing_px"] > 0
        blind.close()
    finally:
        env.close()


def _board_share(env: GoPlaceEnv) -> float:
    board = env.masks("agentview")["board"]
    ys, xs = np.nonzero(board)
    return max((xs.max() - xs.min() + 1) / board.shape[1], (ys.max() - ys.min() + 1) / board.shape[0])


def test_the_board_fills_the_same_share_at_every_size() -> None:
    """The board's extent in agentview is BOARD_SHARE of the frame on 8x8 and larger, and at least
    half of it on the smallest boards (where the tray must stay in view); the recorded pixels per line
    match the rendered camera, and fall as the board grows."""
    env = GoPlaceEnv(SimConfig(image_height=SIZE, image_width=SIZE), masks=True)
    shares, spacing = {}, {}
    try:
        for n in range(3, 20):
            _, info = env.reset(seed=0, options={"params": _params(board_size=n, n_board_stones=0)})
            shares[n] = _board_share(env)
            sc = env.scene
            r, c = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
            uv = env.project("agentview", intersection_world(sc, env.params.scene, r, c)).astype(float)
            d = np.concatenate([np.linalg.norm(np.diff(uv, axis=0), axis=-1).ravel(),
                                np.linalg.norm(np.diff(uv, axis=1), axis=-1).ravel()])
            assert math.isclose(info["line_spacing_px"], float(np.median(d)), rel_tol=0.01, abs_tol=0.02), n
            assert math.isclose(info["line_spacing_px_min"], float(d.min()), rel_tol=0.01, abs_tol=0.02), n
            spacing[n] = info["line_spacing_px"]
    finally:
        env.close()
    # the mask includes the board's near side face: up to ~3 px more than the top face at 128 px
    for n, s in shares.items():
        lo = BOARD_SHARE - 0.015 if n >= 8 else 0.5
        assert lo <= s <= BOARD_SHARE + 0.02, f"{n}x{n}: board extent {s:.3f} of the frame"
    assert all(shares[n] <= shares[n + 1] + 0.01 for n in range(3, 19)), shares  # never smaller on a larger board
    assert all(spacing[n] > spacing[n + 1] for n in range(3, 19)), spacing


def test_camera_levels_keep_their_board_share() -> None:
    """fov and elevation refit the distance: the board keeps its share (the distance level changes it)."""
    env = GoPlaceEnv(SimConfig(image_height=SIZE, image_width=SIZE), masks=True)
    try:
        out = {}
        for name, p in (("nominal", _params()), ("fov28", _params(camera_fovy_deg=28.0)),
                        ("fov55", _params(camera_fovy_deg=55.0)), ("el80", _params(camera_elevation_deg=80.0)),
                        ("far", _params(camera_distance_scale=1.4))):
            env.reset(seed=0, options={"params": p})
            out[name] = _board_share(env)
    finally:
        env.close()
    for k in ("fov28", "fov55", "el80"):
        assert abs(out[k] - out["nominal"]) < 0.04, out
    assert out["far"] < out["nominal"] - 0.1, out


def test_episodes_record_the_view_in_store_and_eval(tmp_path) -> None:
    from bomb_data.evaluate.runner import evaluate, read_results
    from tests._stores import make_store

    store = make_store(tmp_path / "store", n=2, grid="nominal")
    for m in store.episodes:
        assert m["board_visible_fraction"] == 1.0 and m["target_visible"] is True and m["hidden_intersections"] == 0
        assert m["line_spacing_px"] > m["line_spacing_px_min"] > 5
    cfg = load_config(overrides={"sim": {"image_height": 64, "image_width": 64}})
    s = evaluate(cfg, "expert", tmp_path / "ev", grid="nominal", episodes_per_cell=2, workers=1, videos_per_cell=0)
    rows = read_results(tmp_path / "ev" / "results.jsonl")
    assert all(r["board_visible_fraction"] == 1.0 and r["target_visible"] is True and r["line_spacing_px"] > 5
               for r in rows)
    cell = s["per_cell"]["nominal"]
    assert cell["target_hidden"] == 0 and cell["target_visibility_known"] == 2
    assert cell["board_visible_fraction"]["min"] == 1.0
    html = (tmp_path / "ev" / "report.html").read_text()
    assert f"data-key='line_spacing_px'>{cell['line_spacing_px']['median']:.1f}<" in html


def test_grid_show_states_pixels_per_line(run_cli) -> None:
    proc = run_cli("grid", "show", "ablation", "--json", "--size", "256", check=True)
    d = json.loads(proc.stdout)
    assert d["image_size"] == [256, 256]
    px = {c["id"]: c["line_spacing_px"] for c in d["cells"]}
    assert all(v["min"] <= v["median"] for v in px.values())
    assert px["board_size=3"]["median"] > px["nominal"]["median"] > px["board_size=9"]["median"]
    env = GoPlaceEnv(SimConfig(image_height=256, image_width=256), render_images=False)
    try:
        for cid in ("nominal", "board_size=9", "camera_elevation=64"):
            cell = next(c for c in load_grid("ablation").cells() if c.id == cid)
            _, info = env.reset(seed=0, options={"params": cell.params})
            assert abs(info["line_spacing_px"] - px[cid]["median"]) <= 0.06, cid
    finally:
        env.close()
    text = run_cli("grid", "show", "nominal", check=True).stdout
    assert "px/line" in text and f"{px['nominal']['min']:.1f}/{px['nominal']['median']:.1f}" in text


def test_board_visibility_on_constructed_masks() -> None:
    from bomb_data.sim.visibility import board_visibility

    H = W = 100
    face = np.array([[20.0, 20.0], [80.0, 20.0], [80.0, 80.0], [20.0, 80.0]])  # 60 x 60 px
    grid = np.array([[[30.0, 30.0], [70.0, 30.0]], [[30.0, 70.0], [70.0, 70.0]]])  # (row, col) -> (u, v)
    radius = np.full((2, 2), 5.0)
    robot = np.zeros((H, W), bool)
    frac, vis = board_visibility(robot, face, grid, radius)
    assert frac == 1.0 and vis.all()
    robot[:, 50:] = True  # the right half of the picture
    frac, vis = board_visibility(robot, face, grid, radius)
    assert abs(frac - 0.5) < 0.03 and vis.tolist() == [[True, False], [True, False]]
    robot[:] = False
    robot[30, 36] = True  # one pixel 6 px right of (30, 30): outside a 5 px clearance, inside a 7 px one
    assert board_visibility(robot, face, grid, radius)[1][0, 0]
    assert not board_visibility(robot, face, grid, np.full((2, 2), 7.0))[1][0, 0]
    grid_out = grid.copy()
    grid_out[1, 1] = [150.0, 70.0]  # off the picture: not visible
    grid_out[1, 0] = [np.nan, np.nan]  # behind the camera: not visible
    assert board_visibility(np.zeros((H, W), bool), face, grid_out, radius)[1].tolist() == [[True, True],
                                                                                             [False, False]]
    bad = face.copy()
    bad[0] = np.nan
    assert math.isnan(board_visibility(np.zeros((H, W), bool), bad, grid, radius)[0])
