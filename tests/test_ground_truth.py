"""Ground truth recomputed from a store's recorded states, ``bomb-data masks`` and ``bomb-data ground``."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from bomb_data.ground.score import episode_phases
from bomb_data.ground.truth import read_masks, store_truth
from bomb_data.store import EpisodeStore
from bomb_data.store.format import CHECKSUM_KEY, meta_checksum

MOVING = ("active_stone", "fingers")


def _errors_in_one_line(proc) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr


def test_truth_agrees_with_the_recording(tiny_store):
    store = EpisodeStore(tiny_store)
    ep = store[0]
    steps = [0, ep.length // 2, ep.length - 1]
    images = ep.images("agentview")
    lum: dict[str, list[float]] = {"black": [], "white": []}
    for _e, t, cam, objs in store_truth(store, [0], steps={0: steps}, cameras=("agentview", "wrist")):
        # the target point recomputed now equals the one recorded at generation (the env computes
        # positions from the state it records, so restoring it reproduces them exactly)
        rec = ep[f"target_px_{cam}"][t]
        got = objs["target"].point
        if np.isnan(rec).any():
            assert got is None
        else:
            assert got == pytest.approx(tuple(rec.tolist()), abs=1e-3)
        for name, o in objs.items():
            assert o.visible.shape == store.image_shape[:2]
            if name != "target":  # rendered twice: what is seen is part of the whole object
                assert not (o.visible & ~o.amodal).any(), (name, t, cam)
        assert objs["target"].coord == tuple(ep.meta["target"])
        assert objs["active_stone"].color == ep.meta["stone_color"]
        if cam == "agentview":  # the agentview camera frames the board and the tray
            assert objs["board"].amodal.any() and objs["tray"].amodal.any()
        stones = [o for n, o in objs.items() if n.startswith("stone")]
        assert len(stones) == ep.meta["params"]["scene"]["n_board_stones"]
        if t == 0:
            coords = [o.coord for o in stones]
            assert len(set(coords)) == len(coords) and tuple(ep.meta["target"]) not in coords
        if cam == "agentview":
            # colour named by the ground truth vs the stored picture: black stones are darker
            for o in stones:
                if o.visible.sum() >= 4:
                    lum[o.color].append(float(images[t][o.visible].mean()))
            # the recorded stone centre projects into the active stone's silhouette
            from bomb_data.ground.metrics import box_distance, mask_box

            box = mask_box(objs["active_stone"].amodal)
            assert box is not None
            u, v = _project(store, ep, t, ep["stone_pos"][t])
            assert box_distance(box, store.image_shape[:2])[int(v), int(u)] <= 1.0
    if lum["black"] and lum["white"]:
        assert max(lum["black"]) < min(lum["white"]), lum


def _project(store, ep, t, point):
    """Pixel of a world point in agentview at step t, from a fresh environment (not the truth code)."""
    from bomb_data.config import BombConfig
    from bomb_data.env import GoPlaceEnv
    from bomb_data.params import EpisodeParams

    env = GoPlaceEnv(BombConfig.model_validate(store.config), render_images=False)
    try:
        env.reset(seed=ep.meta["seed"], options={"params": EpisodeParams.model_validate(ep.meta["params"]),
                                                 "target": tuple(ep.meta["target"])})
        env.set_mj_state(ep.mj_state[t])
        return env.project("agentview", np.asarray(point, float))
    finally:
        env.close()


def test_masks_cli_writes_masks_and_refuses_bad_input(tiny_store, tmp_path, run_cli):
    out = tmp_path / "m.npz"
    run_cli("masks", str(tiny_store), "--out", str(out), "--episodes", "1", "--every", "25", "--cameras",
            "agentview", check=True)
    index, z = read_masks(out)
    n = EpisodeStore(tiny_store)[1].length
    assert sorted(index["frames"]) == sorted(f"1/{t}/agentview" for t in range(0, n, 25))
    for key in z.files:
        if key.endswith("/amodal"):  # written only where it differs from the visible mask
            assert not np.array_equal(z[key], z[key.replace("/amodal", "/visible")])
    d = index["frames"]["1/0/agentview"]
    assert {"target", "active_stone", "fingers", "board", "tray"} <= set(d)
    assert d["target"]["coord"] == EpisodeStore(tiny_store)[1].meta["target"]
    before = out.read_bytes()
    _errors_in_one_line(run_cli("masks", str(tiny_store), "--out", str(out), "--episodes", "99"))
    _errors_in_one_line(run_cli("masks", str(tiny_store), "--out", str(out), "--episodes", "x-y"))
    _errors_in_one_line(run_cli("masks", str(tiny_store), "--out", str(tmp_path / "m.txt")))
    _errors_in_one_line(run_cli("masks", str(tmp_path / "nowhere"), "--out", str(out)))
    assert out.read_bytes() == before
    # an episode whose seed no longer reproduces its recorded first state is refused, not mis-labelled
    bad = tmp_path / "bad"
    shutil.copytree(tiny_store, bad)
    f = bad / "meta" / "episodes.jsonl"
    lines = f.read_text().splitlines()
    m = json.loads(lines[0])
    sums = m.pop(CHECKSUM_KEY)
    m["seed"] += 1
    # a consistent edit (checksum recomputed), so the store opens and only the replay can notice it
    lines[0] = json.dumps({**m, CHECKSUM_KEY: {**sums, "meta": meta_checksum(m)}})
    f.write_text("\n".join(lines) + "\n")
    p = run_cli("masks", str(bad), "--out", str(out), "--episodes", "0")
    _errors_in_one_line(p)
    assert "does not reproduce" in p.stderr and out.read_bytes() == before


def test_ground_cli_scores_oracle_and_wrong_maps(tiny_store, tmp_path, run_cli):
    store = EpisodeStore(tiny_store)
    maps, wrong = {}, {}
    for e, t, cam, objs in store_truth(store, [0, 2], every=15, cameras=("agentview",)):
        maps[f"{e}/{t}/{cam}"] = objs["target"].amodal.astype(np.float32)
        wrong[f"{e}/{t}/{cam}"] = objs["tray"].amodal.astype(np.float32)
    np.savez(tmp_path / "oracle.npz", **maps)
    np.savez(tmp_path / "wrong.npz", **wrong)
    p = run_cli("ground", str(tmp_path / "oracle.npz"), "--against", str(tiny_store), "--objects", "target,tray",
                check=True)
    s = json.loads((tmp_path / "oracle.ground" / "summary.json").read_text())
    t = s["objects"]["target"]["all"]
    assert t["n"] == len(maps) and t["iou_soft"]["mean"] == 1.0 and t["wdp"]["mean"] == 0.0
    assert t["pg_hit"]["rate"] == 1.0 and t["pg_uncertain"]["rate"] == 0.0 and t["episodes"] == 2
    assert s["objects"]["tray"]["all"]["pg_hit"]["rate"] == 0.0
    assert set(s["objects"]["target"]["per_phase"]) <= {"approach", "grasp", "transport", "release"}
    assert sum(a["n"] for a in s["objects"]["target"]["per_phase"].values()) == t["n"]
    assert len((tmp_path / "oracle.ground" / "frames.jsonl").read_text().splitlines()) == 2 * len(maps)
    assert "<table>" in (tmp_path / "oracle.ground" / "ground.html").read_text()
    assert json.loads(p.stdout)["maps_scored"] == len(maps)
    run_cli("ground", str(tmp_path / "wrong.npz"), "--against", str(tiny_store), "--objects", "target", check=True)
    w = json.loads((tmp_path / "wrong.ground" / "summary.json").read_text())["objects"]["target"]["all"]
    assert w["pg_hit"]["rate"] == 0.0 and w["iou_soft"]["mean"] == 0.0 and w["wdp"]["mean"] > 0.1
    # bad input: one line each
    key = next(iter(maps))
    for name, arrays in {"badkey": {"nokey": maps[key]}, "nan": {key: np.full_like(maps[key], np.nan)},
                         "past": {f"0/{10_000}/agentview": maps[key]}, "noep": {"77/0/agentview": maps[key]},
                         "cam": {"0/0/top": maps[key]}, "empty": {}}.items():
        np.savez(tmp_path / f"{name}.npz", **arrays)
        _errors_in_one_line(run_cli("ground", str(tmp_path / f"{name}.npz"), "--against", str(tiny_store)))
    _errors_in_one_line(run_cli("ground", str(tmp_path / "oracle.npz"), "--against", str(tiny_store),
                                "--objects", "moon"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    _errors_in_one_line(run_cli("ground", str(tmp_path / "junk.npz"), "--against", str(tiny_store)))


def test_ground_against_an_eval_dir(tmp_path, run_cli):
    """An evaluation made before eval recorded per-step states (emulated: its rows' ``states`` removed):
    agentview frames score against static objects of the reset scene, moving objects and wrist frames
    are skipped, and a state given in the maps file is used. With the recorded states (as eval writes
    them now) every frame is scored from them (tests/test_ground_eval.py tests those in depth)."""
    from bomb_data.config import load_config
    from bomb_data.evaluate.runner import evaluate
    from bomb_data.ground.truth import TruthRenderer, reset_to_episode

    cfg = load_config(overrides={"sim": {"image_height": 48, "image_width": 48, "max_steps": 30}})
    out = tmp_path / "ev"
    evaluate(cfg, "noop", out, grid="nominal", episodes_per_cell=1, workers=1, videos_per_cell=0)
    row = json.loads((out / "results.jsonl").read_text().splitlines()[0])
    # the target disc of the reset scene, computed here from the row's seed and target
    from bomb_data.env import GoPlaceEnv
    from bomb_data.perturb.grid import load_grid

    params = {c.id: c for c in load_grid("nominal").cells()}[row["cell_id"]].params.model_dump(mode="json")
    env = GoPlaceEnv(cfg, render_images=False)
    reset_to_episode(env, {"seed": row["seed"], "params": params, "target": row["target"]})
    tr = TruthRenderer(env)
    disc = tr.frame("agentview")["target"].amodal.astype(np.float32)
    state = env.mj_state()
    tr.close()
    env.close()
    e = row["episode_id"]
    np.savez(tmp_path / "ev.npz", **{f"{e}/5/agentview": disc, f"{e}/5/wrist": disc, f"{e}/7/agentview": disc,
                                     f"{e}/7/mj_state": state})
    run_cli("ground", str(tmp_path / "ev.npz"), "--against", str(out), "--out", str(tmp_path / "now"), check=True)
    now = [json.loads(x) for x in (tmp_path / "now" / "frames.jsonl").read_text().splitlines()]
    assert {r["state"] for r in now} == {"store"} and all(r["scores"] for r in now)  # the recorded states
    # the same directory as an evaluation made before states were recorded
    old_rows = [{k: v for k, v in json.loads(x).items() if k != "states"}
                for x in (out / "results.jsonl").read_text().splitlines()]
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old_rows))
    shutil.rmtree(out / "states")
    run_cli("ground", str(tmp_path / "ev.npz"), "--against", str(out), check=True)
    s = json.loads((tmp_path / "ev.ground" / "summary.json").read_text())
    assert s["source"] == "eval"
    t = s["objects"]["target"]["all"]
    assert t["n"] == 2 and t["iou_soft"]["mean"] == 1.0 and t["pg_hit"]["rate"] == 1.0
    rows = [json.loads(x) for x in (tmp_path / "ev.ground" / "frames.jsonl").read_text().splitlines()]
    by = {(r["step"], r["camera"], r["object"]): r for r in rows}
    assert by[(5, "agentview", "target")]["state"] == "reset"
    assert by[(5, "agentview", "active_stone")]["skipped"] == "no_state"
    assert by[(5, "wrist", "target")]["skipped"] == "no_state"
    assert by[(7, "agentview", "active_stone")]["state"] == "maps" and by[(7, "agentview", "active_stone")]["scores"]


def test_episode_phases_by_hand():
    g = np.array([-1, -1, 1, 1, 1, 1, -1, -1], float)
    z = np.array([0.0, 0.0, 0.0, 0.005, 0.02, 0.05, 0.03, 0.02])
    assert episode_phases(g, z) == ["approach", "approach", "grasp", "grasp", "transport", "transport",
                                    "release", "release"]
    assert episode_phases(-np.ones(3), np.zeros(3)) == ["approach"] * 3
    assert episode_phases(np.array([-1, 1, 1.0]), np.zeros(3)) == ["approach", "grasp", "grasp"]
    # a stone knocked up before any grasp is not transport
    assert episode_phases(np.array([-1, -1, 1.0]), np.array([0, 0.05, 0.05])) == ["approach", "approach", "transport"]
