"""Pictures for people: a contact sheet of reset scenes and a video of one expert episode (as
``generate`` makes them), the contact sheet of a grid (one picture per cell), and the one MP4 writer
(also used for evaluation videos). The sheets are ``bomb_data.pictures.contact_sheet``; this module
renders what goes on them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from .config import BombConfig
from .pictures import contact_sheet

if TYPE_CHECKING:
    from .perturb.grid import Cell, Grid
    from .store.record import EpisodeRecord


def write_video(frames: list[NDArray[np.uint8]], path: Path, fps: float) -> None:
    """Write frames (H, W, 3) uint8 (even H and W) as H.264 MP4 (yuv420p, CRF 23, preset veryfast) with
    PyAV: the one MP4 writer of the pictures for people (the preview's episode, evaluation videos).
    Written beside ``path`` and renamed over it, so ``path`` is whole or absent; parents are made."""
    import os

    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), mode="w") as c:
        s = c.add_stream("libx264", rate=int(round(fps)))
        s.width, s.height = frames[0].shape[1], frames[0].shape[0]
        s.pix_fmt = "yuv420p"
        s.options = {"crf": "23", "preset": "veryfast"}
        for f in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    os.replace(tmp, path)


def run_config(cfg: BombConfig, grid: Grid) -> BombConfig:
    """The configuration ``generate`` runs ``grid`` with (a sequence grid makes a sequence run)."""
    if cfg.task == "sequence" or grid.task == "sequence":
        from .sequence.check import sequence_run

        cfg, _ = sequence_run(cfg, grid)
    return cfg


def preview_episode(cfg: BombConfig, grid: str = "nominal", seed: int = 0, k: int = 0) -> EpisodeRecord:
    """Episode ``k`` as ``bomb-data generate --seed SEED --grid GRID`` makes it with ``cfg``: the same
    task function (``generate.run_episode``: parameters, attempt seeds, the expert's generators,
    retries), run in this process and kept in memory. Returns its successful attempt, or its last
    attempt when none of ``generate.max_attempts`` succeeded."""
    from .generate import run_episode
    from .perturb.grid import load_grid

    g = load_grid(grid)
    cfg = run_config(cfg, g)
    keep_all = cfg.model_copy(update={"generate": cfg.generate.model_copy(update={"keep_failures": True})})
    return run_episode(k, keep_all, g, None, seed, in_memory=True)["records"][-1]


def write_preview(cfg: BombConfig, out: Path, grid: str = "nominal", n: int = 8, seed: int = 0) -> list[Path]:
    """Contact sheet of the reset scenes of episodes 0..n-1 (agentview and wrist) and an MP4/GIF of
    episode 0, all as ``generate`` with the same seed and grid makes them (the episode's frames are the
    pictures its store holds)."""
    from .perturb.grid import load_grid
    from .runtime import worker_env
    from .seeds import episode_seed
    from .store.images import decode_jpeg

    g = load_grid(grid)
    out.mkdir(parents=True, exist_ok=True)
    env = worker_env(run_config(cfg, g))  # of a sequence grid: GoSequence-v0 scenes
    imgs, labels = [], []
    for k in range(n):
        cell, params = g.episode_params(seed, k)
        obs, info = env.reset(seed=episode_seed(seed, k, 0), options={"params": params})
        imgs += [obs["agentview"], obs["wrist"]]
        labels += [f"{k}: {cell.id} {info['target']}", "wrist"]
    sheet = out / "scenes.png"
    contact_sheet(imgs, labels).save(sheet)
    rec = preview_episode(cfg, grid, seed, 0)
    frames = [np.concatenate([decode_jpeg(a), decode_jpeg(w)], 1)
              for a, w in zip(rec.jpeg["agentview"], rec.jpeg["wrist"])]
    mp4, gif = out / "episode.mp4", out / "episode.gif"
    write_video(frames, mp4, cfg.sim.control_hz)
    pil = [Image.fromarray(f) for f in frames[::2]]
    pil[0].save(gif, save_all=True, append_images=pil[1:], duration=int(2000 / cfg.sim.control_hz), loop=0)
    return [sheet, mp4, gif]


def grid_preview(grid: str | Path | Grid, out: Path, cfg: BombConfig, seed: int = 0, cols: int = 8,
                 palette: bool = False) -> Path:
    """Render every cell of ``grid`` and write its labelled contact sheet as PNG at ``out``
    (:func:`bomb_data.perturb.sheet.grid_sheet`; the environment renders, the sheet is drawn there).

    Args:
        grid: grid name, path or ``Grid``.
        out: PNG path (parent directories are made).
        cfg: configuration (its image size is the picture size).
        seed: episode seed shared by all pictures, so cells differ only by their perturbation.
        cols: pictures per row.
        palette: store as 256-colour PNG (about 3x smaller; for documentation).
    """
    from .env import GoPlaceEnv
    from .perturb.grid import load_grid
    from .perturb.sheet import grid_sheet

    g = load_grid(grid)
    if g.task == "sequence":  # its cells' params carry the sequence
        from .sequence.env import GoSequenceEnv

        env: GoPlaceEnv = GoSequenceEnv(cfg)
    else:
        env = GoPlaceEnv(cfg)
    try:
        def render(cell: Cell, episode_seed: int) -> tuple[NDArray[np.uint8], str]:
            obs, info = env.reset(seed=episode_seed, options={"params": cell.params})
            return obs["agentview"], info["instruction"]

        return grid_sheet(g, out, render, seed=seed, cols=cols, palette=palette)
    finally:
        env.close()
