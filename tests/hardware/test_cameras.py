"""Cameras with injected frame sources: timestamps, the newest frame wins, stale frames and
failed devices are refused, wrong frame sizes are caught, configs are validated."""

from __future__ import annotations

import queue
import sys

import numpy as np
import pytest

from hardware.cameras import CameraError, StaleFrameError, camera_kinds, make_camera
from hardware.cameras.opencv import OpenCVCamera, OpenCVCameraConfig
from hardware.clock import VirtualClock

CONFIG = OpenCVCameraConfig("front", height=12, width=16, max_age=0.1, connect_timeout=30.0)


class QueueSource:
    """Frames (or an exception) put by the test, delivered to the camera's thread."""

    def __init__(self) -> None:
        self.items: queue.Queue = queue.Queue()
        self.opened = self.closed = 0

    def open(self) -> None:
        self.opened += 1

    def grab(self, timeout: float):
        try:
            item = self.items.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, Exception):
            raise item
        return item

    def close(self) -> None:
        self.closed += 1


def image(value: int, shape=(12, 16, 3)) -> np.ndarray:
    return np.full(shape, value, dtype=np.uint8)


def test_frames_carry_the_time_they_arrived_and_the_newest_wins():
    clock, source = VirtualClock(), QueueSource()
    camera = OpenCVCamera(CONFIG, clock=clock, source=source)
    source.items.put(image(1))
    with camera:
        first = camera.read()
        assert (first.index, first.sensed_at, int(first.image[0, 0, 0])) == (0, 0.0, 1)
        clock.advance(0.05)
        source.items.put(image(2))
        source.items.put(image(3))
        newest = camera.wait_frame(after=1, timeout=30.0)
        assert (newest.index, newest.sensed_at, int(newest.image[0, 0, 0])) == (2, 0.05, 3)
        assert camera.read() is newest
    assert (source.opened, source.closed) == (1, 1)
    camera.disconnect()  # idempotent
    assert source.closed == 1


def test_a_frozen_camera_is_stale():
    clock, source = VirtualClock(), QueueSource()
    source.items.put(image(1))
    with OpenCVCamera(CONFIG, clock=clock, source=source) as camera:
        camera.read()
        clock.advance(0.15)  # no new frame for longer than max_age
        with pytest.raises(StaleFrameError, match=r"0\.150 s old"):
            camera.read()
        source.items.put(image(2))
        camera.wait_frame(after=0, timeout=30.0)
        assert camera.read().index == 1


def test_a_failed_device_and_a_wrong_frame_size_are_errors():
    source = QueueSource()
    source.items.put(image(1))
    with OpenCVCamera(CONFIG, clock=VirtualClock(), source=source) as camera:
        source.items.put(CameraError("unplugged"))
        with pytest.raises(CameraError, match="unplugged"):
            camera.wait_frame(after=0, timeout=30.0)
        with pytest.raises(CameraError, match="unplugged"):
            camera.read()
    source = QueueSource()
    source.items.put(image(1, shape=(10, 16, 3)))
    with pytest.raises(CameraError, match=r"shape \(10, 16, 3\), configured \(12, 16, 3\)"):
        OpenCVCamera(CONFIG, clock=VirtualClock(), source=source).connect()
    assert source.closed == 1


def test_read_needs_a_connection():
    with pytest.raises(CameraError, match="not connected"):
        OpenCVCamera(CONFIG, source=QueueSource()).read()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "a/b"}, "camera name"),
        ({"height": 4}, "at least 8x8"),
        ({"max_age": 0.0}, "max_age"),
        ({"device": -1}, "index"),
        ({"device": ""}, "path is empty"),
        ({"fps": 0.0}, "fps"),
    ],
)
def test_configs_are_validated(fields, message):
    base = {"name": "front", "height": 12, "width": 16}
    with pytest.raises(ValueError, match=message):
        OpenCVCameraConfig(**{**base, **fields})


def test_the_registry_builds_cameras_by_kind():
    assert {"opencv", "sim"} <= set(camera_kinds())
    assert isinstance(make_camera(CONFIG, source=QueueSource()), OpenCVCamera)


def test_an_unopenable_device_says_so(monkeypatch):
    config = OpenCVCameraConfig("front", height=12, width=16, device="/dev/no-such-video")
    with pytest.raises(CameraError, match="cannot open '/dev/no-such-video'"):
        OpenCVCamera(config).connect()
    monkeypatch.setitem(sys.modules, "cv2", None)  # OpenCV not installed
    with pytest.raises(CameraError, match="pip install opencv-python"):
        OpenCVCamera(config).connect()
