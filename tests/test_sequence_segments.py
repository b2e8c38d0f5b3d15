"""``export --segment-subtasks``: a sequence store exported with one episode per subtask, in every format.

The segments come from one reader-level view (``bomb_data.store.segments.SegmentedStore``); these tests
check the view against the store itself (arrays, JPEG bytes, metadata, splits) and each exporter's
output against the parent episodes' slices.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from bomb_data.errors import ExportError, StoreError
from bomb_data.store.reader import EpisodeStore
from bomb_data.store.segments import SegmentedStore, segmented

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MUJOCO_GL": "egl"}
    return subprocess.run([sys.executable, "-m", "bomb_data", *args], capture_output=True, text=True, env=env,
                          timeout=900)


def _segments(store_path: Path) -> list[tuple[int, int, int, int]]:
    """(parent store index, subtask, start, stop) of every segment, from the store's own metadata."""
    s = EpisodeStore(store_path)
    out = []
    for i, m in enumerate(s.episodes):
        ends = m["subtask_ends"]
        out += [(i, j, a, b) for j, (a, b) in enumerate(zip([0, *ends], ends))]
    return out


def test_view_slices_the_parent_episodes(sequence_store):
    base = EpisodeStore(sequence_store)
    view = SegmentedStore(sequence_store)
    segs = _segments(sequence_store)
    assert len(view) == len(segs) > len(base) and view.num_steps == base.num_steps
    assert {m["subtasks"][-1][0] for m in base.episodes} == {"remove"}  # the captures are segmented too
    for n, (i, j, a, b) in enumerate(segs):
        seg, par = view.episode(n), base.episode(i)
        assert seg.length == b - a and seg.meta["length"] == b - a
        for key in ("action", "eef_pos", "eef_quat", "joint_pos", "target_joint_pos", "stone_pos", "subtask_index"):
            assert np.array_equal(seg[key], par[key][a:b]), key
        assert np.array_equal(seg.mj_state, par.mj_state[a:b])
        assert (seg["subtask_index"] == j).all()
        for cam in ("agentview", "wrist"):
            assert seg.jpeg(cam) == par.jpeg(cam)[a:b]  # the stored JPEG files, byte for byte
        pm, m = par.meta, seg.meta
        assert m["instruction"] == pm["subtask_instructions"][j]
        assert m["target"] == pm["subtasks"][j][2:] and m["stone_color"] == pm["subtasks"][j][1]
        assert m["split"] == pm["split"] and m["cell_id"] == pm["cell_id"] and m["seed"] == pm["seed"]
        assert m["success"] == (j < pm["subtasks_completed"])
        assert m["segment"] == {"store_index": i, "episode_index": pm["episode_index"], "subtask": j,
                                "n_subtasks": len(pm["subtask_ends"]), "kind": pm["subtasks"][j][0],
                                "subtask_spec": pm["subtasks"][j], "start": a, "stop": b}
        assert "subtask_ends" not in m and m["task"] == "subtask"
        want_reward = np.zeros(b - a, np.float32)
        want_reward[-1] = float(m["success"])
        assert np.array_equal(seg["reward"], want_reward)
    # a sequence and its segments are in one split, and both splits are there
    assert view.splits() == {sp: sum(len(m["subtask_ends"]) for m in base.episodes if m["split"] == sp)
                             for sp in base.splits()}
    assert set(view.splits()) == {"train", "val"}
    # the workers' handle reopens the view
    again = EpisodeStore.reopen(view.handle)
    assert isinstance(again, SegmentedStore) and again.episodes == view.episodes


def test_view_refuses_a_single_task_store_and_a_bad_cut(sequence_store, tmp_path):
    import shutil

    place = tmp_path / "place"
    r = _cli("generate", "--n", "1", "--out", str(place), "--image-size", "16", "--workers", "1", "-q")
    assert r.returncode == 0, r.stderr[-2000:]
    with pytest.raises(ExportError, match="only a sequence store"):
        segmented(EpisodeStore(place))
    out = tmp_path / "exp"
    r = _cli("export", "--format", "zarr", "--store", str(place), "--out", str(out), "--segment-subtasks", "-q")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("error: --segment-subtasks")
    assert "Traceback" not in r.stderr and not out.exists()

    # subtask_index rows that disagree with subtask_ends: refused when the episode is read, one line
    bad = tmp_path / "bad"
    shutil.copytree(sequence_store, bad)
    import zarr

    from bomb_data.store.format import CHECKSUM_KEY, array_checksum, meta_checksum

    g = zarr.open_group(bad, mode="r+", zarr_format=3)
    ends = EpisodeStore(bad).episodes[0]["subtask_ends"]
    sub = np.asarray(g["data"]["subtask_index"][:])
    sub[ends[0]] = 0  # the first step of subtask 1 says subtask 0
    g["data"]["subtask_index"][:] = sub
    lines = (bad / "meta" / "episodes.jsonl").read_text().splitlines()
    m = json.loads(lines[0])
    sums = m.pop(CHECKSUM_KEY)
    sums["subtask_index"] = array_checksum(sub[: ends[-1]])  # a consistent store, a wrong cut
    sums["meta"] = meta_checksum(m)
    m[CHECKSUM_KEY] = sums
    lines[0] = json.dumps(m)
    (bad / "meta" / "episodes.jsonl").write_text("\n".join(lines) + "\n")
    view = SegmentedStore(bad)
    with pytest.raises(StoreError, match="disagree with its subtask_ends"):
        view.episode(0)["action"]


def _export(store: Path, out: Path, *args: str) -> dict:
    r = _cli("export", "--store", str(store), "--out", str(out), "--segment-subtasks", "--workers", "2", "-q", *args)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


def test_lerobot_segments_byte_for_byte(sequence_store, tmp_path):
    base = EpisodeStore(sequence_store)
    segs = _segments(sequence_store)
    out = tmp_path / "le"
    summary = _export(sequence_store, out, "--format", "lerobot", "--no-video")
    assert summary["episodes"] == len(segs)
    tasks = pq.read_table(out / "meta" / "tasks.parquet").to_pydict()
    task_of = dict(zip(tasks["task_index"], tasks["__index_level_0__"]))
    data = pq.read_table(sorted((out / "data").rglob("*.parquet"))[0]).to_pydict()
    eps = pq.read_table(sorted((out / "meta" / "episodes").rglob("*.parquet"))[0]).to_pydict()
    splits = json.loads((out / "meta" / "bomb_data.json").read_text())["splits"]
    for k, (i, j, a, b) in enumerate(segs):
        par = base.episode(i)
        rows = [r for r, e in enumerate(data["episode_index"]) if e == k]
        assert len(rows) == b - a
        assert [data["observation.images.agentview"][r]["bytes"] for r in rows] == par.jpeg("agentview")[a:b]
        assert [data["observation.images.wrist"][r]["bytes"] for r in rows] == par.jpeg("wrist")[a:b]
        assert np.array_equal(np.array([data["action"][r] for r in rows], np.float32), par["action"][a:b])
        assert {task_of[data["task_index"][r]] for r in rows} == {par.meta["subtask_instructions"][j]}
        assert eps["tasks"][k] == [par.meta["subtask_instructions"][j]]
        prov = json.loads(eps["bomb_data/segment"][k])
        assert (prov["store_index"], prov["subtask"], prov["start"], prov["stop"]) == (i, j, a, b)
        assert k in splits[par.meta["split"]]


def test_every_format_exports_the_segments(sequence_store, tmp_path):
    import h5py
    import zarr

    base = EpisodeStore(sequence_store)
    segs = _segments(sequence_store)
    slices = [(base.episode(i), j, a, b) for i, j, a, b in segs]

    z = tmp_path / "dp.zarr"
    _export(sequence_store, z, "--format", "zarr")
    root = zarr.open_group(z, mode="r")
    assert root["meta"]["episode_ends"][:].tolist() == np.cumsum([b - a for _, _, a, b in segs]).tolist()
    assert np.array_equal(root["data"]["action"][:], np.concatenate([p["action"][a:b] for p, _, a, b in slices]))
    assert np.array_equal(root["data"]["img"][:], np.concatenate([p.images("agentview")[a:b] for p, _, a, b in slices]))
    assert [e["segment"]["subtask"] for e in root.attrs["episodes"]] == [j for _, j, _, _ in segs]

    h = tmp_path / "rm"
    _export(sequence_store, h, "--format", "hdf5")
    with h5py.File(h / "bomb_go.hdf5", "r") as f:
        for n, (p, j, a, b) in enumerate(slices):
            g = f["data"][f"demo_{n}"]
            assert np.array_equal(g["actions"][:], p["action"][a:b])
            assert np.array_equal(g["states"][:], p.mj_state[a:b])
            assert np.array_equal(g["obs"]["agentview_rgb"][:], p.images("agentview")[a:b])
            assert g.attrs["instruction"] == p.meta["subtask_instructions"][j]
            assert json.loads(g.attrs["segment"])["subtask"] == j
            mask = "valid" if p.meta["split"] == "val" else "train"
            assert f"demo_{n}".encode() in f["mask"][mask][:].tolist()

    r = tmp_path / "rlds"
    summary = _export(sequence_store, r, "--format", "rlds")
    assert summary["episodes"] == len(segs) and summary["frames"] == base.num_steps
    assert {k: v["episodes"] for k, v in summary["splits"].items()} == SegmentedStore(sequence_store).splits()
    raw = b"".join(p.read_bytes() for p in sorted(r.rglob("*.tfrecord-*")))
    for p, j, _, _ in slices:
        assert f"{sequence_store.name}/episode_{p.meta['episode_index']:06d}/subtask_{j:02d}".encode() in raw


def test_segments_of_a_failed_sequence(sequence_store):
    """A sequence that failed at its second subtask: its first segment succeeded (exported by default),
    the second carries the failure; a cut that does not fit the episode is refused in one line."""
    from bomb_data.store.segments import segment_metas

    m = dict(EpisodeStore(sequence_store).episodes[0])
    e0 = m["subtask_ends"][0]
    m.update(success=False, failure_reason="missed_grasp", subtasks_completed=1, failed_subtask=1,
             subtask_ends=[e0, e0 + 40], length=e0 + 40, placement_error_m=0.02)
    segs = segment_metas(m, 7)
    assert [(s["success"], s["failure_reason"], s["length"]) for s in segs] == \
        [(True, None, e0), (False, "missed_grasp", 40)]
    assert [s["placement_error_m"] for s in segs] == [None, 0.02]
    assert [s["segment"]["store_index"] for s in segs] == [7, 7] and segs[1]["segment"]["start"] == e0
    too_many = [*range(1, len(m["subtasks"]) + 1), e0 + 40]  # one cut more than the episode has subtasks
    for bad in ([e0, e0 + 40, e0 + 40], [e0 + 40, e0], [e0], too_many):
        with pytest.raises(StoreError, match="cannot be segmented"):
            segment_metas({**m, "subtask_ends": bad}, 7)
