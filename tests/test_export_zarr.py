"""Zarr export (issue 8): a Diffusion Policy replay buffer, opened with plain zarr and checked against the store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from bomb_data.errors import ExportError, StoreError
from bomb_data.rotations import quat_wxyz_to_axis_angle
from bomb_data.store import EpisodeStore
from converters import zarr_replay
from converters.frames import resize_frames


@pytest.mark.parametrize("workers,size", [(1, None), (2, 24)])
def test_replay_buffer_matches_store(tiny_store: Path, tmp_path: Path, workers: int, size: int | None):
    store = EpisodeStore(tiny_store)
    idx = store.select(success=True)
    out = tmp_path / "bomb_go.zarr"
    s = zarr_replay.export(tiny_store, out, workers=workers, image_size=size)
    lengths = [store.episode(i).length for i in idx]
    assert s["frames"] == sum(lengths) and s["episodes"] == len(idx)
    # Diffusion Policy pins zarr 2: the buffer is zarr format 2
    assert json.loads((out / "data" / "img" / ".zarray").read_text())["zarr_format"] == 2
    root = zarr.open_group(out, mode="r")  # plain zarr, as ReplayBuffer.create_from_path / copy_from_path
    ends = root["meta"]["episode_ends"][:]
    assert ends.dtype == np.int64 and ends.tolist() == np.cumsum(lengths).tolist()
    N = int(ends[-1])
    H, W = (size, size) if size else store.image_shape[:2]
    data = root["data"]
    assert set(data.keys()) == {"img", "wrist_img", "state", "action"}
    for key in data.keys():  # every data/<key> holds all episodes end to end (ReplayBuffer's invariant)
        assert data[key].shape[0] == N
    assert data["img"].dtype == np.uint8 and data["img"].shape == (N, H, W, 3) and data["img"].chunks[0] == 1
    assert data["state"].shape == (N, 8) and data["action"].shape == (N, 7) and data["state"].dtype == np.float32
    meta = root.attrs["episodes"]
    for e, i in enumerate(idx):
        ep = store.episode(i)
        sl = slice(int(ends[e - 1]) if e else 0, int(ends[e]))
        assert meta[e] == ep.meta
        assert np.array_equal(data["action"][sl], ep["action"])
        state = np.concatenate([ep["eef_pos"], quat_wxyz_to_axis_angle(ep["eef_quat"]), ep["gripper_qpos"]], 1)
        assert np.array_equal(data["state"][sl], state)
        assert np.array_equal(data["img"][sl], resize_frames(ep.images("agentview"), size))
        assert np.array_equal(data["wrist_img"][sl], resize_frames(ep.images("wrist"), size))
    prov = root.attrs["bomb_data"]
    assert prov["config_hash"] == store.description["config_hash"] and prov["versions"] == store.description["versions"]


def test_bad_input_and_atomicity(tiny_store: Path, tmp_path: Path):
    with pytest.raises(StoreError):
        zarr_replay.export(tmp_path / "missing", tmp_path / "o")
    out = tmp_path / "buf.zarr"
    zarr_replay.export(tiny_store, out)
    with pytest.raises(ExportError, match="already holds a Diffusion Policy replay buffer.*; pass --overwrite"):
        zarr_replay.export(tiny_store, out)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))

    def interrupt(_: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        zarr_replay.export(tiny_store, out, overwrite=True, progress=interrupt)
    # the interrupted overwrite left the previous buffer intact and no partial directory
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir()] == ["buf.zarr"]
    with pytest.raises(KeyboardInterrupt):
        zarr_replay.export(tiny_store, tmp_path / "new.zarr", progress=interrupt)
    assert not (tmp_path / "new.zarr").exists()
