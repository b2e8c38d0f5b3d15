"""RLDS export (converters/rlds.py) and the TFDS builder (builders/bomb_go).

Core tests run without tensorflow. The ``compat`` tests export with the CLI inside the
``tfds_current`` side env and load the result with the real TFDS there (current releases) and in
``openvla_pins`` (tensorflow 2.15.1 / tensorflow-datasets 4.9.3 / rlds 0.1.8, OpenVLA's pins),
through ``builder_from_directory``, the imported builder, the builder converting the store itself,
``tfds build`` in the builder's folder, and OpenVLA's loading path; everything is compared with
what the store returns.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import subprocess
import sys
from pathlib import Path

import google_crc32c
import numpy as np
import pytest

from bomb_data.errors import ExportError, StoreError
from bomb_data.rotations import quat_wxyz_to_axis_angle
from bomb_data.store import EpisodeStore, StoreWriter
from converters import rlds
from converters._rlds_spec import plan_splits
from tests.conftest import REPO, SIDE_ENVS, side_python

CHECK = REPO / "tests" / "compat" / "check_rlds.py"
# TF's and PIL's JPEG decoders differ slightly (chroma upsampling, IDCT) on the same bytes (the
# bytes themselves are checked equal by hash). The mean grows with chroma edges per pixel: 2.14 was
# measured on 0.3.0's 64 px scenes (the whole textured table in view), under 2.0 on 0.2.0's.
DECODER_MAX_DIFF, DECODER_MEAN_DIFF = 32, 3.0


# ------------------------------------------------------------------------------------- helpers
def _export(store: Path, out: Path, **kw):
    kw.setdefault("workers", 1)
    return rlds.export(store, out, **kw)


def _read_tfrecords(path: Path) -> list[bytes]:
    """Read a TFRecord file, checking both masked CRC-32C of every record (what tensorflow checks)."""
    def masked(b: bytes) -> int:
        c = google_crc32c.value(b)
        return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF

    data, pos, out = path.read_bytes(), 0, []
    while pos < len(data):
        header = data[pos:pos + 8]
        (n,) = struct.unpack("<Q", header)
        assert struct.unpack("<I", data[pos + 8:pos + 12])[0] == masked(header)
        payload = data[pos + 12:pos + 12 + n]
        assert struct.unpack("<I", data[pos + 12 + n:pos + 16 + n])[0] == masked(payload)
        out.append(payload)
        pos += 16 + n
    return out


def _expected_splits(store: EpisodeStore, include_failures: bool = False) -> dict[str, list[int]]:
    return plan_splits(store, include_failures)


# ------------------------------------------------------------------------------- core (no TF)
def test_core_import_has_no_tensorflow():
    code = "import sys, bomb_data, converters.rlds; print('tensorflow' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert proc.stdout.strip() == "False"


def test_quat_to_axisangle_matches_robosuite_formula_and_rotation():
    rng = np.random.default_rng(0)
    q = rng.standard_normal((200, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q[:3] = [[1, 0, 0, 0], [-1, 0, 0, 0], [0, 1, 0, 0]]  # identity, its negative, a half turn
    got = quat_wxyz_to_axis_angle(q.astype(np.float32))
    assert got.dtype == np.float32 and got.shape == (200, 3)
    for qi, gi in zip(q.astype(np.float32).astype(np.float64), got):
        # robosuite's quat2axisangle, scalar form, on x-y-z-w
        x, y, z, w = qi[1], qi[2], qi[3], min(max(qi[0], -1.0), 1.0)
        den = math.sqrt(1.0 - w * w)
        ref = np.zeros(3) if math.isclose(den, 0.0, abs_tol=1e-12) else np.array([x, y, z]) * 2.0 * math.acos(w) / den
        np.testing.assert_allclose(gi, ref, atol=2e-5)

    def rot_q(qq):
        w, x, y, z = qq
        return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                         [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                         [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])

    def rot_v(v):
        th = np.linalg.norm(v)
        if th < 1e-9:
            return np.eye(3)
        k = v / th
        K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        return np.eye(3) + math.sin(th) * K + (1 - math.cos(th)) * K @ K

    for qi, gi in zip(q[3:], got[3:]):  # same rotation, whichever branch
        np.testing.assert_allclose(rot_v(gi.astype(np.float64)), rot_q(qi), atol=1e-4)


def test_export_layout_metadata_and_records(tiny_store: Path, tmp_path: Path):
    out = tmp_path / "rlds"
    frames: list[int] = []
    summary = _export(tiny_store, out, workers=2, progress=frames.append)
    store = EpisodeStore(tiny_store)
    groups = _expected_splits(store)
    data_dir = out / "bomb_go" / rlds.VERSION
    assert summary["data_dir"] == str(data_dir)
    assert summary["episodes"] == sum(len(v) for v in groups.values())
    assert summary["frames"] == sum(store.episode(i).length for v in groups.values() for i in v) == sum(frames)
    json.dumps(summary)

    info = json.loads((data_dir / "dataset_info.json").read_text())
    assert info["name"] == "bomb_go" and info["version"] == rlds.VERSION and rlds.VERSION in info["releaseNotes"]
    assert store.description["config_hash"] in info["description"]
    got_splits = {s["name"]: s for s in info["splits"]}
    assert set(got_splits) == set(groups)
    for name, s in got_splits.items():
        lengths = [int(n) for n in s["shardLengths"]]
        assert sum(lengths) == len(groups[name])
        files = sorted(data_dir.glob(f"bomb_go-{name}.tfrecord-*-of-{len(lengths):05d}"))
        assert len(files) == len(lengths)
        for f, n in zip(files, lengths):
            records = _read_tfrecords(f)
            assert len(records) == n
            # every stored JPEG file appears byte for byte in the records (pass-through)
    blob = b"".join(p.read_bytes() for p in data_dir.glob("bomb_go-*"))
    for i in (groups["train"][0], groups["train"][-1]):
        for cam in ("agentview", "wrist"):
            for b in store.episode(i).jpeg(cam):
                assert b in blob
    features = json.loads((data_dir / "features.json").read_text())
    steps = features["featuresDict"]["features"]["steps"]["sequence"]["feature"]["featuresDict"]["features"]
    h, w, _ = store.image_shape
    img = steps["observation"]["featuresDict"]["features"]["image"]["image"]
    assert img["shape"]["dimensions"] == [str(h), str(w), "3"] and img["encodingFormat"] == "jpeg"
    assert steps["action"]["tensor"]["shape"]["dimensions"] == ["7"]
    reg = (out / "openvla_registration.py").read_text()
    compile(reg, "openvla_registration.py", "exec")
    for piece in ('"primary": "image"', '"wrist": "wrist_image"', "StateEncoding.POS_EULER", "ActionEncoding.EEF_POS",
                  "OXE_STANDARDIZATION_TRANSFORMS", "OXE_NAMED_MIXTURES", "def bomb_go_dataset_transform"):
        assert piece in reg
    assert not list(tmp_path.glob(".rlds*"))  # no temp directory left


def test_export_resize_and_bomb4(tiny_store: Path, tmp_path: Path):
    out = tmp_path / "small"
    s = _export(tiny_store, out, image_size=16, action_space="bomb4", workers=1)
    assert s["image_size"] == [16, 16] and not s["jpeg_pass_through"]
    feats = json.loads((out / "bomb_go" / rlds.VERSION / "features.json").read_text())
    steps = feats["featuresDict"]["features"]["steps"]["sequence"]["feature"]["featuresDict"]["features"]
    img = steps["observation"]["featuresDict"]["features"]["wrist_image"]["image"]
    assert img["shape"]["dimensions"] == ["16", "16", "3"]
    assert steps["action"]["tensor"]["shape"]["dimensions"] == ["4"]
    data = b"".join(p.read_bytes() for p in (out / "bomb_go" / rlds.VERSION).glob("bomb_go-*"))
    store = EpisodeStore(tiny_store)
    assert store.episode(0).jpeg("agentview")[0] not in data  # re-encoded, not passed through


def test_bad_inputs(tiny_store: Path, tmp_path: Path):
    with pytest.raises(StoreError):
        _export(tmp_path / "nope", tmp_path / "o1")
    empty = tmp_path / "empty"
    with StoreWriter.open(empty, dict(EpisodeStore(tiny_store).description), mode="create"):
        pass
    with pytest.raises(StoreError, match="no committed episodes"):
        _export(empty, tmp_path / "o2")
    with pytest.raises(ExportError, match="action_space"):
        _export(tiny_store, tmp_path / "o3", action_space="joint")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="is not an RLDS export of bomb_go"):
        _export(tiny_store, foreign, overwrite=True)
    assert (foreign / "notes.txt").read_text() == "mine"
    other = tmp_path / "other"
    (other / "bomb_go" / "0.9.0").mkdir(parents=True)
    with pytest.raises(ExportError, match="version 0.9.0") as exc:
        _export(tiny_store, other)
    assert "\n" not in str(exc.value)
    out = tmp_path / "again"
    _export(tiny_store, out)
    with pytest.raises(ExportError, match="--overwrite"):
        _export(tiny_store, out)
    _export(tiny_store, out, overwrite=True)
    assert (out / "bomb_go" / rlds.VERSION / "dataset_info.json").exists()


@pytest.mark.parametrize("workers", [1, 2])
def test_interrupted_export_leaves_nothing_loadable(tiny_store: Path, tmp_path: Path, workers: int):
    out = tmp_path / "rlds"

    def stop(n: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _export(tiny_store, out, progress=stop, workers=workers)
    assert not out.exists()
    assert not list(tmp_path.glob("*/dataset_info.json")) and not list(tmp_path.glob(".*"))
    # an interrupted overwrite keeps the previous export intact
    _export(tiny_store, out)
    before = sorted(p.name for p in (out / "bomb_go" / rlds.VERSION).iterdir())
    with pytest.raises(KeyboardInterrupt):
        _export(tiny_store, out, progress=stop, overwrite=True, workers=workers)
    assert sorted(p.name for p in (out / "bomb_go" / rlds.VERSION).iterdir()) == before
    assert not list(tmp_path.glob(".rlds*"))


def test_cli_export_and_errors(tiny_store: Path, tmp_path: Path, run_cli):
    out = tmp_path / "cli"
    proc = run_cli("export", "--format", "rlds", "--store", str(tiny_store), "--out", str(out), "--workers", "2",
                   "-q", check=True)
    assert json.loads(proc.stdout)["dataset"] == "bomb_go"
    proc = run_cli("export", "--format", "rlds", "--store", str(tiny_store), "--out", str(out), "-q")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "--overwrite" in proc.stderr
    proc = run_cli("export", "--format", "rlds", "--store", str(tmp_path / "missing"), "--out", str(out), "-q")
    assert proc.returncode == 2 and "no store" in proc.stderr and "Traceback" not in proc.stderr


# ----------------------------------------------------------------------------- compat (side envs)
def _compare_dump(dump: dict, store: EpisodeStore, npz: Path, *, image_hw=None, action_space="canonical",
                  pass_through=True) -> None:
    """Everything a TFDS reader returned against what the store returns."""
    groups = _expected_splits(store)
    assert dump["name"] == "bomb_go" and dump["version"] == rlds.VERSION
    assert dump["splits"] == {k: len(v) for k, v in groups.items()}
    assert len(dump["episodes"]) == sum(len(v) for v in groups.values())
    h, w = image_hw or store.image_shape[:2]
    adim = 7 if action_space == "canonical" else 4
    want_spec = {"observation/image": {"shape": [h, w, 3], "dtype": "uint8"},
                 "observation/wrist_image": {"shape": [h, w, 3], "dtype": "uint8"},
                 "observation/state": {"shape": [8], "dtype": "float32"},
                 "observation/joint_state": {"shape": [7], "dtype": "float32"},
                 "action": {"shape": [adim], "dtype": "float32"},
                 "discount": {"shape": [], "dtype": "float32"}, "reward": {"shape": [], "dtype": "float32"},
                 "is_first": {"shape": [], "dtype": "bool"}, "is_last": {"shape": [], "dtype": "bool"},
                 "is_terminal": {"shape": [], "dtype": "bool"},
                 "language_instruction": {"shape": [], "dtype": "string"}}
    images = np.load(npz)
    for split, idx in groups.items():
        for i in idx:
            rec = dump["episodes"][f"{split}/{i}"]
            ep = store.episode(i)
            T = ep.length
            assert rec["length"] == T
            assert rec["step_specs"] == [want_spec]
            cols = [0, 1, 2, 3, 4, 5, 6] if adim == 7 else [0, 1, 2, 6]
            np.testing.assert_array_equal(np.asarray(rec["action"], np.float32), ep["action"][:, cols])
            state = np.asarray(rec["observation/state"], np.float32)
            np.testing.assert_array_equal(state[:, :3], ep["eef_pos"])
            np.testing.assert_array_equal(state[:, 3:6], quat_wxyz_to_axis_angle(ep["eef_quat"]))
            np.testing.assert_array_equal(state[:, 6:], ep["gripper_qpos"])
            np.testing.assert_array_equal(np.asarray(rec["observation/joint_state"], np.float32), ep["joint_pos"])
            np.testing.assert_array_equal(np.asarray(rec["reward"], np.float32), ep["reward"])
            assert rec["discount"] == [1.0] * T
            assert rec["is_first"] == [True] + [False] * (T - 1)
            assert rec["is_last"] == [False] * (T - 1) + [True]
            assert rec["is_terminal"] == [False] * (T - 1) + [bool(ep.meta["success"])]
            assert rec["language_instruction"] == [ep.meta["instruction"]] * T
            m = rec["metadata"]
            assert m["episode_index"] == ep.meta["episode_index"] and m["seed"] == ep.meta["seed"]
            assert [m["target_row"], m["target_col"]] == list(ep.meta["target"])
            assert m["instruction_convention"] == ep.meta["convention"] and m["cell_id"] == ep.meta["cell_id"]
            assert json.loads(m["perturbation_params"]) == ep.meta["params"] and m["split"] == ep.meta["split"]
            assert m["file_path"].endswith(f"episode_{ep.meta['episode_index']:06d}") and m["store_index"] == i
            for key, cam in (("image", "agentview"), ("wrist_image", "wrist")):
                if pass_through:
                    assert rec["hashes"][key] == [hashlib.sha256(b).hexdigest() for b in ep.jpeg(cam)]
                frames = ep.images(cam)
                for t in sorted({0, T // 2, T - 1}):
                    got = images[f"{split}/{i}/{key}/{t}"]
                    assert got.shape == (h, w, 3) and got.dtype == np.uint8
                    if pass_through:
                        diff = np.abs(got.astype(int) - frames[t].astype(int))
                        assert diff.max() <= DECODER_MAX_DIFF and diff.mean() <= DECODER_MEAN_DIFF
                    else:  # resized + re-encoded: compare with the stored frame resized the same way
                        from PIL import Image

                        ref = np.asarray(Image.fromarray(frames[t]).resize((w, h), Image.Resampling.BILINEAR))
                        assert float(np.abs(got.astype(float) - ref).mean()) < 12.0


@pytest.fixture(scope="module")
def side_checks(tiny_store: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Export with the CLI in tfds_current, then run check_rlds.py in both side envs at once."""
    for name in ("tfds_current", "openvla_pins"):
        side_python(name)
    work = tmp_path_factory.mktemp("rlds_compat")
    root, extra = work / "export", work / "export_b4"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(REPO)
    cli = SIDE_ENVS / "tfds_current" / "bin" / "bomb-data"
    for out, opts in ((root, []), (extra, ["--image-size", "24", "--action-space", "bomb4"])):
        proc = subprocess.run([str(cli), "export", "--format", "rlds", "--store", str(tiny_store), "--out", str(out),
                               "--workers", "2", "-q", *opts], capture_output=True, text=True, env=env, timeout=600)
        if proc.returncode != 0:
            pytest.fail(f"export in tfds_current failed:\n{proc.stdout}\n{proc.stderr}")
    procs = {}
    for name in ("tfds_current", "openvla_pins"):
        args = ["all", str(root), str(tiny_store), str(work / f"build_{name}"), str(work / name), str(extra)]
        procs[name] = subprocess.Popen([str(side_python(name)), str(CHECK), *args], stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True, env=env)
    # `tfds build` in the builder's folder, with the store as manual dir. The CLI of
    # tensorflow-datasets 4.9.10 imports apache_beam at start-up (not a declared dependency), so
    # the CLI of 4.9.3 (openvla_pins) runs it; the builder itself is checked in both envs above.
    tfds_cli = SIDE_ENVS / "openvla_pins" / "bin" / "tfds"
    build = subprocess.run([str(tfds_cli), "build", "--manual_dir", str(tiny_store),
                            "--data_dir", str(work / "tfdsbuild")],
                           cwd=REPO / "builders" / "bomb_go", capture_output=True, text=True, env=env, timeout=600)
    results = {"work": work, "tfds_build": build}
    for name, p in procs.items():
        out, err = p.communicate(timeout=900)
        if p.returncode != 0:
            pytest.fail(f"check_rlds.py failed in {name}:\n{err[-6000:]}")
        results[name] = json.loads(out)
    return results


@pytest.mark.compat
@pytest.mark.parametrize("env", ["tfds_current", "openvla_pins"])
def test_tfds_loads_export(env: str, side_checks: dict, tiny_store: Path):
    store = EpisodeStore(tiny_store)
    res, work = side_checks[env], side_checks["work"]
    vers = res["from_directory"]["versions"]
    if env == "openvla_pins":
        assert (vers["tensorflow"], vers["tensorflow_datasets"]) == ("2.15.1", "4.9.3")
    for mode in ("from_directory", "imported"):
        _compare_dump(res[mode], store, work / f"{env}_{mode}.npz")
    _compare_dump(res["extra0"], store, work / f"{env}_extra0.npz", image_hw=(24, 24), action_space="bomb4",
                  pass_through=False)


@pytest.mark.compat
@pytest.mark.parametrize("env", ["tfds_current", "openvla_pins"])
def test_builder_from_store_matches_export(env: str, side_checks: dict, tiny_store: Path):
    res, work = side_checks[env], side_checks["work"]
    _compare_dump(res["build"], EpisodeStore(tiny_store), work / f"{env}_build.npz")
    assert res["build"]["episodes"] == res["from_directory"]["episodes"]


@pytest.mark.compat
def test_tfds_build_cli_in_builder_folder(side_checks: dict, tiny_store: Path):
    proc = side_checks["tfds_build"]
    assert proc.returncode == 0, proc.stderr[-4000:]
    info = json.loads((side_checks["work"] / "tfdsbuild" / "bomb_go" / rlds.VERSION / "dataset_info.json").read_text())
    store = EpisodeStore(tiny_store)
    want = {k: len(v) for k, v in _expected_splits(store).items()}
    assert {s["name"]: sum(int(n) for n in s["shardLengths"]) for s in info["splits"]} == want


@pytest.mark.compat
@pytest.mark.parametrize("env", ["tfds_current", "openvla_pins"])
def test_openvla_loading_path(env: str, side_checks: dict, tiny_store: Path):
    store = EpisodeStore(tiny_store)
    ov = side_checks[env]["openvla"]
    train = _expected_splits(store)["train"]
    acts = np.concatenate([store.episode(i)["action"] for i in train])
    assert ov["frames"] == len(acts)
    # gripper: stored -1 open / +1 closed -> OpenVLA 1 open / 0 closed
    want = np.clip((np.float32(1.0) - acts[:, -1]) / np.float32(2.0), 0.0, 1.0).astype(np.float32)
    np.testing.assert_allclose(ov["gripper_values"], sorted(set(want.tolist())), rtol=0, atol=1e-6)
    assert ov["chunk_shapes"] == [[8, 7]] and ov["proprio_dim"] == 8
    assert ov["image_shape"] == list(store.image_shape)
    np.testing.assert_allclose(ov["action_mean"][:6], acts[:, :6].mean(0), rtol=1e-4, atol=1e-5)
    if env == "openvla_pins":  # the rlds package works with OpenVLA's pins
        r = ov["rlds"]
        lengths = [store.episode(i).length for i in train]
        assert r["episode_lengths"] == lengths
        assert r["first_episode_windows"] == lengths[0] - 8 + 1 and r["window_shape"] == [8, 7]
        assert r["total_rewards"] == pytest.approx([float(store.episode(i)["reward"].sum()) for i in train])
