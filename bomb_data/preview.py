"""Pictures for people: a contact sheet of reset scenes and a video of one expert episode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw

from .config import BombConfig


def contact_sheet(images: list[NDArray[np.uint8]], labels: list[str], cols: int = 4) -> Image.Image:
    """Tile equally sized images with a caption strip under each."""
    h, w = images[0].shape[:2]
    cap = 16
    rows = (len(images) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * w, rows * (h + cap)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (img, lab) in enumerate(zip(images, labels)):
        x, y = (i % cols) * w, (i // cols) * (h + cap)
        sheet.paste(Image.fromarray(img), (x, y))
        draw.text((x + 3, y + h + 2), lab[: max(8, w // 6)], fill=(0, 0, 0))
    return sheet


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


def write_preview(cfg: BombConfig, out: Path, grid: str = "nominal", n: int = 8, seed: int = 0) -> list[Path]:
    """Contact sheet of ``n`` reset scenes (agentview and wrist) and an MP4/GIF of one expert episode
    (of a sequence grid: GoSequence-v0 scenes and the sequence expert)."""
    from scripted_policies import PickPlaceExpert

    from .env import GoPlaceEnv
    from .perturb.grid import load_grid
    from .rollout import episode_seed

    g = load_grid(grid)
    out.mkdir(parents=True, exist_ok=True)
    env = GoPlaceEnv(cfg)
    expert: type = PickPlaceExpert
    if g.task == "sequence":  # the cells carry the sequence; its env and expert
        from scripted_policies.sequence import SequenceExpert

        from .sequence.env import GoSequenceEnv

        env.close()
        env, expert = GoSequenceEnv(cfg), SequenceExpert
    imgs, labels = [], []
    try:
        for k in range(n):
            cell, params = g.episode_params(seed, k)
            obs, info = env.reset(seed=episode_seed(seed, k, 0), options={"params": params})
            imgs += [obs["agentview"], obs["wrist"]]
            labels += [f"{k}: {cell.id} {info['target']}", "wrist"]
        sheet = out / "scenes.png"
        contact_sheet(imgs, labels).save(sheet)
        cell, params = g.episode_params(seed, 0)
        obs, info = env.reset(seed=episode_seed(seed, 0, 0), options={"params": params})
        ex = expert(cfg.expert, cfg.sim.control_hz)
        ex.reset(info, np.random.default_rng(seed))
        frames = [np.concatenate([obs["agentview"], obs["wrist"]], 1)]
        done = False
        while not done:
            obs, _, term, trunc, info = env.step(ex.act(obs, info))
            frames.append(np.concatenate([obs["agentview"], obs["wrist"]], 1))
            done = term or trunc
        mp4, gif = out / "episode.mp4", out / "episode.gif"
        write_video(frames, mp4, cfg.sim.control_hz)
        pil = [Image.fromarray(f) for f in frames[::2]]
        pil[0].save(gif, save_all=True, append_images=pil[1:], duration=int(2000 / cfg.sim.control_hz), loop=0)
    finally:
        env.close()
    return [sheet, mp4, gif]
