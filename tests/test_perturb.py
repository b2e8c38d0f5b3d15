"""Perturbation system without the simulator: axes, grids, image ops, instructions (issue 5)."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bomb_data.errors import ConfigError
from bomb_data.params import EpisodeParams, ImageParams, LanguageParams
from bomb_data.perturb.axes import AXES, get_axis
from bomb_data.perturb.grid import GRIDS_DIR, changes, grid_from_dict, list_grids, load_grid
from bomb_data.perturb.image import apply_image_params
from bomb_data.perturb.language import (
    GO_LETTERS,
    go_coordinate,
    infer_convention,
    load_templates,
    parse_target,
    write_instruction,
)
from bomb_data.sequence.params import SequenceParams

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ("nominal", "study", "ablation", "randomized")


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


# ------------------------------------------------------------------------------------------- axes
def test_axes_cover_the_issue_and_set_disjoint_fields() -> None:
    fields = [f for a in AXES.values() for f in a.fields]
    assert len(fields) == len(set(fields)), "two axes set the same field"
    # Every EpisodeParams field is reachable by some axis.
    all_fields = {f"{s}.{k}" for s in ("scene", "image", "language")
                  for k in type(getattr(EpisodeParams(), s)).model_fields}
    # and every sequence field but its board size (a sequence grid varies board_size with the scene's axis)
    all_fields |= {f"sequence.{k}" for k in SequenceParams.model_fields if k != "board_size"}
    assert all_fields == set(fields)
    study = {a.name for a in AXES.values() if a.study}
    assert {"table_color", "table_texture", "board_reflectivity", "stone_reflectivity", "n_board_stones",
            "stone_layout", "active_stone_position", "color_balance", "brightness", "camera_fov", "camera_azimuth",
            "camera_elevation", "camera_distance"} == study


@pytest.mark.parametrize("name", list(AXES))
def test_axis_nominal_changes_nothing_and_every_preset_is_valid(name: str) -> None:
    axis = AXES[name]
    task = {"task": "sequence"} if axis.kind == "sequence" else {}  # sequence axes: sequence grids only
    nominal = EpisodeParams(sequence=SequenceParams()) if task else EpisodeParams()
    g = grid_from_dict({**task, "mode": "one-at-a-time", "axes": {name: {"levels": ["nominal"]}}})
    assert [c.id for c in g.cells()] == ["nominal"]
    assert g.cells()[0].params == nominal
    for level in axis.presets:
        value = axis.raw_value(level)
        if level == "nominal":
            assert axis.is_nominal(value)
    non_nominal = [lv for lv in [*axis.presets, *axis.choices] if not axis.is_nominal(axis.raw_value(lv))]
    if name == "sequence_source":  # its levels are SGF paths besides its one preset
        non_nominal = ["9x9"]
    assert non_nominal, f"{name} has no non-nominal level"
    g = grid_from_dict({**task, "mode": "one-at-a-time", "axes": {name: {"levels": non_nominal}}})
    for cell in g.cells()[1:]:
        ch = changes(cell.params)
        assert ch and set(ch) <= set(axis.fields), (cell.id, ch)
        section = axis.fields[0].split(".")[0]
        assert section == axis.kind or (axis.kind == "scene" and section == "scene")


def test_reflectivity_level_sets_three_fields_together() -> None:
    g = grid_from_dict({"mode": "one-at-a-time", "axes": {"board_reflectivity": {"levels": ["high", 0.4]}}})
    high, num = g.cells()[1].params.scene, g.cells()[2].params.scene
    assert (high.board_specular, high.board_shininess, high.board_reflectance) == (0.9, 0.9, 0.3)
    assert (num.board_specular, num.board_shininess, num.board_reflectance) == (0.4, 0.4, 0.2)
    assert g.cells()[2].id == "board_reflectivity=0.4"


def test_named_raw_level_and_vector_ids() -> None:
    g = grid_from_dict({"mode": "one-at-a-time", "axes": {"table_color": {
        "levels": [[0.2, 0.6, 0.2], {"name": "olive", "value": [0.4, 0.4, 0.1]}], "heldout": ["olive"]}}})
    ids = [c.id for c in g.cells()]
    assert ids == ["nominal", "table_color=0.2/0.6/0.2", "table_color=olive"]
    assert g.cells()[2].params.scene.table_rgb == (0.4, 0.4, 0.1)
    assert [c.heldout for c in g.cells()] == [False, False, True]


# ----------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("data, needle", [
    ({"mode": "one-at-a-time", "axes": {"table_colour": {"levels": ["red"]}}}, "unknown axis 'table_colour'"),
    ({"mode": "one-at-a-time", "axes": {"camera_fov": {"levels": [90]}}}, "camera_fov.levels[0]"),
    ({"mode": "one-at-a-time", "axes": {"camera_fov": {"levels": ["huge"]}}}, "given 'huge'"),
    ({"mode": "one-at-a-time", "axes": {"table_color": {"levels": [[0.1, 2.0, 0.1]]}}}, "table_color.levels[0]"),
    ({"mode": "one-at-a-time", "axes": {"n_board_stones": {"levels": [2.5]}}}, "an integer"),
    ({"mode": "one-at-a-time", "axes": {"table_texture": {"levels": ["marble"]}}}, "one of"),
    ({"mode": "one-at-a-time", "axes": {"camera_fov": {"levels": [30]}}, "colour": 1}, "colour: unknown key"),
    ({"mode": "sideways"}, "mode"),
    ({"mode": "one-at-a-time", "axes": {"camera_fov": {"levels": [30], "heldout": [40]}}}, "heldout"),
    ({"mode": "one-at-a-time", "axes": {"camera_fov": {"levels": [30, 30]}}}, "distinct"),
    ({"mode": "nominal", "axes": {"camera_fov": {"levels": [30]}}}, "mode nominal"),
    ({"mode": "random", "axes": {"camera_fov": {"levels": [30], "heldout": [30]}}}, "training level"),
    ({"mode": "random", "heldout_rate": 0.2, "axes": {"camera_fov": {"levels": [30]}}}, "heldout_rate"),
    ({"mode": "one-at-a-time", "axes": {"n_board_stones": {"levels": [9]}, "board_size": {"levels": [3]}}}, None),
    ({"mode": "full", "axes": {"n_board_stones": {"levels": [9]}, "board_size": {"levels": [3]}}},
     "at most 6 on a 3x3 board (sim.min_empty_points = 3"),
    ({"mode": "random", "axes": {"n_board_stones": {"levels": [3, 7]}, "board_size": {"levels": [3, 5]}}},
     "at most 6"),
])
def test_bad_grids_fail_with_one_clear_line(data: dict, needle: str | None) -> None:
    if needle is None:  # valid: one at a time never combines the two axes
        grid_from_dict(data)
        return
    with pytest.raises(ConfigError) as exc:
        grid_from_dict(data, name="bad")
    msg = one_line(exc)
    assert needle in msg and "grid bad" in msg, msg


def test_full_factorial_past_the_cap_fails_clearly() -> None:
    axes = {"camera_fov": {"levels": [25, 30, 35, 40]}, "camera_azimuth": {"levels": [-20, 0, 20]},
            "brightness": {"levels": [-0.1, 0.0, 0.1]}}
    g = grid_from_dict({"mode": "full", "max_cells": 36, "axes": axes})
    assert len(g.cells()) == 36
    with pytest.raises(ConfigError) as exc:
        grid_from_dict({"mode": "full", "max_cells": 35, "axes": axes}, name="big")
    msg = one_line(exc)
    assert "36 cells" in msg and "at most 35" in msg and "max_cells" in msg


def test_unknown_grid_name_and_bad_yaml(tmp_path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_grid("no_such_grid")
    assert "ablation" in one_line(exc)
    p = tmp_path / "g.yaml"
    p.write_text("mode: [unclosed\n")
    with pytest.raises(ConfigError) as exc:
        load_grid(p)
    assert "not valid YAML" in one_line(exc)
    p.write_text("mode: one-at-a-time\naxes:\n  n_board_stones:\n    levels: &l [1, *l]\n")
    with pytest.raises(ConfigError) as exc:
        load_grid(p)
    assert "alias is used inside its own anchor" in one_line(exc)
    p.write_text("mode: one-at-a-time\nmax_cells: '10'\naxes: {}\n")
    with pytest.raises(ConfigError) as exc:
        load_grid(p)
    assert "max_cells: Input should be a valid integer" in one_line(exc)


def test_cli_reports_bad_grid_in_one_line(tmp_path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("mode: one-at-a-time\naxes:\n  camera_fov:\n    levels: [150]\n")
    proc = subprocess.run([sys.executable, "-c", "from bomb_data.perturb.cli import grid; grid()", "show", str(p)],
                          capture_output=True, text=True, cwd=str(REPO))
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "camera_fov.levels[0]" in lines[0] and "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------------------ modes
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_grids_load(name: str) -> None:
    assert name in list_grids()
    g = load_grid(name)
    assert g.cells()[0].id == "nominal" and g.cells()[0].params == EpisodeParams()
    assert len({c.id for c in g.cells()}) == len(g.cells())
    assert len({c for c in g.cells()}) == len(g.cells())  # cells are hashable and distinct
    assert load_grid(GRIDS_DIR / f"{name}.yaml").hash == g.hash


def test_one_at_a_time_covers_each_level_once_with_others_nominal() -> None:
    g = load_grid("ablation")
    assert set(g.levels) == {a for a, ax in AXES.items() if ax.kind != "sequence"}, \
        "ablation must cover every axis of the single task"
    cells = g.cells()
    expected = {(a, lv.id) for a, lvs in g.levels.items() for lv in lvs if not lv.nominal}
    got = [(c.axis, c.level) for c in cells[1:]]
    assert len(got) == len(set(got)) and set(got) == expected
    for c in cells[1:]:
        assert set(changes(c.params)) <= set(get_axis(c.axis).fields)
        assert c.id == f"{c.axis}={c.level}"


def test_study_uses_the_study_axes() -> None:
    g = load_grid("study")
    assert set(g.levels) == {a.name for a in AXES.values() if a.study}


def test_full_mode_is_the_product() -> None:
    g = grid_from_dict({"mode": "full", "axes": {"camera_fov": {"levels": ["nominal", 45]},
                                                 "table_color": {"levels": ["nominal", "red", "blue"]}}})
    ids = [c.id for c in g.cells()]
    assert ids == ["nominal", "table_color=red", "table_color=blue", "camera_fov=45", "camera_fov=45,table_color=red",
                   "camera_fov=45,table_color=blue"]
    assert g.cells()[4].params.scene.camera_fovy_deg == 45 and g.cells()[4].params.scene.table_rgb[0] == 0.7


@pytest.mark.parametrize("name", SHIPPED)
def test_episode_params_are_deterministic(name: str) -> None:
    g1, g2 = load_grid(name), load_grid(name)
    for k in range(30):
        assert g1.episode_params(7, k) == g2.episode_params(7, k)
    if g1.mode != "random":
        n = len(g1.cells())
        assert all(g1.episode_params(0, k)[0] is g1.cells()[k % n] for k in range(2 * n))


def test_random_mode_samples_every_axis_and_respects_heldout() -> None:
    g = load_grid("randomized")
    held = {(a, lv.id) for a, lvs in g.levels.items() for lv in lvs if lv.heldout}
    assert held
    n, n_held, seen = 600, 0, set()
    for k in range(n):
        cell, p = g.episode_params(0, k)
        assert cell.params is p
        used = set(cell.levels) & held
        assert cell.heldout == bool(used)
        assert len(used) <= 1
        n_held += cell.heldout
        seen |= set(cell.levels)
    assert 0.05 < n_held / n < 0.16  # heldout_rate 0.1
    non_nominal = {(a, lv.id) for a, lvs in g.levels.items() for lv in lvs if not lv.nominal}
    assert len(seen) > 0.9 * len(non_nominal)
    # Different seeds give different episodes; the same seed the same.
    assert [g.episode_params(1, k)[0].id for k in range(20)] != [g.episode_params(2, k)[0].id for k in range(20)]


def test_hash_depends_on_content_only() -> None:
    a = grid_from_dict({"mode": "random", "axes": {"camera_fov": {"levels": [30, 40]}}}, name="a")
    b = grid_from_dict({"mode": "random", "description": "x", "axes": {"camera_fov": {"levels": [30, 40]}}}, name="b")
    c = grid_from_dict({"mode": "random", "axes": {"camera_fov": {"levels": [30, 41]}}}, name="a")
    assert a.hash == b.hash != c.hash
    assert [a.episode_params(0, k) for k in range(10)] == [b.episode_params(0, k) for k in range(10)]


def test_grid_pickles() -> None:
    import pickle

    g = load_grid("randomized")
    h = pickle.loads(pickle.dumps(g))
    assert h.hash == g.hash and h.episode_params(3, 5) == g.episode_params(3, 5)


def test_show_json_lists_cells() -> None:
    d = load_grid("study").describe()
    assert d["cells"][0] == {"id": "nominal", "heldout": False, "changes": {}}
    assert all(c["changes"] for c in d["cells"][1:])


# ----------------------------------------------------------------------------------------- images
def _picture(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:64, 0:64]
    base = np.stack([x * 3, y * 3, (x + y) * 2], -1).astype(np.float64) + 20
    base[20:40, 20:40] = 200  # an edge for blur to soften
    return np.clip(base + rng.integers(0, 5, base.shape), 0, 255).astype(np.uint8)


def test_nominal_image_params_are_the_identity() -> None:
    img = _picture()
    out = apply_image_params(img, ImageParams(), np.random.default_rng(0))
    assert out is img
    out2 = apply_image_params(img, ImageParams(color_gains=(1.0, 1.0, 1.0), brightness=0.0), np.random.default_rng(0))
    assert np.array_equal(out2, img)


def test_each_image_op_changes_pixels_in_the_expected_direction() -> None:
    img = _picture()
    f = img.astype(float)
    r = lambda: np.random.default_rng(0)  # noqa: E731
    warm = apply_image_params(img, ImageParams(color_gains=(1.2, 1.0, 0.8)), r()).astype(float)
    assert warm[..., 0].mean() > f[..., 0].mean() + 5 and warm[..., 2].mean() < f[..., 2].mean() - 5
    assert abs(warm[..., 1].mean() - f[..., 1].mean()) < 0.6
    bright = apply_image_params(img, ImageParams(brightness=0.1), r()).astype(float)
    assert 20 < (bright - f).mean() < 26
    dark = apply_image_params(img, ImageParams(brightness=-0.1), r()).astype(float)
    assert (dark <= f).all() and (dark < f).mean() > 0.9
    noisy = apply_image_params(img, ImageParams(noise_std=0.05), r()).astype(float)
    assert 9 < (noisy - f)[f.min(-1) > 40].std() < 16 and abs((noisy - f).mean()) < 1
    blurred = apply_image_params(img, ImageParams(blur_sigma_px=1.5), r()).astype(float)
    grad = lambda a: np.abs(np.diff(a, axis=0)).mean() + np.abs(np.diff(a, axis=1)).mean()  # noqa: E731
    assert grad(blurred) < 0.8 * grad(f) and abs(blurred.mean() - f.mean()) < 1.5
    jpeg = apply_image_params(img, ImageParams(jpeg_quality=10), r())
    assert jpeg.shape == img.shape and jpeg.dtype == np.uint8 and not np.array_equal(jpeg, img)
    q90 = apply_image_params(img, ImageParams(jpeg_quality=90), r()).astype(float)
    assert np.abs(q90 - f).mean() < np.abs(jpeg.astype(float) - f).mean()


def test_image_ops_are_deterministic_and_keep_shape() -> None:
    img = _picture()
    p = ImageParams(color_gains=(0.9, 1.1, 1.0), brightness=0.05, noise_std=0.03, blur_sigma_px=0.8, jpeg_quality=50)
    a = apply_image_params(img, p, np.random.default_rng(3))
    b = apply_image_params(img, p, np.random.default_rng(3))
    c = apply_image_params(img, p, np.random.default_rng(4))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.shape == img.shape and a.dtype == np.uint8
    with pytest.raises(ValueError):
        apply_image_params(img.astype(np.float32), p, np.random.default_rng(0))


@pytest.mark.parametrize("sigma", [0.8, 1.5, 2.0])
def test_gaussian_blur_matches_reference_convolution(sigma: float) -> None:
    """OpenCV's 8-bit blur equals a float separable Gaussian (radius ceil(3 sigma), edges
    replicated) to within one level, and keeps an impulse's mass."""
    from bomb_data.perturb.image import _gaussian_blur

    img = _picture(1)
    r = int(np.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    ref = np.pad(img.astype(np.float64), ((r, r), (r, r), (0, 0)), mode="edge")
    ref = sum(k[i] * ref[i : i + img.shape[0]] for i in range(2 * r + 1))
    ref = sum(k[i] * ref[:, i : i + img.shape[1]] for i in range(2 * r + 1))
    out = _gaussian_blur(img, sigma)
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert np.abs(out.astype(np.float64) - ref).max() <= 1.0
    impulse = np.zeros((31, 31, 3), np.uint8)
    impulse[15, 15] = 255
    blurred = _gaussian_blur(impulse, sigma).astype(np.float64)
    assert abs(blurred[..., 0].sum() - 255) < 0.5 * (2 * r + 1) ** 2 and blurred[15, 15, 0] < 255


def test_tone_table_and_noise_are_exact() -> None:
    """Gains and brightness are round(v * g + 255 b) clipped; integer noise has the asked std and
    the same episode seed gives the same noise."""
    from bomb_data.perturb.image import _noise, _tone_table

    img = _picture(2)
    out = apply_image_params(img, ImageParams(color_gains=(1.2, 1.0, 0.7), brightness=-0.05),
                             np.random.default_rng(0)).astype(np.float64)
    want = np.clip(np.floor(img * np.array([1.2, 1.0, 0.7]) - 0.05 * 255 + 0.5), 0, 255)
    assert np.array_equal(out, want)
    assert _tone_table((1.0, 1.0, 1.0), 0.0)[0, :, 0].tolist() == list(range(256))
    n1 = _noise(np.random.default_rng(5), (128, 128, 3), 0.05 * 255)
    n2 = _noise(np.random.default_rng(5), (128, 128, 3), 0.05 * 255)
    assert np.array_equal(n1, n2) and n1.dtype == np.int16
    assert abs(n1.std() - 0.05 * 255) < 0.3 and abs(n1.mean()) < 0.2


# --------------------------------------------------------------------------------------- language
@pytest.mark.parametrize("n", range(3, 20))
def test_instruction_round_trip_all_conventions(n: int) -> None:
    rng = np.random.default_rng(n)
    for conv, tset, distract in itertools.product(("zero_based", "one_based", "go_letters"), ("train", "unseen"),
                                                  (False, True)):
        p = LanguageParams(convention=conv, template_set=tset, distractor_words=distract)
        for _ in range(6):
            row, col = (int(v) for v in rng.integers(0, n, 2))
            color = ("black", "white")[int(rng.integers(2))]
            text, convention = write_instruction(row, col, n, color, p, rng)
            assert convention == conv and color in text
            assert infer_convention(text) == conv, text
            assert parse_target(text, n) == (row, col), text
            assert parse_target(text, n, convention=conv) == (row, col), text


def test_conventions_on_a_known_example() -> None:
    # (2, 3) on 5x5 is the middle row, 4th column from the left: row 2 from the near edge counting from 0
    z, _ = write_instruction(2, 3, 5, "black", LanguageParams(), np.random.default_rng(0))
    assert "row 2 from the near edge" in z and "column 3 from the left edge" in z and "counting from zero" in z
    assert "black stone from the tray" in z or "black stone in the tray" in z
    o = {write_instruction(1, 3, 5, "black", LanguageParams(convention="one_based"), np.random.default_rng(s))[0]
         for s in range(20)}
    assert any("row 4 from the near edge, column 4 from the left edge, counting from one" in x for x in o), o
    assert any("the 4th row from the near edge and the 4th column from the left edge" in x for x in o), o
    # Go letters: A = left column; row numbers count up from the near edge (bottom of the agentview picture).
    assert go_coordinate(0, 0, 5) == "A5" and go_coordinate(4, 0, 5) == "A1" and go_coordinate(2, 3, 5) == "D3"
    assert go_coordinate(0, 8, 9) == "J9" and go_coordinate(18, 18, 19) == "T1" and "I" not in GO_LETTERS
    # one_based and Go name the same point with the same numbers: row 1 column 1 is A1
    one = "put the black stone from the tray on row 1 from the near edge, column 1 from the left edge, counting from 1"
    assert parse_target(one, 5) == parse_target("the black stone from the tray to A1", 5) == (4, 0)


def test_parse_target_refuses_sentences_that_do_not_say_how_they_count() -> None:
    for text in ("place the black stone at row 2, column 3",                      # no edge, no start (0.2.0)
                 "row 2 from the near edge, column 3 from the left edge",          # no start for bare numbers
                 "row 2 from the near edge, column 3, counting from zero",         # column without an edge
                 "row 2 from the near edge, row 1 from the far edge, column 3 from the left edge, counting from one",
                 "row 2 from the near edge, column 3 from the left edge, counting from zero and counting from one"):
        with pytest.raises(ValueError):
            parse_target(text, 5)
    with pytest.raises(ValueError, match="counts from zero"):
        parse_target("row 2 from the near edge, column 3 from the left edge, counting from zero", 5, "one_based")
    assert parse_target("row 2 from the far edge, column 0 from the right edge, counting from zero", 5) == (2, 4)


def test_template_sets_and_distractors_differ() -> None:
    t = load_templates()
    assert not set(t.templates.train) & set(t.templates.unseen)
    rng = np.random.default_rng(0)
    plain = {write_instruction(1, 1, 5, "white", LanguageParams(), rng)[0] for _ in range(40)}
    unseen = {write_instruction(1, 1, 5, "white", LanguageParams(template_set="unseen"), rng)[0] for _ in range(40)}
    noisy = [write_instruction(1, 1, 5, "white", LanguageParams(distractor_words=True), rng)[0] for _ in range(40)]
    assert not plain & unseen
    assert all(len(x.split()) > min(len(y.split()) for y in plain) for x in noisy)
    same = [write_instruction(1, 1, 5, "white", LanguageParams(), np.random.default_rng(9))[0] for _ in range(2)]
    assert same[0] == same[1]


def test_write_instruction_rejects_off_board_targets() -> None:
    with pytest.raises(ConfigError):
        write_instruction(5, 0, 5, "black", LanguageParams(), np.random.default_rng(0))
    with pytest.raises(ValueError):
        parse_target("place the black stone from the tray at row 7 from the near edge, column 1 from the left "
                     "edge, counting from one", 5)


def test_perturb_does_not_import_mujoco() -> None:
    code = ("import sys; import bomb_data.perturb, bomb_data.perturb.cli, bomb_data.perturb.grid; "
            "bomb_data.perturb.load_grid('ablation').cells(); print('mujoco' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO))
    assert out.stdout.strip() == "False", out.stderr
