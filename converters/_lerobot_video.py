"""Per-camera work of the LeRobot export, run in worker processes: read, resize, encode, summarise.

One job is one (episode, camera): it reads the stored JPEG frames, resizes them if asked, computes
the camera's per-episode statistics and either encodes an MP4 segment (PyAV) or returns the
per-frame image files for parquet. The parent appends segments to the dataset's video files
(:class:`VideoAppender`, a packet copy, no re-encoding).

Encoder settings follow lerobot's ``encode_video_frames``: ``yuv420p``, a keyframe every 2 frames
(``g=2``, so random access decodes at most one extra frame), CRF 30 and preset 12 for libsvtav1;
libx264 with CRF 23 for ``--codec h264`` (H.264's CRF scale differs; 23 is its own default).
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from bomb_data.store.images import decode_jpegs

from . import _lerobot_stats as st
from .exporter import worker_store
from .frames import resize_frames

logger = logging.getLogger(__name__)

CODECS: dict[str, str] = {"av1": "libsvtav1", "h264": "libx264"}
PIX_FMT = "yuv420p"
GOP = 2


def codec_options(codec: str, threads: int | None) -> dict[str, str]:
    """Encoder options of ``codec`` ('av1' or 'h264'); ``threads`` caps the encoder's threads."""
    if codec == "av1":
        opts = {"g": str(GOP), "crf": "30", "preset": "12"}
        if threads:
            opts["svtav1-params"] = f"lp={threads}"
    else:
        opts = {"g": str(GOP), "crf": "23", "preset": "veryfast"}
        if threads:
            opts["threads"] = str(threads)
    return opts


#: RGB -> (Cb, Cr) rows of BT.601 in limited range (the matrix swscale uses for yuv420p when no colour
#: space is tagged, and that lerobot's decoders invert), each with its +128 offset.
_KR, _KB = 0.299, 0.114
_KG = 1.0 - _KR - _KB
_CHROMA = np.array([[-0.5 * _KR / (1 - _KB), -0.5 * _KG / (1 - _KB), 0.5, 0.0],
                    [0.5, -0.5 * _KG / (1 - _KR), -0.5 * _KB / (1 - _KR), 0.0]], np.float32)
_CHROMA[:, :3] *= 224.0 / 255.0
_CHROMA[:, 3] = 128.0


def rgb_to_yuv420p(frame: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """(H, W, 3) uint8 RGB → yuv420p planes stacked as PyAV's (H * 3 / 2, W) array; H, W even.

    BT.601 limited range, as swscale converts an untagged frame, at a quarter of its cost
    (0.17 against 0.65 ms at 256 x 256). Luma is OpenCV's I420 conversion (within one level of
    swscale); chroma is the conversion of the 2 x 2 box-averaged RGB, which round-trips closer to
    the source than swscale's filter or OpenCV's own I420 chroma (tests/test_export_lerobot.py).
    """
    h, w = frame.shape[:2]
    out = cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420)
    uv = cv2.transform(cv2.resize(frame, (w // 2, h // 2), interpolation=cv2.INTER_AREA), _CHROMA)
    q = h // 4
    out[h:h + q] = uv[..., 0].reshape(q, w)
    out[h + q:] = uv[..., 1].reshape(q, w)
    return out


def encode_segment(frames: NDArray[np.uint8], path: Path, fps: int, codec: str, threads: int | None) -> None:
    """Encode (T, H, W, 3) uint8 RGB frames to an MP4 at ``path``, frame i at pts i / fps."""
    # SVT-AV1 prints its configuration to stderr at info level for every encoder; keep errors only
    os.environ.setdefault("SVT_LOG", "1")
    with av.open(str(path), "w") as out:
        stream = out.add_stream(CODECS[codec], rate=fps, options=codec_options(codec, threads))
        stream.pix_fmt = PIX_FMT
        stream.height, stream.width = int(frames.shape[1]), int(frames.shape[2])
        stream.codec_context.time_base = Fraction(1, fps)
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(rgb_to_yuv420p(f), format=PIX_FMT)
            vf.pts = i
            vf.time_base = Fraction(1, fps)
            for p in stream.encode(vf):
                out.mux(p)
        for p in stream.encode():
            out.mux(p)


class VideoAppender:
    """An MP4 file that grows by whole segments (packet copy), each starting at the file's end.

    Segments must come from :func:`encode_segment` with identical settings (same stream header).
    """

    def __init__(self, path: Path, fps: int):
        self.path = path
        self.fps = fps
        self.frames = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._out: Any = av.open(str(path), "w")
        self._stream: Any = None

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps

    def append(self, segment: Path, n_frames: int) -> tuple[float, float]:
        """Append ``segment`` (n_frames frames); return its (from, to) timestamps in this file, s."""
        start = self.frames
        with av.open(str(segment)) as inp:
            src = inp.streams.video[0]
            if self._stream is None:
                self._stream = self._out.add_stream_from_template(template=src, opaque=True)
                self._stream.time_base = src.time_base
            offset = round(Fraction(start, self.fps) / src.time_base)
            for pkt in inp.demux(src):
                if pkt.dts is None:
                    continue
                pkt.pts = pkt.pts + offset if pkt.pts is not None else None
                pkt.dts = pkt.dts + offset
                pkt.stream = self._stream
                self._out.mux(pkt)
        self.frames += n_frames
        return start / self.fps, self.frames / self.fps

    def size_mb(self) -> float:
        return self.path.stat().st_size / 2**20 if self.path.exists() else 0.0

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


def video_info(path: Path) -> dict[str, Any]:
    """The ``info`` block lerobot writes for a video feature (``get_video_info``)."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return {
            "video.height": s.height,
            "video.width": s.width,
            "video.codec": s.codec_context.codec.canonical_name,
            "video.pix_fmt": s.pix_fmt,
            "video.is_depth_map": False,
            "video.fps": int(s.base_rate),
            "video.channels": 3,
            "has_audio": False,
        }


# ---------------------------------------------------------------------------------- worker side
@dataclass(frozen=True)
class CameraJob:
    """One (episode, camera) unit of work. ``segment`` is None for images-in-parquet."""

    store: str
    episode: int
    camera: str
    version: str
    image_size: int | None
    fps: int
    codec: str
    segment: str | None
    threads: int | None


def run_camera_job(job: CameraJob) -> dict[str, Any]:
    """Do one job; return ``{"stats", "frames", "bytes", "images"}`` (images: per-frame files or None)."""
    ep = worker_store(job.store).episode(job.episode)
    jpegs = ep.jpeg(job.camera)
    frames = decode_jpegs(jpegs)  # the files read once: decoded here, copied as-is for --no-video
    resized = job.image_size is not None and tuple(frames.shape[1:3]) != (job.image_size, job.image_size)
    if resized:
        frames = resize_frames(frames, job.image_size)
    stats = st.image_stats(frames, job.version)
    images: list[bytes] | None = None
    nbytes = 0
    if job.segment is not None:
        encode_segment(frames, Path(job.segment), job.fps, job.codec, job.threads)
        nbytes = Path(job.segment).stat().st_size
    elif resized:
        # PNG: lossless with respect to the resized frames
        images = []
        for f in frames:
            b = io.BytesIO()
            Image.fromarray(f).save(b, format="PNG", compress_level=1)
            images.append(b.getvalue())
    else:
        images = list(jpegs)  # the stored JPEG files themselves: no second lossy step
    if images is not None:
        nbytes = sum(len(b) for b in images)
    return {"stats": stats, "frames": len(frames), "bytes": nbytes, "images": images}
