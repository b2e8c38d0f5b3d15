"""HDF5 exports (issue 8): robomimic/LIBERO, ACT/ALOHA and RoboTwin 2.0 layouts, read back against the store."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from bomb_data.errors import ExportError, StoreError
from bomb_data.rotations import quat_wxyz_to_axis_angle
from bomb_data.store import EpisodeStore
from converters import hdf5
from converters._hdf5_common import gripper_command01, gripper_open01
from converters.frames import resize_frames
from tests.conftest import REPO, run_side

LOWDIM_OBS = ("ee_pos", "ee_ori", "ee_states", "gripper_states", "joint_states")


def expected_obs(ep) -> dict[str, np.ndarray]:
    pos = np.asarray(ep["eef_pos"], np.float32)
    ori = quat_wxyz_to_axis_angle(ep["eef_quat"])
    return {"ee_pos": pos, "ee_ori": ori, "ee_states": np.concatenate([pos, ori], 1),
            "gripper_states": ep["gripper_qpos"], "joint_states": ep["joint_pos"]}


@pytest.fixture(scope="module")
def robomimic_export(tiny_store: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rm") / "robomimic"
    s = hdf5.export(tiny_store, out, workers=2, layout="robomimic")
    assert s["output"] == str(out / "bomb_go.hdf5")
    return out / "bomb_go.hdf5"


# ------------------------------------------------------------------------------------ conversions
def test_exporters_import_without_mujoco_or_torch():
    code = ("import sys, converters.hdf5, converters.zarr_replay; "
            "print(sorted(m for m in ('mujoco', 'torch', 'tensorflow') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO), check=True)
    assert proc.stdout.strip() == "[]"


def test_axis_angle_matches_quaternion():
    rng = np.random.default_rng(0)
    q = rng.standard_normal((200, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    aa = quat_wxyz_to_axis_angle(q).astype(np.float64)
    angle = np.linalg.norm(aa, axis=1)
    # robosuite/LIBERO branch (bomb_data/rotations.py): angle 2 acos(w) in [0, 2 pi], no w >= 0 flip
    assert np.all(angle <= 2 * np.pi + 1e-5)
    assert np.allclose(angle, 2 * np.arccos(np.clip(q[:, 0], -1, 1)), atol=1e-5)
    # rebuild the quaternion from axis-angle; it equals q up to sign
    axis = aa / np.maximum(angle, 1e-12)[:, None]
    back = np.concatenate([np.cos(angle / 2)[:, None], axis * np.sin(angle / 2)[:, None]], 1)
    assert np.allclose(np.abs(np.sum(back * q, axis=1)), 1.0, atol=1e-5)
    assert np.allclose(quat_wxyz_to_axis_angle(np.array([[1.0, 0, 0, 0]])), 0)
    assert np.allclose(quat_wxyz_to_axis_angle(np.array([[0.0, 1, 0, 0]])), [[np.pi, 0, 0]], atol=1e-6)


# ---------------------------------------------------------------------------------------- robomimic
def test_robomimic_layout_matches_store(tiny_store: Path, robomimic_export: Path):
    store = EpisodeStore(tiny_store)
    idx = store.select(success=True)
    with h5py.File(robomimic_export, "r") as f:
        data = f["data"]
        assert sorted(data.keys(), key=lambda s: int(s[5:])) == [f"demo_{n}" for n in range(len(idx))]
        assert data.attrs["total"] == sum(store.episode(i).length for i in idx)
        env_args = json.loads(data.attrs["env_args"])
        assert env_args["env_name"] == "bomb_data/GoPlace-v0" and env_args["env_kwargs"]["config"] == store.config
        assert env_args["bomb_data"]["config_hash"] == store.description["config_hash"]
        assert env_args["bomb_data"]["versions"] == store.description["versions"]
        for n, i in enumerate(idx):
            ep, g = store.episode(i), data[f"demo_{n}"]
            T = ep.length
            assert g.attrs["num_samples"] == T and g.attrs["store_index"] == i
            assert json.loads(g.attrs["meta"]) == ep.meta
            assert list(g.attrs["target"]) == list(ep.meta["target"])
            assert g.attrs["instruction"] == ep.meta["instruction"]
            for key, want, dtype in (("actions", ep["action"], np.float32), ("states", ep.mj_state, np.float64),
                                     ("rewards", ep["reward"], np.float32)):
                assert g[key].dtype == dtype and g[key].shape[0] == T
                assert np.array_equal(g[key][()], want), key
            assert g["dones"].dtype == np.uint8 and g["dones"][()].tolist() == [0] * (T - 1) + [1]
            for key, want in expected_obs(ep).items():
                assert g["obs"][key].dtype == np.float32 and g["obs"][key].shape == (T, want.shape[1])
                assert np.array_equal(g["obs"][key][()], want), key
            for key, cam in hdf5.ROBOMIMIC_CAMERAS.items():
                d = g["obs"][key]
                assert d.dtype == np.uint8 and d.shape == (T, *store.image_shape)
                assert d.compression == hdf5.DEFAULT_COMPRESSION and d.chunks == (1, *store.image_shape)
                assert np.array_equal(d[()], ep.images(cam)), key


def test_robomimic_masks_cover_every_demo_once(tiny_store: Path, robomimic_export: Path):
    store = EpisodeStore(tiny_store)
    with h5py.File(robomimic_export, "r") as f:
        masks = {k: [x.decode() for x in f["mask"][k][()]] for k in f["mask"]}
        assert {"train", "valid"} <= set(masks)
        everything = [d for names in masks.values() for d in names]
        assert sorted(everything) == sorted(f["data"].keys())  # each demo exactly once
        want = {"train": "train", "valid": "val", "heldout": "heldout"}
        for key, names in masks.items():
            for name in names:
                assert store.episode(int(f["data"][name].attrs["store_index"])).meta["split"] == want[key]
    assert hdf5.list_robomimic_demos(robomimic_export, "valid") == masks["valid"]


def test_read_robomimic_demo_gives_what_replay_needs(tiny_store: Path, robomimic_export: Path):
    store = EpisodeStore(tiny_store)
    idx = store.select(success=True)
    demo = hdf5.read_robomimic_demo(robomimic_export.parent, 1)  # the directory works too
    ep = store.episode(idx[1])
    assert demo.demo == "demo_1"
    assert np.array_equal(demo.states, ep.mj_state) and np.array_equal(demo.actions, ep["action"])
    assert demo.meta == ep.meta and demo.target == tuple(ep.meta["target"])
    assert demo.env_args["env_kwargs"]["config"] == store.config
    with pytest.raises(ExportError, match="no demo"):
        hdf5.read_robomimic_demo(robomimic_export, 999)


def test_robomimic_lzf_resized_single_worker(tiny_store: Path, tmp_path: Path):
    store = EpisodeStore(tiny_store)
    f_path = tmp_path / "small.hdf5"  # a path ending in .hdf5 is the file itself
    s = hdf5.export(tiny_store, f_path, workers=1, image_size=16, compression="lzf")
    assert s["output"] == str(f_path) and s["frames"] == sum(store.episode(i).length
                                                             for i in store.select(success=True))
    with h5py.File(f_path, "r") as f:
        g = f["data/demo_0"]
        ep = store.episode(int(g.attrs["store_index"]))
        for key, cam in hdf5.ROBOMIMIC_CAMERAS.items():
            assert g["obs"][key].compression == "lzf" and g["obs"][key].shape == (ep.length, 16, 16, 3)
            assert np.array_equal(g["obs"][key][()], resize_frames(ep.images(cam), 16))
        assert np.array_equal(g["actions"][()], ep["action"])


@pytest.mark.compat
def test_robomimic_sequence_dataset_loads_export(tiny_store: Path, robomimic_export: Path):
    """robomimic's own SequenceDataset (side env) reads every sample; values equal the store's."""
    proc = run_side("robomimic", REPO / "tests" / "compat" / "check_robomimic.py", str(robomimic_export))
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["robomimic_version"]
    store = EpisodeStore(tiny_store)
    with h5py.File(robomimic_export, "r") as f:
        demo_index = {name: int(g.attrs["store_index"]) for name, g in f["data"].items()}
        masks = {k: sorted(x.decode() for x in f["mask"][k][()]) for k in ("train", "valid")}
    masks["all"] = sorted(demo_index)
    for key, view in got["filters"].items():
        assert sorted(view["demos"]) == masks[key]
        assert view["len"] == sum(store.episode(demo_index[d]).length for d in view["demos"])
        for name, d in view["data"].items():
            ep = store.episode(demo_index[name])
            assert np.allclose(d["actions"], ep["action"], atol=1e-6)
            assert np.allclose(np.ravel(d["rewards"]), ep["reward"], atol=1e-6)
            assert np.ravel(d["dones"]).tolist() == [0] * (ep.length - 1) + [1]
            for k, want in expected_obs(ep).items():
                assert np.allclose(d[k], want, atol=1e-6), (name, k)
            for k, cam in hdf5.ROBOMIMIC_CAMERAS.items():
                assert d[f"{k}_shape"] == list(store.image_shape)
                assert d[f"{k}_sum"] == ep.images(cam).reshape(ep.length, -1).astype(np.int64).sum(1).tolist()


# -------------------------------------------------------------------------------------------- aloha
def test_aloha_layout_as_act_reads_it(tiny_store: Path, tmp_path: Path):
    store = EpisodeStore(tiny_store)
    idx = store.select(success=True)
    out = tmp_path / "aloha"
    s = hdf5.export(tiny_store, out, workers=2, layout="aloha")
    L = max(store.episode(i).length for i in idx)
    files = sorted(out.glob("episode_*.hdf5"))
    assert [p.name for p in files] == [f"episode_{n}.hdf5" for n in range(len(idx))] and s["episodes"] == len(idx)
    task = json.loads((out / "act_task_config.json").read_text())
    assert task["episode_len"] == L and task["num_episodes"] == len(idx)
    actions = []
    for n, i in enumerate(idx):
        ep = store.episode(i)
        T = ep.length
        with h5py.File(out / f"episode_{n}.hdf5", "r") as root:  # as ACT's EpisodicDataset reads it
            assert bool(root.attrs["sim"]) is True and root.attrs["episode_len"] == T
            qpos, qvel, action = root["/observations/qpos"][()], root["/observations/qvel"][()], root["/action"][()]
            for a in (qpos, qvel, action):
                assert a.shape == (L, 8) and a.dtype == np.float32
            assert np.array_equal(qpos[:T, :7], ep["joint_pos"])
            assert np.allclose(qpos[:T, 7], np.asarray(ep["gripper_qpos"], np.float64).mean(1) / 0.04, atol=1e-6)
            assert np.array_equal(qvel[:T, :7], ep["joint_vel"])
            assert np.array_equal(action[:T, :7], ep["target_joint_pos"])
            assert np.allclose(action[:T, 7], (1 - ep["action"][:, 6]) / 2, atol=1e-6)
            # padding repeats the final frame and holds the last action; is_pad marks it
            assert np.all(action[T:] == action[T - 1]) and np.all(qpos[T:] == qpos[T - 1])
            assert root["is_pad"][()].tolist() == [False] * T + [True] * (L - T)
            for cam in ("agentview", "wrist"):
                img = root[f"/observations/images/{cam}"]
                assert img.shape == (L, *store.image_shape) and img.dtype == np.uint8
                assert np.array_equal(img[:T], ep.images(cam))
            actions.append(action)
    np.stack(actions)  # ACT's get_norm_stats stacks all episodes: equal lengths required


def test_gripper_mappings():
    g = np.array([[0.0, 0.0], [0.04, 0.04], [0.02, 0.02]])
    assert np.allclose(gripper_open01(g), [0, 1, 0.5])
    a = np.zeros((2, 7))
    a[:, 6] = [-1, 1]
    assert np.allclose(gripper_command01(a), [1, 0])


# ----------------------------------------------------------------------------------------- robotwin
def test_robotwin_layout_matches_store(tiny_store: Path, tmp_path: Path):
    store = EpisodeStore(tiny_store)
    idx = store.select(success=True)
    out = tmp_path / "robotwin"
    hdf5.export(tiny_store, out, workers=1, layout="robotwin")
    assert sorted(p.name for p in (out / "data").iterdir()) == sorted(f"episode{n}.hdf5" for n in range(len(idx)))
    for n, i in enumerate(idx):
        ep = store.episode(i)
        T = ep.length
        instr = json.loads((out / "instructions" / f"episode{n}.json").read_text())
        assert instr["seen"] == [ep.meta["instruction"]]
        with h5py.File(out / "data" / f"episode{n}.hdf5", "r") as f:
            arm, grip, vec = (f[f"joint_action/{k}"][()] for k in ("right_arm", "right_gripper", "vector"))
            assert arm.shape == (T, 7) and grip.shape == (T,) and vec.shape == (T, 8)
            # the drive target in effect at frame t: measured at t=0, then the target step t-1 commanded
            assert np.array_equal(arm[0], ep["joint_pos"][0].astype(np.float64))
            assert np.array_equal(arm[1:], ep["target_joint_pos"][:-1].astype(np.float64))
            assert np.allclose(grip[1:], (1 - ep["action"][:-1, 6]) / 2, atol=1e-6)
            assert np.array_equal(vec, np.concatenate([arm, grip[:, None]], 1))
            pose = f["endpose/right_endpose"][()]
            assert np.array_equal(pose, np.concatenate([ep["eef_pos"], ep["eef_quat"]], 1).astype(np.float64))
            for rt_cam, cam in hdf5.ROBOTWIN_CAMERAS.items():
                blobs = f[f"observation/{rt_cam}/rgb"][()]
                assert blobs.shape == (T,) and blobs.dtype.kind == "S"
                ref = ep.images(cam).astype(np.int16)
                # RoboTwin's readers use cv2.imdecode (BGR order): its array is the RGB frame
                as_cv2 = np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB"))[..., ::-1] for b in blobs])
                err = np.abs(as_cv2.astype(np.int16) - ref).mean()
                assert err < np.abs(as_cv2[..., ::-1].astype(np.int16) - ref).mean() or err < 1.0
                assert err < 12.0, err  # a second JPEG generation; random-noise frames are its worst case


# -------------------------------------------------------------------------------------- bad input
def test_missing_store_unknown_layout_existing_output(tiny_store: Path, tmp_path: Path):
    with pytest.raises(StoreError, match="no store"):
        hdf5.export(tmp_path / "nope", tmp_path / "o")
    with pytest.raises(ExportError, match="unknown hdf5 layout 'bogus'"):
        hdf5.export(tiny_store, tmp_path / "o", layout="bogus")
    for layout in ("robomimic", "aloha"):
        out = tmp_path / f"exists-{layout}"
        hdf5.export(tiny_store, out, layout=layout)
        with pytest.raises(ExportError, match="already holds an? .*; pass --overwrite to replace it"):
            hdf5.export(tiny_store, out, layout=layout)
        hdf5.export(tiny_store, out, layout=layout, overwrite=True)


class _Boom(Exception):
    pass


@pytest.mark.parametrize("layout", ["robomimic", "aloha"])
def test_interrupted_export_leaves_nothing_that_looks_complete(tiny_store: Path, tmp_path: Path, layout: str):
    out = tmp_path / "new" / "out"

    def interrupt(_: int) -> None:
        raise _Boom()

    with pytest.raises(_Boom):
        hdf5.export(tiny_store, out, layout=layout, progress=interrupt)
    # nothing at all: the directories made for the export go too (robomimic writes OUT/bomb_go.hdf5)
    assert list(tmp_path.iterdir()) == []


def test_cli_errors_are_one_line(tiny_store: Path, tmp_path: Path, run_cli):
    p = run_cli("export", "--format", "hdf5", "--store", str(tmp_path / "missing"), "--out", str(tmp_path / "o"))
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and "no store" in p.stderr
    p = run_cli("export", "--format", "hdf5", "--layout", "bogus", "--store", str(tiny_store),
                "--out", str(tmp_path / "o"))
    assert p.returncode == 2 and "bogus" in p.stderr
    out = tmp_path / "cli"
    run_cli("export", "--format", "hdf5", "--store", str(tiny_store), "--out", str(out), "-q", "--workers", "1",
            check=True)
    assert (out / "bomb_go.hdf5").is_file()
    p = run_cli("export", "--format", "hdf5", "--store", str(tiny_store), "--out", str(out), "-q")
    assert p.returncode == 2 and "--overwrite" in p.stderr and "Traceback" not in p.stderr
    run_cli("export", "--format", "hdf5", "--store", str(tiny_store), "--out", str(out), "-q", "--workers", "1",
            "--overwrite", "--compression", "lzf", check=True)
    with h5py.File(out / "bomb_go.hdf5", "r") as f:
        assert f["data/demo_0/obs/agentview_rgb"].compression == "lzf"


def test_cli_default_outs_of_the_layouts_do_not_collide(tiny_store: Path, tmp_path: Path):
    # with no --out, the three layouts go to three places: exporting all three in a row just works
    import shutil

    shutil.copytree(tiny_store, tmp_path / "data" / "bomb_go")
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "MUJOCO_GL": "egl"}
    for layout in ("robomimic", "aloha", "robotwin"):
        p = subprocess.run([sys.executable, "-m", "bomb_data.cli", "export", "--format", "hdf5", "--layout", layout,
                            "-q", "--workers", "1"], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
    ex = tmp_path / "data" / "exports"
    assert (ex / "hdf5" / "bomb_go.hdf5").is_file()
    assert (ex / "aloha" / "act_task_config.json").is_file() and (ex / "aloha" / "episode_0.hdf5").is_file()
    assert (ex / "robotwin" / "bomb_go" / "bomb_data_info.json").is_file()


# ------------------------------------------------------------------------------------------- replay
def _is_synthetic(store: EpisodeStore) -> bool:
    return store.description.get("config_hash") == "synthetic"


@pytest.mark.slow
def test_replaying_robomimic_actions_reproduces_success(tiny_store: Path, robomimic_export: Path):
    """Restore each demo's first state, replay its actions in the environment: the stone lands on the target."""
    store = EpisodeStore(tiny_store)
    if _is_synthetic(store):
        pytest.skip("the test store holds synthetic episodes (random states); replay needs simulated ones")
    from bomb_data.config import BombConfig
    from bomb_data.env import GoPlaceEnv

    names = hdf5.list_robomimic_demos(robomimic_export)
    env_args = hdf5.read_robomimic_demo(robomimic_export, names[0]).env_args
    env = GoPlaceEnv(BombConfig.model_validate(env_args["env_kwargs"]["config"]), render_images=False)
    ok = 0
    try:
        for name in names:
            d = hdf5.read_robomimic_demo(robomimic_export, name)
            env.reset(seed=int(d.meta["seed"]), options={"params": d.params, "target": d.target})
            env.set_mj_state(d.states[0])
            info: dict = {}
            for a in d.actions:
                _, _, terminated, truncated, info = env.step(a)
                if terminated or truncated:
                    break
            ok += bool(info.get("success"))
    finally:
        env.close()
    assert ok >= 0.95 * len(names), f"{ok}/{len(names)} replays succeeded"


def test_replay_command_reproduces_success(tiny_store, tmp_path, run_cli):
    """`bomb-data replay` on a robomimic export: every demo's actions put the stone on the target."""
    out = tmp_path / "h5"
    r = run_cli("export", "--format", "hdf5", "--store", str(tiny_store), "--out", str(out), "--quiet",
                "--workers", "1", check=True)
    r = run_cli("replay", str(out), check=True)
    rep = json.loads(r.stdout)
    assert rep["demos"] == len(EpisodeStore(tiny_store).select(success=True))
    assert rep["success_rate"] >= 0.95, rep
    r = run_cli("replay", str(tmp_path / "missing.hdf5"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
