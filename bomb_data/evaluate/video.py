"""Videos of evaluation episodes, for people (never training data): each frame shows
[agentview | wrist | the images the policy was given at its last query], between a strip naming
each tile and a strip with the step, the instruction and, on the held last frame, the outcome.
Written as H.264 MP4 by ``bomb_data.preview.write_video`` (the one MP4 writer)."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..preview import write_video

log = logging.getLogger(__name__)

#: Height of the caption strips above (tile names) and below (step, instruction, outcome) the tiles.
CAPTION_PX = 16


#: Longest file name :func:`safe_name` gives (what filesystems allow: 255 bytes per name).
MAX_NAME = 255


def safe_name(name: str) -> str:
    """``name`` with every run of characters other than ``A-Za-z0-9_.+=-`` replaced by ``_`` (a file name).

    A name longer than :data:`MAX_NAME` (a cell of a randomized grid names every axis) keeps its first
    240 characters and ends in ``~`` and 12 hex digits of its SHA-256 hash, so distinct names stay
    distinct and every name fits a filesystem; shorter names are unchanged."""
    safe = re.sub(r"[^A-Za-z0-9_.+=-]+", "_", name)
    if len(safe) <= MAX_NAME:
        return safe
    import hashlib

    return f"{safe[:240]}~{hashlib.sha256(name.encode('utf-8')).hexdigest()[:12]}"


def caption(width: int, texts: list[tuple[int, str]], color: tuple[int, int, int] = (235, 235, 235)) -> np.ndarray:
    """A dark (CAPTION_PX, width, 3) strip with each text drawn from its x offset (clipped to fit)."""
    import cv2

    strip = np.full((CAPTION_PX, width, 3), 24, np.uint8)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.4
    for i, (x, text) in enumerate(texts):
        room = (texts[i + 1][0] if i + 1 < len(texts) else width) - x - 6
        while text and cv2.getTextSize(text, font, scale, 1)[0][0] > room:  # Hershey fonts are ASCII
            text = text[:-4] + "..." if len(text) > 4 else ""
        cv2.putText(strip, text, (x + 3, CAPTION_PX - 4), font, scale, color, 1, cv2.LINE_AA)
    return strip


def video_frame(obs: dict[str, Any], seen: list[np.ndarray], names: list[str], footer: str,
                footer_color: tuple[int, int, int] = (235, 235, 235)) -> np.ndarray:
    """[agentview | wrist | images the policy was given at its last query], all at the render height,
    between a strip naming each tile and a strip with ``footer``. The captions sit outside the
    camera tiles, which stay exactly the rendered (or policy-input) pixels; videos are for people
    and are never training data."""
    from PIL import Image

    h = obs["agentview"].shape[0]
    tiles = [obs["agentview"], obs["wrist"]]
    tiles += [t if t.shape[0] == h else np.asarray(Image.fromarray(t).resize((round(t.shape[1] * h / t.shape[0]), h)))
              for t in seen]
    body = np.concatenate(tiles, axis=1)
    xs = np.cumsum([0] + [t.shape[1] for t in tiles[:-1]]).tolist()
    labels = ["agentview", "wrist", *[f"policy input: {n}" for n in names[:len(seen)]]]
    w = body.shape[1]
    frame = np.concatenate([caption(w, list(zip(xs, labels))), body, caption(w, [(0, footer)], footer_color)])
    ph, pw = frame.shape[0] % 2, frame.shape[1] % 2  # H.264 needs even sizes
    return np.pad(frame, ((0, ph), (0, pw), (0, 0))) if ph or pw else frame


def write_episode_video(out_dir: Path, ep: Any, frames: list[np.ndarray], last: np.ndarray, fps: float) -> str | None:
    """Write ``frames`` then ``last`` held half a second to ``videos/<cell>/ep<j>.mp4`` under ``out_dir``
    for episode ``ep`` (an ``EpisodeSpec``); return that relative path, or None when it could not be
    written (a video is a nice-to-have: the result row is what matters; the reason is logged)."""
    frames = [*frames, *[last] * max(1, int(round(fps / 2)))]  # hold the final state half a second
    rel = Path("videos") / safe_name(ep.cell_id) / f"ep{ep.j:03d}.mp4"
    try:
        write_video(frames, out_dir / rel, fps)
    except Exception as exc:
        log.warning("episode %s: video not written (%s)", ep.episode_id, exc)
        return None
    return str(rel)


def outcome_caption(row: dict[str, Any]) -> tuple[str, tuple[int, int, int]]:
    """The last frame's footer text and colour: success or the failure, the target, the stone's error
    (a sequence: the subtasks completed and the one that failed)."""
    if row.get("task") == "sequence":
        from .sequence import outcome_text

        outcome = outcome_text(row)
    else:
        outcome = ("SUCCESS" if row["success"] else
                   f"FAILED: {row['failure_reason'] or row['error_kind'] or 'unknown'}")
        outcome += (f"   target {tuple(row['target'])}, stone nearest {tuple(row['chosen_intersection'])}, "
                    f"{row['placement_error_mm']:.1f} mm off")
    return f"step {row['steps']}   {outcome}", (120, 230, 120) if row["success"] else (240, 120, 120)
