"""Probing sets: determinism, balance, splits by scene, labels against geometry, and the scorer."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from bomb_data.ground.probe import make_probe_set, score_probe_set

N, SIZE = 6, 96


@pytest.fixture(scope="module")
def probe_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("probe") / "set"
    make_probe_set("randomized", N, out, seed=3, size=SIZE)
    return out


def _items(d: Path) -> list[dict]:
    return [json.loads(x) for x in (d / "items.jsonl").read_text().splitlines()]


def test_same_seed_same_bytes_balanced_and_split_by_scene(probe_set, tmp_path):
    again = tmp_path / "again"
    make_probe_set("randomized", N, again, seed=3, size=SIZE)
    files = sorted(p.relative_to(probe_set) for p in probe_set.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for f in files:
        assert (probe_set / f).read_bytes() == (again / f).read_bytes(), f
    items = _items(probe_set)
    assert {it["type"] for it in items} == {"rcm_implicit", "rcm_explicit", "relation", "point"}
    for t in ("rcm_implicit", "relation"):
        labels = [it["label"] for it in items if it["type"] == t]
        assert abs(sum(labels) / len(labels) - 0.5) <= 0.01, t
    split_of_seed: dict[int, set[str]] = {}
    for it in items:
        split_of_seed.setdefault(it["scene_seed"], set()).add(it["split"])
    assert len(split_of_seed) == N and all(len(s) == 1 for s in split_of_seed.values())
    assert len({it["id"] for it in items}) == len(items)


def test_labels_agree_with_geometry_computed_apart(probe_set):
    """Stone positions come from the board coordinate in the question text, projected here."""
    from bomb_data.config import load_config
    from bomb_data.env import GoPlaceEnv
    from bomb_data.perturb.grid import load_grid
    from bomb_data.sim.scene import intersection_world

    items = _items(probe_set)
    names = json.loads((probe_set / "meta.json").read_text())["region_names"]
    env = GoPlaceEnv(load_config(overrides={"sim": {"image_height": SIZE, "image_width": SIZE}}))
    grid = load_grid("randomized")
    checked = {"rcm_implicit": 0, "rcm_explicit": 0, "relation": 0, "point": 0}
    try:
        for i in range(N):
            scene = f"s{i:06d}"
            its = [it for it in items if it["scene"] == scene]
            _, params = grid.episode_params(3, i)
            _, info = env.reset(seed=its[0]["scene_seed"], options={"params": params})
            ps = env.params.scene
            half = info["privileged"]["stone_thickness"] / 2

            def stone_uv(text: str, ps=ps, half=half) -> tuple[float, float]:
                r, c = (int(x) - 1 for x in re.search(r"row (\d+), column (\d+)", text).groups())
                uv = env.project("agentview", intersection_world(env.scene, ps, r, c) + [0, 0, half])
                return float(uv[0]), float(uv[1])

            def region(u: float, v: float) -> int:
                return int(v // (SIZE / 3)) * 3 + int(u // (SIZE / 3))

            for it in its:
                q = it["question"]
                stones = re.findall(r"the (?:black|white) stone at row \d+, column \d+", q, flags=re.I)
                if it["type"] == "rcm_implicit" and len(stones) == 1:
                    named = next(k for k, n in sorted(enumerate(names), key=lambda x: -len(x[1]))
                                 if f"the {n} region" in q)
                    assert it["label"] == (region(*stone_uv(stones[0])) == named), q
                    checked["rcm_implicit"] += 1
                elif it["type"] == "rcm_explicit" and len(stones) == 1:
                    assert it["label"] == region(*stone_uv(stones[0])), q
                    checked["rcm_explicit"] += 1
                elif it["type"] == "relation" and len(stones) == 2:
                    (ua, va), (ub, vb) = stone_uv(stones[0]), stone_uv(stones[1])
                    rel = it["relation"]
                    truth = {"left of": ua < ub, "right of": ua > ub, "above": va < vb, "below": va > vb}[rel]
                    assert it["label"] == truth, q
                    checked["relation"] += 1
                elif it["type"] == "point" and it["object"] == "target":
                    uv = env.project("agentview", intersection_world(env.scene, ps, *info["target"]))
                    assert math.dist(uv, it["label"]) < 0.01
                    checked["point"] += 1
    finally:
        env.close()
    assert all(v > 0 for v in checked.values()), checked


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _oracle(it: dict, names: list[str], style: str = "pixels") -> str:
    if it["type"] in ("rcm_implicit", "relation"):
        return "Yes." if it["label"] else "No, that is false."
    if it["type"] == "rcm_explicit":
        return f"It is in the {names[it['label']]} region."
    u, v = it["label"]
    if style == "molmo":
        return f'<point x="{100 * u / it["width"]:.2f}" y="{100 * v / it["height"]:.2f}" alt="x">x</point>'
    if style == "normalised":
        return f"({u / it['width']:.4f}, {v / it['height']:.4f})"
    return f"({u:.1f}, {v:.1f})"


def test_oracle_scores_all_constant_scores_chance_bad_answers_are_misses(probe_set, tmp_path, run_cli):
    items = _items(probe_set)
    names = json.loads((probe_set / "meta.json").read_text())["region_names"]
    for style in ("pixels", "molmo", "normalised"):
        p = _write(tmp_path / f"oracle_{style}.jsonl", [{"id": it["id"], "answer": _oracle(it, names, style)}
                                                         for it in items])
        s = score_probe_set(probe_set, p)
        assert s["all"]["accuracy"] == 1.0, (style, s["all"])
        assert s["per_type"]["point"]["all"]["mean_distance_px"] < 0.1
    s = score_probe_set(probe_set, _write(tmp_path / "true.jsonl", [{"id": it["id"], "answer": "true"}
                                                                     for it in items]))
    assert s["per_type"]["rcm_implicit"]["all"]["accuracy"] == pytest.approx(0.5, abs=0.01)
    assert s["per_type"]["relation"]["all"]["accuracy"] == pytest.approx(0.5, abs=0.01)
    assert s["per_type"]["point"]["all"]["misses_by_reason"] == {"unparsed": s["per_type"]["point"]["all"]["n"]}
    # bad answers: no point, a point outside the image, nothing at all — misses with reasons, no crash
    pts = [it for it in items if it["type"] == "point"]
    assert len(pts) >= 3
    rows = [{"id": pts[0]["id"], "answer": "I cannot see it"}, {"id": pts[1]["id"], "answer": "(5000, 12)"},
            {"id": "nonexistent", "answer": "true"}]
    s = score_probe_set(probe_set, _write(tmp_path / "bad.jsonl", rows))
    reasons = s["per_type"]["point"]["all"]["misses_by_reason"]
    assert reasons["unparsed"] == 1 and reasons["out_of_image"] == 1 and reasons["no_prediction"] == len(pts) - 2
    assert s["unknown_prediction_ids"] == 1
    scored = json.loads(Path(str(tmp_path / "bad.jsonl") + ".score.json").read_text())
    assert len(scored["items"]) == len(items)
    page = Path(s["html"]).read_text()
    assert page.count("<figure>") == 24 and "out_of_image" in page and "data:image/png;base64," in page
    # the CLI: a garbled predictions line and a non-empty --out are one-line errors
    (tmp_path / "garbled.jsonl").write_text('{"id": 1, "answer": "true"}\nnot json\n')
    p = run_cli("probe", "score", str(probe_set), str(tmp_path / "garbled.jsonl"))
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [p.stderr.strip()] and ":2:" in p.stderr
    p = run_cli("probe", "make", "--n", "1", "--out", str(probe_set), "--size", "64")
    assert p.returncode == 2 and "not empty" in p.stderr and "Traceback" not in p.stderr
    assert np.array_equal(sorted(x["id"] for x in _items(probe_set)), sorted(x["id"] for x in items))


def test_loads_with_hugging_face_datasets(probe_set):
    """The real ``datasets`` loader (lerobot30 side environment) reads every item with its image."""
    from tests.conftest import REPO, run_side

    proc = run_side("lerobot30", REPO / "tests" / "compat" / "check_probe_datasets.py", str(probe_set))
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["rows"] == len(_items(probe_set))


def test_killed_make_leaves_no_set_and_a_rerun_is_identical(probe_set, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import REPO

    out = tmp_path / "killed"
    args = [sys.executable, "-m", "bomb_data.cli", "probe", "make", "--grid", "randomized", "--n", str(N),
            "--seed", "3", "--size", str(SIZE), "--out", str(out)]
    proc = subprocess.Popen(args, cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob(".killed.tmp-*/images/s000001.png")):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()  # half a set is never visible under --out
    assert list(tmp_path.glob(".killed.tmp-*"))
    subprocess.run(args, cwd=str(REPO), check=True, capture_output=True)
    assert not list(tmp_path.glob(".killed.tmp-*"))  # the dead run's leftovers are removed
    assert (out / "items.jsonl").read_bytes() == (probe_set / "items.jsonl").read_bytes()
