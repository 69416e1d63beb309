"""Encode frames to mp4 and decode them back at given timestamps, with PyAV (no ffmpeg binary).

LeRobot stores camera streams as AV1 (``libsvtav1``, yuv420p, a keyframe every 2 frames, crf 30),
which :func:`encode_video` uses by default; ``libx264`` suits videos meant for people to watch.
:func:`decode_frames` returns the frame nearest to each requested timestamp and refuses when the
nearest one is further away than ``tolerance_s``, as LeRobot's loader does.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

from robopolicy.errors import DataError

# SVT-AV1 prints a banner per stream unless told to report errors only.
os.environ.setdefault("SVT_LOG", "1")


@dataclasses.dataclass(frozen=True)
class VideoSettings:
    """How a camera stream is encoded."""

    codec: str = "libsvtav1"
    """PyAV/FFmpeg encoder name: ``libsvtav1`` (LeRobot's default), ``libx264``, ``h264``."""
    pix_fmt: str = "yuv420p"
    """Pixel format of the stream (yuv420p needs even width and height)."""
    gop: int = 2
    """Frames between keyframes; small keeps random access cheap."""
    crf: int = 30
    """Constant rate factor: lower is better quality and bigger files."""
    preset: str | None = None
    """Encoder speed preset (x264: ``veryfast``, ...; SVT-AV1: ``0``-``13``); None: its default."""

    def __post_init__(self) -> None:
        if self.gop < 1:
            raise ValueError(f"gop must be >= 1, got {self.gop}")
        if not 0 <= self.crf <= 63:
            raise ValueError(f"crf must be in [0, 63], got {self.crf}")

    def options(self) -> dict[str, str]:
        options = {"g": str(self.gop), "crf": str(self.crf)}
        if self.preset is not None:
            options["preset"] = self.preset
        return options


def encode_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: float,
    settings: VideoSettings = VideoSettings(),
) -> int:
    """Write (H, W, 3) uint8 RGB frames to the mp4 at ``path``; return the number written.

    Frame ``i`` gets presentation time ``i / fps``. The file is written next to its final name and
    moved into place only when complete, so a crash never leaves a truncated video.
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    count = 0
    with av.open(str(partial), mode="w", format="mp4") as container:
        stream = None
        for frame in frames:
            frame = np.asarray(frame)
            if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                raise DataError(
                    path, f"frames must be (H, W, 3) uint8, got {frame.shape} {frame.dtype}"
                )
            if stream is None:
                stream = container.add_stream(
                    settings.codec, rate=Fraction(fps).limit_denominator(1_000_000)
                )
                stream.height, stream.width = frame.shape[:2]
                stream.pix_fmt = settings.pix_fmt
                stream.options = settings.options()
            elif frame.shape[:2] != (stream.height, stream.width):
                raise DataError(
                    path,
                    f"frame {count} is {frame.shape[:2]}, earlier frames "
                    f"{(stream.height, stream.width)}",
                )
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            container.mux(stream.encode(video_frame))
            count += 1
        if stream is None:
            raise DataError(path, "no frames to encode")
        container.mux(stream.encode())
    os.replace(partial, path)
    return count


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What a video file holds, as LeRobot records it in ``info.json``."""

    codec: str
    pix_fmt: str
    height: int
    width: int
    channels: int
    fps: float
    frames: int
    has_audio: bool


def probe_video(path: str | Path) -> VideoInfo:
    """Codec, pixel format, size, frame rate and frame count of the first video stream."""
    import av

    path = Path(path)
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            ctx = stream.codec_context
            frames = stream.frames or sum(1 for _ in container.demux(stream) if _.size)
            return VideoInfo(
                codec=ctx.codec.canonical_name,
                pix_fmt=ctx.pix_fmt or "",
                height=ctx.height,
                width=ctx.width,
                channels=3,
                fps=float(stream.average_rate or stream.base_rate or 0),
                frames=int(frames),
                has_audio=bool(container.streams.audio),
            )
    except (av.FFmpegError, IndexError) as exc:
        raise DataError(path, f"not a readable video ({exc})") from exc


def decode_frames(
    path: str | Path,
    timestamps: Sequence[float],
    *,
    tolerance_s: float = 1e-4,
    max_values: int | None = None,
) -> np.ndarray:
    """Decode the frames nearest to ``timestamps`` (seconds, ascending) as (N, H, W, 3) uint8.

    Seeks to the keyframe before the first timestamp and decodes forward to the last one. A
    timestamp with no frame within ``tolerance_s`` is a DataError naming the file. Memory stays
    bounded whatever the file says: a frame of more than ``max_values`` values (H * W * 3) is
    refused before it is converted, only frames near a requested timestamp are kept, and a file
    that holds far more frames over those timestamps than were asked for is refused.
    """
    import av

    path = Path(path)
    wanted = np.asarray(timestamps, dtype=np.float64)
    if wanted.ndim != 1 or not wanted.size:
        raise ValueError("timestamps must be a non-empty 1-D sequence")
    if np.any(np.diff(wanted) < 0):
        raise ValueError("timestamps must be ascending")
    budget = 4 * wanted.size + 256
    times: list[float] = []
    images: dict[int, np.ndarray] = {}
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            start = Fraction(float(wanted[0])) / stream.time_base
            container.seek(max(0, int(start)), stream=stream, backward=True)
            last = wanted[-1] + tolerance_s
            for frame in container.decode(stream):
                t = float(frame.pts * stream.time_base)
                if t < wanted[0] - tolerance_s:
                    continue
                if len(times) >= budget:
                    raise DataError(path, f"more than {budget} frames for {wanted.size} timestamps")
                if max_values is not None and frame.width * frame.height * 3 > max_values:
                    raise DataError(
                        path,
                        f"{frame.width}x{frame.height} frames are larger than the "
                        f"{max_values} values per frame the dataset declares",
                    )
                i = int(np.searchsorted(wanted, t))  # the wanted times on either side of t
                if np.abs(wanted[max(i - 1, 0) : i + 1] - t).min() <= tolerance_s:
                    images[len(times)] = frame.to_ndarray(format="rgb24")
                times.append(t)
                if t >= last:
                    break
    except av.FFmpegError as exc:
        raise DataError(path, f"video unreadable ({exc})") from exc
    if not times:
        raise DataError(path, f"no frame near t={wanted[0]:.4f}s (video ends earlier?)")
    decoded = np.asarray(times)
    nearest = np.abs(decoded[None, :] - wanted[:, None]).argmin(axis=1)
    error = np.abs(decoded[nearest] - wanted)
    if np.any(error > tolerance_s):
        i = int(np.argmax(error > tolerance_s))
        raise DataError(
            path,
            f"no frame within {tolerance_s}s of t={wanted[i]:.4f}s "
            f"(nearest at {decoded[nearest[i]]:.4f}s)",
        )
    return np.stack([images[i] for i in nearest])
