"""Videos of evaluation episodes, rendered and encoded inside the env's own worker process.

:class:`RecordingTaskFactory` is a picklable env factory (like :class:`sim.vector.TaskFactory`)
whose env is wrapped in :class:`EpisodeRecorder`: for the episodes whose reset seed is in
``seeds`` it renders a frame after the reset and after every step (``env.render()``, the task's
video camera), and when the episode ends — at the autoreset that follows, or at ``close`` — it
encodes them with libx264 to ``<video_dir>/episode-<seed>.mp4``. Only file names travel back to
the parent (``vector.call("video_report")``), never frames.

Rendering needs an offscreen GL backend (:mod:`sim.gl`). When there is none, or rendering fails,
the recorder stops recording, keeps the reason, and the episode runs on unchanged: evaluation
figures never depend on videos.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from sim.gl import RenderingUnavailable
from sim.registry import make_task, task_spec


class EpisodeRecorder(gym.Wrapper):
    """Renders and encodes the episodes started with a seed in ``seeds`` (module docstring)."""

    def __init__(self, env: gym.Env, seeds: set[int], video_dir: Path, fps: float) -> None:
        super().__init__(env)
        if getattr(env.unwrapped, "render_mode", None) is None:
            env.unwrapped.render_mode = "rgb_array"  # the built-in tasks read it when rendering
        self.seeds, self.video_dir, self.fps = set(seeds), Path(video_dir), float(fps)
        self.written: list[str] = []
        self.error: str | None = None
        self._seed: int | None = None
        self._frames: list[np.ndarray] = []

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> Any:
        self._flush()
        result = self.env.reset(seed=seed, options=options)
        if seed is not None and seed in self.seeds and self.error is None:
            self.seeds.discard(seed)
            self._seed = seed
            self._grab()
        return result

    def step(self, action: Any) -> Any:
        result = self.env.step(action)
        if self._seed is not None:
            self._grab()
        return result

    def _grab(self) -> None:
        try:
            frame = self.env.render()
            if frame is None:
                raise RuntimeError("render() returned None")
        except Exception as exc:  # stop recording, keep running
            # RenderingUnavailable's message says how to enable rendering: it needs no type
            named = isinstance(exc, RenderingUnavailable)
            self.error = str(exc) if named else f"{type(exc).__name__}: {exc}"
            self._seed, self._frames = None, []
            return
        self._frames.append(np.asarray(frame, dtype=np.uint8))

    def _flush(self) -> None:
        if self._seed is None or not self._frames:
            self._seed, self._frames = None, []
            return
        from robopolicy.data.video import VideoSettings, encode_video

        path = self.video_dir / f"episode-{self._seed}.mp4"
        frames = [_even(f) for f in self._frames]
        settings = VideoSettings(codec="libx264", gop=10, crf=23, preset="veryfast")
        try:
            encode_video(path, frames, self.fps, settings)
            self.written.append(str(path))
        except Exception as exc:
            self.error = f"encoding {path.name} failed: {type(exc).__name__}: {exc}"
        self._seed, self._frames = None, []

    def video_report(self) -> tuple[list[str], str | None]:
        """Finish the episode being recorded; return (videos written, last error or None)."""
        self._flush()
        return list(self.written), self.error

    def close(self) -> None:
        self._flush()
        super().close()


def _even(frame: np.ndarray) -> np.ndarray:
    """Crop to even height and width (yuv420p needs them)."""
    h, w = frame.shape[0] // 2 * 2, frame.shape[1] // 2 * 2
    return np.ascontiguousarray(frame[:h, :w, :3])


@dataclasses.dataclass(frozen=True)
class RecordingTaskFactory:
    """A picklable factory: ``make_task(name, **kwargs)`` wrapped in :class:`EpisodeRecorder`."""

    name: str
    """Registered task name."""
    kwargs: Mapping[str, Any]
    """Overrides passed to :func:`sim.registry.make_task`."""
    seeds: tuple[int, ...]
    """Seeds of the episodes to record."""
    video_dir: str
    """Where the mp4 files go."""

    def __post_init__(self) -> None:
        task_spec(self.name)

    def __call__(self) -> gym.Env:
        env = make_task(self.name, **dict(self.kwargs))
        meta = getattr(env.unwrapped, "task_meta", None)
        fps = meta.fps if meta is not None else env.metadata.get("render_fps", 10)
        return EpisodeRecorder(env, set(self.seeds), Path(self.video_dir), fps)
