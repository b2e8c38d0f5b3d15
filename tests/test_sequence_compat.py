"""The real loaders read exports of a sequence store, whole and ``--segment-subtasks``, and the
instruction each gives a frame/step is the store's subtask instruction at that step.

LeRobotDataset (lerobot 0.4, v3.0; lerobot 0.3, v2.1), TFDS ``builder_from_directory`` / the imported
``bomb_go`` builder / the builder run on the store / OpenVLA's loading path (tensorflow-datasets 4.9.10
and OpenVLA's pins), robomimic's SequenceDataset; each through the check script its format's compat
test uses (tests/compat/check_*.py). The store is conftest's ``sequence_store`` (2 episodes of 3
subtasks, 16 px, train and val).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bomb_data.store.reader import EpisodeStore
from bomb_data.store.segments import SegmentedStore
from tests.conftest import REPO, run_side, side_python

COMPAT = REPO / "tests" / "compat"
pytestmark = pytest.mark.compat


def _export(store: Path, out: Path, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "MUJOCO_GL": "egl"}
    r = subprocess.run([sys.executable, "-m", "bomb_data", "export", "--store", str(store), "--out", str(out),
                        "--workers", "2", "-q", *args], capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


def _view(store: Path, segmented: bool) -> EpisodeStore:
    return SegmentedStore(store) if segmented else EpisodeStore(store)


def _step_texts(ep) -> list[str]:
    """The store's instruction of each step: the subtask's (a segment: its own, one subtask)."""
    if "segment" in ep.meta:
        return [ep.meta["instruction"]] * ep.length
    return [ep.meta["subtask_instructions"][j] for j in ep["subtask_index"]]


@pytest.fixture(scope="module")
def exports(sequence_store: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("seq_compat")
    out = {}
    for seg in (False, True):
        tag = "seg" if seg else "whole"
        opt = ["--segment-subtasks"] if seg else []
        for version in ("v3.0", "v2.1"):
            out[f"lerobot_{version}_{tag}"] = work / f"lerobot_{version}_{tag}"
            _export(sequence_store, out[f"lerobot_{version}_{tag}"], "--format", "lerobot", "--lerobot-version",
                    version, "--no-video", *opt)
        out[f"rlds_{tag}"] = work / f"rlds_{tag}"
        _export(sequence_store, out[f"rlds_{tag}"], "--format", "rlds", *opt)
        out[f"robomimic_{tag}"] = work / f"robomimic_{tag}.hdf5"
        _export(sequence_store, out[f"robomimic_{tag}"], "--format", "hdf5", *opt)
    out["work"] = work
    return out


@pytest.mark.parametrize("env,version", [("lerobot30", "v3.0"), ("lerobot21", "v2.1")])
@pytest.mark.parametrize("segmented", [False, True])
def test_lerobot_dataset_frame_task(exports, sequence_store, env, version, segmented):
    import converters.lerobot as lr

    keys = lr.resolve_preset(None, version)
    root = exports[f"lerobot_{version}_{'seg' if segmented else 'whole'}"]
    proc = run_side(env, COMPAT / "check_lerobot.py", str(root), str(sequence_store), json.dumps(keys),
                    "--frame-tasks", *(["--segments"] if segmented else []))
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    store = _view(sequence_store, segmented)
    eps = [store.episode(i) for i in store.select(success=True)]
    want = [t for ep in eps for t in _step_texts(ep)]
    assert got["num_frames"] == len(want) and got["num_episodes"] == len(eps)
    assert got["frame_tasks"] == want  # what __getitem__ hands a policy, frame by frame
    assert segmented or any(len(set(_step_texts(ep))) > 1 for ep in eps)  # the task changes mid-episode
    assert [e["tasks"] for e in got["episodes"]] == [list(dict.fromkeys(_step_texts(ep))) for ep in eps]
    assert [e["store_index"] for e in got["episodes"]] == [ep.index for ep in eps]
    np.testing.assert_array_equal(np.asarray(got["columns"][keys["action"]], np.float32),
                                  np.concatenate([ep["action"] for ep in eps]))
    assert got["psnr"]["agentview"]["min"] == got["psnr"]["wrist"]["min"] == 99.0  # the stored JPEG files
    assert max(got["stats_rel_diff"].values()) < 1e-3  # lerobot's own statistics over the same frames


@pytest.fixture(scope="module")
def rlds_checks(exports, sequence_store) -> dict:
    """check_rlds.py ``all`` in both TFDS side envs at once: the whole export (from its directory, the
    imported builder, the builder run on the store, OpenVLA's path) and the segmented one."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(REPO)}
    work = exports["work"]
    procs = {}
    for name in ("tfds_current", "openvla_pins"):
        args = ["all", str(exports["rlds_whole"]), str(sequence_store), str(work / f"build_{name}"),
                str(work / f"rlds_{name}"), str(exports["rlds_seg"])]
        procs[name] = subprocess.Popen([str(side_python(name)), str(COMPAT / "check_rlds.py"), *args],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    out = {}
    for name, p in procs.items():
        so, se = p.communicate(timeout=900)
        if p.returncode != 0:
            pytest.fail(f"check_rlds.py failed in {name}:\n{se[-6000:]}")
        out[name] = json.loads(so)
    return out


@pytest.mark.parametrize("env", ["tfds_current", "openvla_pins"])
def test_tfds_step_language_instruction(rlds_checks, sequence_store, env):
    res = rlds_checks[env]
    for mode, segmented in (("from_directory", False), ("imported", False), ("build", False), ("extra0", True)):
        store = _view(sequence_store, segmented)
        dump = res[mode]
        assert len(dump["episodes"]) == len(store.select(success=True)), mode
        for key, rec in dump["episodes"].items():
            split, i = key.split("/")
            ep = store.episode(int(i))
            assert ep.meta["split"] == split
            assert rec["language_instruction"] == _step_texts(ep), (mode, key)
            np.testing.assert_array_equal(np.asarray(rec["action"], np.float32), ep["action"])
            if segmented:
                s = ep.meta["segment"]
                tail = f"episode_{s['episode_index']:06d}/subtask_{s['subtask']:02d}"
                assert rec["metadata"]["file_path"].endswith(tail)
                assert rec["is_terminal"][-1] is True and rec["reward"][-1] == 1.0
    # OpenVLA's path: trajectory -> frames, each frame with its language instruction (train split)
    whole = EpisodeStore(sequence_store)
    want = [t for i in whole.select(success=True, split="train") for t in _step_texts(whole.episode(i))]
    assert res["openvla"]["language"] == want and res["openvla"]["frames"] == len(want)


@pytest.mark.parametrize("segmented", [False, True])
def test_robomimic_sequence_dataset_step_instruction(exports, sequence_store, segmented):
    path = exports[f"robomimic_{'seg' if segmented else 'whole'}"]
    proc = run_side("robomimic", COMPAT / "check_robomimic.py", str(path))
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    store = _view(sequence_store, segmented)
    idx = store.select(success=True)
    view = got["filters"]["all"]
    assert len(view["data"]) == len(idx)
    for n, i in enumerate(idx):
        ep = store.episode(i)
        d = view["data"][f"demo_{n}"]
        assert d["instruction"] == _step_texts(ep)
        assert np.allclose(d["actions"], ep["action"], atol=1e-6)
        assert np.ravel(d["rewards"]).tolist() == ep["reward"].tolist()
    # the split masks: a sequence and its segments on the same side
    for key, split in (("train", "train"), ("valid", "val")):
        assert sorted(got["filters"][key]["demos"]) == sorted(f"demo_{n}" for n, i in enumerate(idx)
                                                              if store.episodes[i]["split"] == split)
