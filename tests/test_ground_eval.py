"""Ground truth of evaluation episodes (issue 26): eval records every frame's simulator state, and
``bomb-data masks EVAL_DIR`` / ``bomb-data ground --against EVAL_DIR`` restore them as for a store.

Real runs: the expert evaluated on 2 episodes at 32 px; the same episodes regenerated into a store
with generation's own rollout (the eval rows' seeds and parameters) give the same masks frame by frame.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO

SIZE = 32
EVAL = ["eval", "--policy", "expert", "--grid", "nominal", "--episodes-per-cell", "2", "--image-size", str(SIZE),
        "--workers", "1", "--videos-per-cell", "0", "-q"]


def cli(*args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "BOMB_FAULT"}
    if fault:
        env["BOMB_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "bomb_data.cli", *args], capture_output=True, text=True,
                          timeout=600, cwd=str(REPO), env=env)


def one_line_error(p: subprocess.CompletedProcess[str], text: str) -> None:
    err = p.stderr.strip()
    assert p.returncode == 2 and len(err.splitlines()) == 1 and text in err and "Traceback" not in err, err


def rows_of(d: Path) -> list[dict]:
    return [json.loads(ln) for ln in (d / "results.jsonl").read_text().splitlines() if ln.strip()]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ground_eval") / "run"
    p = cli(*EVAL, "--out", str(d))
    assert p.returncode == 0, p.stderr
    return d


def regenerate_into_store(eval_dir: Path, out: Path) -> None:
    """The eval's episodes made again by generation's expert rollout (same seed, parameters) into a store."""
    from bomb_data.config import load_config
    from bomb_data.env import GoPlaceEnv
    from bomb_data.params import EpisodeParams
    from bomb_data.rollout import rollout_expert
    from bomb_data.store import StoreWriter
    from tests._stores import make_store

    template = make_store(out.parent / "template", n=1, H=SIZE, W=SIZE, grid="nominal")
    cfg = load_config(overrides={"sim": {"image_height": SIZE, "image_width": SIZE}})
    w = StoreWriter.open(out, dict(template.description), mode="create")
    env = GoPlaceEnv(cfg)
    try:
        for i, r in enumerate(rows_of(eval_dir)):
            rec, _ = rollout_expert(env, cfg, EpisodeParams.model_validate(r["params"]), int(r["seed"]), 90)
            rec.meta.update(episode_index=i, attempt=0, cell_id=r["cell_id"], split="train")
            w.append(rec)
    finally:
        env.close()
        w.close()


def test_eval_records_checksummed_states_cheaply(run):
    from bomb_data.evaluate.states import read_states

    rows = rows_of(run)
    assert len(rows) == 2
    for r in rows:
        st = r["states"]
        assert st["file"] == f"states/nominal/ep{r['j']:03d}.npz" and (run / st["file"]).is_file()
        assert st["frames"] == r["steps"] + 1  # every frame the policy saw, and the final one
        a = read_states(run, r)
        assert a["mj_state"].dtype == np.float64 and a["mj_state"].shape == (st["frames"], st["width"])
        assert np.isfinite(a["mj_state"]).all()
        # cheap: recording costs a small fraction of an environment step (timings disturbed by other jobs)
        assert r["states_ms_per_step"] < 0.25 * r["env_ms_per_step"], (r["states_ms_per_step"], r["env_ms_per_step"])
    assert not list(run.rglob("*.tmp-*"))


def test_eval_masks_equal_the_regenerated_store_masks(run, tmp_path):
    store = tmp_path / "store"
    regenerate_into_store(run, store)
    p = cli("masks", str(run), "--out", str(tmp_path / "eval.npz"))
    assert p.returncode == 0, p.stderr
    p = cli("masks", str(store), "--out", str(tmp_path / "store.npz"))
    assert p.returncode == 0, p.stderr
    from bomb_data.ground.truth import read_masks
    from bomb_data.store import EpisodeStore

    ie, ze = read_masks(tmp_path / "eval.npz")
    is_, zs = read_masks(tmp_path / "store.npz")
    assert ie["source"] == "eval" and is_["source"] == "store"
    s = EpisodeStore(store)
    rows = rows_of(run)
    compared = 0
    for i, r in enumerate(rows):
        assert s[i].length == r["steps"]  # the same episode: as many actions
        for t in range(s[i].length):
            for cam in ("agentview", "wrist"):
                fe, fs = ie["frames"][f"{r['episode_id']}/{t}/{cam}"], is_["frames"][f"{i}/{t}/{cam}"]
                assert fe == fs, (r["episode_id"], t, cam)
                for name in fe:
                    for kind in ("visible", "amodal"):
                        ke, ks = f"{r['episode_id']}/{t}/{cam}/{name}/{kind}", f"{i}/{t}/{cam}/{name}/{kind}"
                        assert (ke in ze.files) == (ks in zs.files)
                        if ke in ze.files:
                            assert np.array_equal(ze[ke], zs[ks]), (ke, ks)
                compared += 1
        assert f"{r['episode_id']}/{r['steps']}/agentview" in ie["frames"]  # plus the final frame
    # the moving objects move: the active stone's box is not the same in every frame
    boxes = {json.dumps(ie["frames"][f"{rows[0]['episode_id']}/{t}/agentview"]["active_stone"]["box_amodal"])
             for t in range(rows[0]["steps"] + 1)}
    assert compared > 100 and len(boxes) > 5


def test_ground_against_eval_scores_moving_objects(run, tmp_path):
    r = rows_of(run)[0]
    maps = {}
    for t in (0, r["steps"] // 2, r["steps"]):
        for cam in ("agentview", "wrist"):
            maps[f"{r['episode_id']}/{t}/{cam}"] = np.ones((SIZE, SIZE), np.float32)
    np.savez(tmp_path / "maps.npz", **maps)
    p = cli("ground", str(tmp_path / "maps.npz"), "--against", str(run), "--out", str(tmp_path / "g"))
    assert p.returncode == 0, p.stderr
    frames = [json.loads(ln) for ln in (tmp_path / "g" / "frames.jsonl").read_text().splitlines()]
    assert len(frames) == 6 * 3 and all(f["state"] == "store" and f["scores"] is not None for f in frames)
    assert {f["phase"] for f in frames} <= {"approach", "grasp", "transport", "release"}


def test_damaged_or_missing_states_are_one_error_line(run, tmp_path):
    import shutil

    d = tmp_path / "run"
    shutil.copytree(run, d)
    f = d / rows_of(d)[1]["states"]["file"]
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    one_line_error(cli("masks", str(d), "--out", str(tmp_path / "m.npz")), "checksum")
    assert not (tmp_path / "m.npz").exists()
    np.savez(tmp_path / "maps.npz", **{f"{rows_of(d)[1]['episode_id']}/0/agentview": np.ones((SIZE, SIZE), np.float32)})
    one_line_error(cli("ground", str(tmp_path / "maps.npz"), "--against", str(d), "--out", str(tmp_path / "g")),
                   "checksum")
    f.unlink()
    one_line_error(cli("masks", str(d), "--out", str(tmp_path / "m.npz")), "cannot be read")
    # a states file with a forged target pixel (checksum updated): the restored state contradicts it
    shutil.copytree(run, tmp_path / "run2")
    d2 = tmp_path / "run2"
    rows = rows_of(d2)
    with np.load(d2 / rows[0]["states"]["file"]) as z:
        a = {k: z[k] for k in z.files}
    a["target_px_agentview"][3] += 2.0
    import io

    from bomb_data.store.format import crc32c_hex

    buf = io.BytesIO()
    np.savez(buf, **a)
    (d2 / rows[0]["states"]["file"]).write_bytes(buf.getvalue())
    rows[0]["states"]["crc32c"] = crc32c_hex(buf.getvalue())
    (d2 / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    one_line_error(cli("masks", str(d2), "--out", str(tmp_path / "m2.npz")), "target pixel")


def test_killed_while_writing_states_the_rerun_completes(tmp_path):
    d = tmp_path / "run"
    p = cli(*EVAL, "--out", str(d), fault="eval.states.half@2")  # killed writing the second episode's states
    assert p.returncode != 0
    assert len(rows_of(d)) == 1 and list(d.rglob(".ep001.npz.tmp-*")) and not (d / "states/nominal/ep001.npz").exists()
    p = cli(*EVAL, "--out", str(d), fault="eval.states.written@1")  # killed after the file, before its row
    assert p.returncode != 0 and len(rows_of(d)) == 1 and (d / "states/nominal/ep001.npz").exists()
    p = cli(*EVAL, "--out", str(d))
    assert p.returncode == 0, p.stderr
    assert len(rows_of(d)) == 2 and not list(d.rglob("*.tmp-*"))
    p = cli("masks", str(d), "--out", str(tmp_path / "m.npz"), "--every", "20", "--no-amodal")
    assert p.returncode == 0, p.stderr


def test_long_cell_ids_get_bounded_file_names(tmp_path: Path):
    """A randomized grid's cell names every axis (over 255 characters): replaying such a store records
    each episode's states and video under a name the filesystem takes (it used to fail with ENAMETOOLONG),
    and two distinct long names stay distinct."""
    from bomb_data.evaluate.video import MAX_NAME, safe_name
    from tests._stores import make_store

    store = make_store(tmp_path / "store", n=1, H=SIZE, W=SIZE, grid="randomized").root
    d = tmp_path / "replay"
    p = cli("eval", "--policy", f"replay:{store}", "--workers", "1", "-q", "--out", str(d))
    assert p.returncode == 0, p.stderr
    (row,) = rows_of(d)
    assert len(row["cell_id"]) > 255
    for rel in (row["states"]["file"], row["video"]):
        f = d / rel
        assert f.is_file() and len(f.parent.name) <= MAX_NAME, rel
    a, b = "x" * 300 + "a", "x" * 300 + "b"
    assert safe_name(a) != safe_name(b) and max(len(safe_name(a)), len(safe_name(b))) <= MAX_NAME
    assert safe_name("nominal") == "nominal" and safe_name("a b/c") == "a_b_c"


def test_masks_restore_an_eval_with_its_own_config(tmp_path: Path):
    # eval with another --config (a board of 4 cm spacing, not 5): masks restore its scene from run.json
    cfg = tmp_path / "small_board.yaml"
    cfg.write_text("sim:\n  max_spacing_m: 0.04\n")
    d = tmp_path / "run"
    p = cli(*EVAL, "--episodes-per-cell", "1", "--config", str(cfg), "--out", str(d))
    assert p.returncode == 0, p.stderr
    meta = json.loads((d / "run.json").read_text())
    assert meta["config"]["sim"]["max_spacing_m"] == 0.04
    p = cli("masks", str(d), "--out", str(tmp_path / "m.npz"))
    assert p.returncode == 0, p.stderr
    from bomb_data.ground.truth import read_masks

    index, _ = read_masks(tmp_path / "m.npz")
    assert len(index["frames"]) == 2 * (rows_of(d)[0]["steps"] + 1)
    # a run.json of an older version (hash only) restores the default board: the reset check refuses it
    older = {k: v for k, v in meta.items() if k != "config"}
    (d / "run.json").write_text(json.dumps(older))
    one_line_error(cli("masks", str(d), "--out", str(tmp_path / "old.npz")), "recorded first state")
    # an edited config no longer matches the run's hash: one line, nothing written
    meta["config"]["sim"]["max_spacing_m"] = 0.03
    (d / "run.json").write_text(json.dumps(meta))
    one_line_error(cli("masks", str(d), "--out", str(tmp_path / "edited.npz")), "config_hash")
    assert not (tmp_path / "old.npz").exists() and not (tmp_path / "edited.npz").exists()
