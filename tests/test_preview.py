"""``bomb-data preview`` shows the episode ``bomb-data generate`` makes with the same seed and grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from bomb_data.generate import generate
from bomb_data.preview import preview_episode, write_preview
from bomb_data.schema import CAMERAS, STEP_FEATURES
from bomb_data.store import EpisodeStore

from .test_generate import small_cfg


def test_the_preview_episode_is_the_generated_episode(tmp_path: Path):
    seed, grid = 11, "randomized"
    cfg = small_cfg(2, seed=seed, grid=grid)
    generate(cfg, tmp_path / "store", workers=1)
    store = EpisodeStore(tmp_path / "store")
    ep = store[[m["episode_index"] for m in store.episodes].index(0)]  # generated episode k = 0
    rec = preview_episode(cfg, grid, seed, 0)
    for key in ("seed", "params", "target", "instruction", "success", "attempt"):
        assert rec.meta[key] == ep.meta[key], key
    for f in STEP_FEATURES:
        assert np.array_equal(rec.steps[f.key], ep[f.key], equal_nan=True), f.key
    assert np.array_equal(rec.mj_state, ep.mj_state)
    for c in CAMERAS:
        assert rec.jpeg[c] == ep.jpeg(c)
    # and what write_preview draws is that episode: its GIF holds every other stored frame, side by side
    write_preview(cfg, tmp_path / "preview", grid=grid, n=1, seed=seed)
    gif = Image.open(tmp_path / "preview" / "episode.gif")
    assert gif.n_frames == (ep.length + 1) // 2
    first = np.asarray(gif.convert("RGB"), dtype=np.int16)
    want = np.concatenate([ep.images("agentview")[0], ep.images("wrist")[0]], 1).astype(np.int16)
    assert first.shape == want.shape and np.abs(first - want).mean() < 8  # GIF: a 256-colour palette
