"""Deterministic recorded episodes: the content of episode ``i`` depends on ``i`` alone, so a
test or a crash campaign can tell, from a store, whether every episode reads back identical."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np

from hardware.recorder.resume import CameraInfo, RecordingSetup

JOINTS = ("j1", "j2", "j3", "j4", "j5", "j6")
SETUP = RecordingSetup(
    robot="sim",
    joints=JOINTS,
    cameras=(CameraInfo("front", 16, 16), CameraInfo("wrist", 16, 16)),
    fps=30.0,
)
"""The setup the deterministic episodes are recorded with."""


def episode_length(index: int) -> int:
    """Frames of episode ``index`` (varies a little so episode boundaries matter)."""
    return 6 + index % 5


def make_frame(index: int, t: int, setup: RecordingSetup = SETUP) -> dict[str, np.ndarray]:
    """Frame ``t`` of episode ``index``: state, action, timestamp and one image per camera."""
    rng = np.random.default_rng([index, t])
    d = len(setup.joints) + 1
    frame = {
        "state": rng.normal(size=d).astype(np.float32),
        "action": rng.normal(size=d).astype(np.float32),
        "timestamp": np.float64(index * 100.0 + 0.5 + t / setup.fps),  # a monotonic clock
    }
    for camera in setup.cameras:
        shape = (camera.height, camera.width, 3)
        frame[camera.key] = rng.integers(0, 256, size=shape, dtype=np.uint8)
    return frame


def make_episode(index: int, setup: RecordingSetup = SETUP) -> dict[str, np.ndarray]:
    """All frames of episode ``index``, key -> (T, *shape)."""
    frames = [make_frame(index, t, setup) for t in range(episode_length(index))]
    return {key: np.stack([f[key] for f in frames]) for key in frames[0]}


def episode_digest(frames: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over every key's name, dtype, shape and bytes."""
    h = hashlib.sha256()
    for key in sorted(frames):
        value = np.ascontiguousarray(frames[key])
        h.update(f"{key}|{value.dtype.str}|{value.shape}|".encode())
        h.update(value.tobytes())
    return h.hexdigest()
