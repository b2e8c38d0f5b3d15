"""aloha, robotwin and Diffusion-Policy zarr exports of a sequence store: each step's instruction and
subtask index where each layout's users read language (converters/_sequence_layouts.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from bomb_data.store.reader import EpisodeStore

ROOT = Path(__file__).resolve().parents[1]


def _export(store: Path, out: Path, *args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MUJOCO_GL": "egl"}
    r = subprocess.run([sys.executable, "-m", "bomb_data", "export", "--store", str(store), "--out", str(out),
                        "--workers", "2", "-q", *args], capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]


def _episodes(store_path: Path, segmented: bool) -> list[tuple[list[int], list[str]]]:
    """(subtask index, instruction) per step of every exported episode, from the store's own arrays."""
    s = EpisodeStore(store_path)
    out = []
    for ep in s.iter_episodes():
        sub = ep["subtask_index"].tolist()
        texts = [ep.meta["subtask_instructions"][j] for j in sub]
        if not segmented:
            out.append((sub, texts))
            continue
        for a, b in zip([0, *ep.meta["subtask_ends"]], ep.meta["subtask_ends"]):
            out.append((sub[a:b], texts[a:b]))
    assert any(len(set(t)) > 1 for t, _ in out) or segmented
    return out


def test_aloha_carries_yay_robot_segments_and_step_language(sequence_store, tmp_path):
    import h5py

    for segmented in (False, True):
        out = tmp_path / f"aloha{int(segmented)}"
        _export(sequence_store, out, "--format", "hdf5", "--layout", "aloha",
                *(["--segment-subtasks"] if segmented else []))
        want = _episodes(sequence_store, segmented)
        assert len(list(out.glob("episode_*.hdf5"))) == len(want)
        for n, (sub, texts) in enumerate(want):
            T = len(sub)
            with h5py.File(out / f"episode_{n}.hdf5", "r") as f:
                L = f["action"].shape[0]
                assert f.attrs["episode_len"] == T and not f["is_pad"][:T].any() and f["is_pad"][T:].all()
                got = [x.decode() for x in f["language_instruction"][:]]
                assert got == texts + texts[-1:] * (L - T)  # padded as the other arrays: the last step repeated
                assert f["subtask_index"][:].tolist() == sub + sub[-1:] * (L - T)
            segs = json.loads((out / f"episode_{n}.json").read_text())
            # YAY Robot's segments: end_timestep inclusive, every step in exactly one segment
            covered = [t for s in segs for t in range(s["start_timestep"], s["end_timestep"] + 1)]
            assert covered == list(range(T))
            for s in segs:
                assert {texts[t] for t in range(s["start_timestep"], s["end_timestep"] + 1)} == {s["command"]}
                assert s["type"] == "instruction"
            assert len(segs) == (1 if segmented else len(set(sub)))


def test_robotwin_seen_is_the_whole_sequence_and_subtasks_are_listed(sequence_store, tmp_path):
    import h5py

    out = tmp_path / "rt"
    _export(sequence_store, out, "--format", "hdf5", "--layout", "robotwin")
    s = EpisodeStore(sequence_store)
    for n, (sub, texts) in enumerate(_episodes(sequence_store, False)):
        m = s.episodes[n]
        instr = json.loads((out / "instructions" / f"episode{n}.json").read_text())
        assert instr["seen"] == [", then ".join(m["subtask_instructions"][: len(m["subtask_ends"])])]
        assert [(x["instruction"], x["start"], x["end"]) for x in instr["subtasks"]] == \
            [(m["subtask_instructions"][j], a, b) for j, (a, b) in enumerate(zip([0, *m["subtask_ends"]],
                                                                                  m["subtask_ends"]))]
        with h5py.File(out / "data" / f"episode{n}.hdf5", "r") as f:
            assert [x.decode() for x in f["language_instruction"][:]] == texts
            assert f["subtask_index"][:].tolist() == sub
    seg = tmp_path / "rt_seg"
    _export(sequence_store, seg, "--format", "hdf5", "--layout", "robotwin", "--segment-subtasks")
    for n, (_, texts) in enumerate(_episodes(sequence_store, True)):
        assert json.loads((seg / "instructions" / f"episode{n}.json").read_text())["seen"] == [texts[0]]


def test_zarr_task_index_names_each_step_instruction(sequence_store, tmp_path):
    import zarr

    for segmented in (False, True):
        out = tmp_path / f"dp{int(segmented)}.zarr"
        _export(sequence_store, out, "--format", "zarr", *(["--segment-subtasks"] if segmented else []))
        want = _episodes(sequence_store, segmented)
        root = zarr.open_group(out, mode="r")
        tasks = root.attrs["tasks"]
        ti = root["data"]["task_index"][:]
        assert root["data"]["task_index"].dtype == np.int64 and root["data"]["subtask_index"].dtype == np.int32
        assert [tasks[i] for i in ti] == [t for _, texts in want for t in texts]
        assert root["data"]["subtask_index"][:].tolist() == [j for sub, _ in want for j in sub]
        assert len(tasks) == len(set(tasks)) == len({t for _, texts in want for t in texts})
        assert root["data"]["task_index"].shape[0] == root["meta"]["episode_ends"][-1]
