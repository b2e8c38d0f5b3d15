"""Perturbations in the simulator: every axis changes what it should, nominal changes nothing,
episodes are reproducible, and camera levels keep the whole board in view (issue 5)."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

from bomb_data.config import SimConfig
from bomb_data.env import GoPlaceEnv
from bomb_data.params import EpisodeParams
from bomb_data.perturb.axes import get_axis
from bomb_data.perturb.grid import load_grid
from bomb_data.rollout import episode_seed
from bomb_data.sim.scene import board_corners_world
from scripted_policies import PickPlaceExpert

SIZE = 64
SEED = 3
MIN_CHANGED_PX = 4  # of 2 x 64 x 64: a visible change, not a few anti-aliasing pixels


def _snapshot(env: GoPlaceEnv, p: EpisodeParams) -> dict[str, Any]:
    obs, info = env.reset(seed=SEED, options={"params": p})
    m = env.model
    model = np.concatenate([np.ravel(x).astype(float) for x in (
        m.mat_rgba, m.mat_specular, m.mat_shininess, m.mat_reflectance, m.light_dir, m.light_diffuse,
        m.light_castshadow, m.cam_pos, m.cam_quat, m.cam_fovy, m.body_pos, m.body_quat, m.geom_pos, m.geom_matid)]
        + [np.frombuffer(hashlib.sha256(m.tex_data.tobytes()).digest(), np.uint8).astype(float)])
    return {"agentview": obs["agentview"].copy(), "wrist": obs["wrist"].copy(), "model": model,
            "qpos": env.data.qpos.copy(), "instruction": info["instruction"]}


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a, b)


@pytest.fixture(scope="module")
def ablation_snapshots() -> dict[str, dict[str, Any]]:
    env = GoPlaceEnv(SimConfig(image_height=SIZE, image_width=SIZE))
    try:
        g = load_grid("ablation")
        snaps = {c.id: _snapshot(env, c.params) for c in g.cells()}
        snaps["nominal_again"] = _snapshot(env, EpisodeParams())
    finally:
        env.close()
    return snaps


def test_nominal_changes_nothing(ablation_snapshots: dict[str, dict[str, Any]]) -> None:
    a, b = ablation_snapshots["nominal"], ablation_snapshots["nominal_again"]
    for k in ("agentview", "wrist", "model", "qpos"):
        assert _same(a[k], b[k]), k
    assert a["instruction"] == b["instruction"]


ABLATION_CELLS = [c for c in load_grid("ablation").cells()[1:]]


@pytest.mark.parametrize("cell", ABLATION_CELLS, ids=[c.id for c in ABLATION_CELLS])
def test_every_level_changes_what_it_should(cell, ablation_snapshots: dict[str, dict[str, Any]]) -> None:
    nom, s = ablation_snapshots["nominal"], ablation_snapshots[cell.id]
    axis = get_axis(cell.axis)
    changed = sum(int((s[c] != nom[c]).any(-1).sum()) for c in ("agentview", "wrist"))
    pixels = changed >= MIN_CHANGED_PX
    model = not _same(s["model"], nom["model"])
    state = not _same(s["qpos"], nom["qpos"])
    text = s["instruction"] != nom["instruction"]
    if axis.kind == "image":
        assert pixels and not _same(s["agentview"], nom["agentview"]) and not _same(s["wrist"], nom["wrist"])
        assert not (model or state or text)
    elif axis.kind == "language":
        assert text and not (pixels or model or state)
    else:
        assert model or state, "a scene level must change the model or the initial state"
        if cell.axis in ("robot_init", "stone_layout", "active_stone_position", "board_position", "board_yaw"):
            assert state
        assert pixels, "a scene level must change the rendered pictures"


SURFACE_LEVELS = [c for c in load_grid("ablation").cells()
                  if c.axis in ("board_reflectivity", "stone_reflectivity", "light_intensity")]


@pytest.mark.parametrize("stone_color", ["black", "white"])
@pytest.mark.parametrize("cell", SURFACE_LEVELS, ids=[c.id for c in SURFACE_LEVELS])
def test_surface_levels_show_on_the_surface_they_name(cell, stone_color: str) -> None:
    """Each reflectivity and light level changes the pixels of the board top and of the stone to place
    (in the tray) themselves in the agentview picture, not only reflections elsewhere. MuJoCo clamps
    the lit colour before it multiplies the texture, so a white material would saturate and hide them."""
    env = GoPlaceEnv(SimConfig(image_height=2 * SIZE, image_width=2 * SIZE), masks=True)  # the tray stone: ~90 px
    try:
        shots = []
        for p in (EpisodeParams(), cell.params):
            p = p.model_copy(update={"scene": p.scene.model_copy(update={"stone_color": stone_color})})
            obs, _ = env.reset(seed=SEED, options={"params": p})
            masks = env.masks("agentview")
            shots.append((obs["agentview"].astype(int), masks["board"], masks["stone"]))
    finally:
        env.close()
    (av0, board, stone), (av1, _, _) = shots
    board_px = int(((np.abs(av1 - av0).max(-1) > 2) & board).sum())
    stone_px = int(((np.abs(av1 - av0).max(-1) > 2) & stone).sum())
    if cell.axis != "stone_reflectivity":
        assert board_px >= board.sum() // 4, f"{board_px} of {board.sum()} board pixels changed"
    if cell.axis != "board_reflectivity":
        assert stone_px >= 4, f"{stone_px} of {stone.sum()} stone pixels changed"


def _board_view(env: GoPlaceEnv, p: EpisodeParams) -> tuple[bool, bool, float]:
    """(all four board corners in the picture, board mask touches the border, visible fraction)."""
    env.reset(seed=SEED, options={"params": p})
    mask = env.masks("agentview")["board"]
    uv = env.project("agentview", board_corners_world(env.scene, p.scene))
    if np.isnan(uv).any():
        return False, True, 0.0
    poly = Image.new("L", (mask.shape[1], mask.shape[0]), 0)
    ImageDraw.Draw(poly).polygon([tuple(x) for x in uv.tolist()], fill=1)
    border = bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())
    return True, border, float(mask.sum() / max(1, np.asarray(poly).sum()))


VIEW_AXES = ("camera_fov", "camera_azimuth", "camera_elevation", "camera_distance", "board_position", "board_yaw",
             "board_size")
VIEW_CELLS = {c.id: c for name in ("study", "ablation", "randomized") for c in load_grid(name).cells()
              if c.axis in VIEW_AXES}


@pytest.mark.parametrize("cell_id", sorted(VIEW_CELLS))
def test_camera_levels_keep_the_board_in_view(cell_id: str) -> None:
    env = GoPlaceEnv(SimConfig(image_height=96, image_width=96), masks=True)
    try:
        corners_in, border, visible = _board_view(env, VIEW_CELLS[cell_id].params)
    finally:
        env.close()
    assert corners_in, "a board corner is outside the agentview picture"
    assert not border, "the board touches the picture's edge"
    # The arm hides none of the board at reset (tests/test_view.py); the stones on it cover some of its pixels.
    assert visible >= 0.5, f"only {visible:.0%} of the board is visible"


def test_same_seed_index_grid_gives_same_pixels() -> None:
    g = load_grid("randomized")
    cfg = SimConfig(image_height=SIZE, image_width=SIZE)
    runs = []
    for _ in range(2):
        env = GoPlaceEnv(cfg)
        frames = []
        try:
            for k in (0, 1, 7):
                cell, p = g.episode_params(11, k)
                seed = episode_seed(11, k, 0)
                obs, info = env.reset(seed=seed, options={"params": p})
                ex = PickPlaceExpert(control_hz=cfg.control_hz)
                ex.reset(info, np.random.default_rng(seed))
                frames += [obs["agentview"], obs["wrist"], info["instruction"]]
                for _ in range(5):
                    obs, *_, info = env.step(ex.act(obs, info))
                    frames += [obs["agentview"], obs["wrist"]]
        finally:
            env.close()
        runs.append(frames)
    assert len(runs[0]) == len(runs[1])
    for a, b in zip(*runs):
        assert (a == b) if isinstance(a, str) else np.array_equal(a, b)


def test_jpeg_artefact_frames_are_stored_as_the_seen_file() -> None:
    """With jpeg_quality set, the env exposes the JPEG file of each frame; generation stores it, and
    the store's decoder returns exactly the pixels the policy saw (no second compression)."""
    from bomb_data.config import BombConfig
    from bomb_data.params import ImageParams
    from bomb_data.rollout import rollout_expert
    from bomb_data.store.images import decode_jpeg

    cfg = BombConfig(sim=SimConfig(image_height=SIZE, image_width=SIZE))
    p = EpisodeParams(image=ImageParams(jpeg_quality=30, noise_std=0.02))
    env = GoPlaceEnv(cfg)
    try:
        obs, _ = env.reset(seed=SEED, options={"params": p})
        for cam in ("agentview", "wrist"):
            file = env.frame_jpeg(cam, obs[cam])
            assert file is not None and np.array_equal(decode_jpeg(file), obs[cam])
            assert env.frame_jpeg(cam, obs[cam].copy()) is None  # only the frame it belongs to
        rec, summ = rollout_expert(env, cfg, p, SEED)
        first = {cam: rec.jpeg[cam][0] for cam in ("agentview", "wrist")}
        obs, _ = env.reset(seed=SEED, options={"params": p})
        for cam in ("agentview", "wrist"):
            assert first[cam] == env.frame_jpeg(cam, obs[cam])
            assert np.array_equal(decode_jpeg(first[cam]), obs[cam])
        obs, _ = env.reset(seed=SEED, options={"params": EpisodeParams()})
        assert env.frame_jpeg("agentview", obs["agentview"]) is None
    finally:
        env.close()
