"""Exports of a GoSequence store: each frame/step carries the instruction of its own subtask."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from bomb_data.store.reader import EpisodeStore

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MUJOCO_GL": "egl"}
    return subprocess.run([sys.executable, "-m", "bomb_data", *args], capture_output=True, text=True, env=env,
                          timeout=900)


@pytest.fixture(scope="module")
def seq_store(sequence_store) -> Path:
    return sequence_store  # conftest: two 3-subtask episodes (place, place, remove), train and val


def _expected(store_path: Path) -> list[list[str]]:
    s = EpisodeStore(store_path)
    out = []
    for ep in s.iter_episodes(range(len(s))):
        texts = ep.meta["subtask_instructions"]
        out.append([texts[i] for i in ep["subtask_index"]])
    assert any(len(set(x)) > 1 for x in out)  # at least one episode changes instruction mid-episode
    return out


@pytest.mark.parametrize("version", ["v3.0", "v2.1"])
def test_lerobot_frame_task_is_the_current_subtask(seq_store, tmp_path, version):
    out = tmp_path / "le"
    r = _cli("export", "--format", "lerobot", "--lerobot-version", version, "--store", str(seq_store), "--out",
             str(out), "--no-video", "-q")
    assert r.returncode == 0, r.stderr[-2000:]
    if version == "v3.0":
        t = pq.read_table(out / "meta" / "tasks.parquet").to_pydict()
        task_of = dict(zip(t["task_index"], t["__index_level_0__"]))
    else:
        lines = (out / "meta" / "tasks.jsonl").read_text().splitlines()
        task_of = {json.loads(x)["task_index"]: json.loads(x)["task"] for x in lines}
    rows = []
    for p in sorted((out / "data").rglob("*.parquet")):
        d = pq.read_table(p, columns=["episode_index", "frame_index", "task_index"]).to_pydict()
        rows += list(zip(d["episode_index"], d["frame_index"], d["task_index"]))
    want = _expected(seq_store)
    for k, texts in enumerate(want):
        got = [task_of[ti] for _, _, ti in sorted(r for r in rows if r[0] == k)]
        assert got == texts


def test_rlds_step_instruction_is_the_current_subtask(seq_store, tmp_path):
    out = tmp_path / "rlds"
    r = _cli("export", "--format", "rlds", "--store", str(seq_store), "--out", str(out), "-q")
    assert r.returncode == 0, r.stderr[-2000:]
    raw = b"".join(p.read_bytes() for p in sorted(out.rglob("*.tfrecord-*")))
    want = _expected(seq_store)
    counts: dict[str, int] = {}
    for texts in want:
        for t in texts:
            counts[t] = counts.get(t, 0) + 1
    for t, n in counts.items():
        # one bytes_list entry (field 1, length-prefixed) per step that carries it
        enc = t.encode()
        found = raw.count(bytes([0x0A]) + _varint(len(enc)) + enc)
        assert found == n, (t, found, n)
    assert np.sum(list(counts.values())) == sum(len(x) for x in want)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def test_hdf5_robomimic_has_step_instructions_and_subtask_boundaries(seq_store, tmp_path):
    import h5py

    out = tmp_path / "h5"
    r = _cli("export", "--format", "hdf5", "--store", str(seq_store), "--out", str(out), "-q")
    assert r.returncode == 0, r.stderr[-2000:]
    want = _expected(seq_store)
    store = EpisodeStore(seq_store)
    with h5py.File(next(out.rglob("*.hdf5")), "r") as f:
        for k, texts in enumerate(want):
            g = f["data"][f"demo_{k}"]
            assert [x.decode() for x in g["language_instruction"][:]] == texts
            si = g["subtask_index"][:]
            assert len(si) == g.attrs["num_samples"] == len(texts)
            ends = g.attrs["subtask_ends"].tolist()
            assert ends == store.episodes[k]["subtask_ends"] and ends[-1] == len(si)
            assert np.flatnonzero(np.diff(si)).tolist() == [e - 1 for e in ends[:-1]]
