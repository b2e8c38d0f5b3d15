"""The canonical store: commit record, interrupted appends, locks, reader API (issue 4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bomb_data.errors import StoreError
from bomb_data.schema import CAMERAS, STEP_FEATURES
from bomb_data.store import EpisodeRecord, EpisodeStore, StoreWriter
from bomb_data.store.writer import _write_rows


def _record(store: EpisodeStore, i: int) -> EpisodeRecord:
    e = store[i]
    return EpisodeRecord(steps={f.key: e[f.key] for f in STEP_FEATURES}, mj_state=e.mj_state,
                         jpeg={c: e.jpeg(c) for c in CAMERAS}, meta=dict(e.meta))


def test_reader_api(tiny_store: Path):
    s = EpisodeStore(tiny_store)
    assert len(s) >= 4 and sum(s.splits().values()) == len(s)
    ep = s[0]
    assert ep["action"].shape == (ep.length, 7) and ep["action"].dtype == np.float32
    imgs = ep.images("agentview")
    assert imgs.dtype == np.uint8 and imgs.shape == (ep.length, *s.image_shape)
    assert len(ep.jpeg("wrist")) == ep.length and ep.jpeg("wrist")[0][:2] == b"\xff\xd8"
    assert s.select(success=True) == [i for i, m in enumerate(s.episodes) if m["success"]]
    assert set(s.select(split="val")) | set(s.select(split="train")) <= set(range(len(s)))
    assert sum(e.length for e in s) == s.num_steps
    with pytest.raises(IndexError):
        s.episode(len(s))
    with pytest.raises(KeyError):
        ep["nope"]


def test_interrupted_append_is_cut_off(tiny_store: Path, tmp_path: Path):
    src = EpisodeStore(tiny_store)
    out = tmp_path / "s"
    with StoreWriter.open(out, src.description, mode="create") as w:
        w.append(_record(src, 0))
        # a writer killed mid-append: rows written, no commit record, no metadata line
        rec = _record(src, 1)
        data = w._group["data"]
        _write_rows(data["action"], w._commit["steps"], rec.steps["action"])
        _write_rows(data["images"]["agentview"]["jpeg"], w._commit["image_bytes"]["agentview"],
                    np.frombuffer(b"".join(rec.jpeg["agentview"]), np.uint8))
        (out / ".lock").unlink()
        w._take_lock(out)  # keep the context manager's unlock valid
    r = EpisodeStore(out)
    assert len(r) == 1 and r.num_steps == src[0].length  # readers see only the committed part
    with StoreWriter.open(out, src.description, mode="resume") as w:  # the next writer cuts the tail
        assert w._group["data"]["action"].shape[0] == src[0].length
        w.append(_record(src, 1))
    r = EpisodeStore(out)
    assert len(r) == 2
    assert np.array_equal(r[1]["action"], src[1]["action"])
    assert r[1].jpeg("agentview") == src[1].jpeg("agentview")


def test_lock_and_refusals(tiny_store: Path, tmp_path: Path):
    src = EpisodeStore(tiny_store)
    out = tmp_path / "s"
    w = StoreWriter.open(out, src.description, mode="create")
    (out / ".lock").write_text("otherhost 1")
    with pytest.raises(StoreError, match="being written"):
        StoreWriter.open(out, src.description, mode="resume")
    (out / ".lock").unlink()
    w.close()
    with pytest.raises(StoreError, match="already exists"):
        StoreWriter.open(out, src.description, mode="create")
    other = {**src.description, "config_hash": "something-else"}
    with pytest.raises(StoreError, match="different configuration"):
        StoreWriter.open(out, other, mode="resume")
    with pytest.raises(StoreError, match="no store"):
        EpisodeStore(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreError, match="not a bomb-data store"):
        EpisodeStore(tmp_path / "plain")


def test_decode_jpeg_matches_pillow(tiny_store, monkeypatch) -> None:  # noqa: ANN001
    """The store decodes with OpenCV; the pixels equal Pillow's decoding of the same files, so a
    user reading the stored JPEG bytes with Pillow (or any libjpeg-turbo reader) sees the same frames."""
    import io

    from PIL import Image

    from bomb_data.store import EpisodeStore
    from bomb_data.store.images import decode_jpeg

    s = EpisodeStore(tiny_store)
    n = 0
    for i in range(len(s)):
        for cam in ("agentview", "wrist"):
            for b in s.episode(i).jpeg(cam)[::3]:
                with Image.open(io.BytesIO(b)) as im:
                    assert np.array_equal(decode_jpeg(b), np.asarray(im.convert("RGB")))
                n += 1
    assert n > 20
    with pytest.raises(ValueError, match="JPEG"):
        decode_jpeg(b"not a jpeg")
    # the Pillow path of environments without OpenCV (e.g. the TFDS builder inside OpenVLA's env)
    from bomb_data.store import images

    fast = decode_jpeg(b)
    monkeypatch.setattr(images, "_cv2", lambda: None)
    assert np.array_equal(decode_jpeg(b), fast)
    with pytest.raises(ValueError, match="JPEG"):
        decode_jpeg(b"not a jpeg")
