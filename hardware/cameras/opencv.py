"""``OpenCVCamera``: a USB camera (index or device path) through OpenCV, read in its own thread.

A background thread grabs frames from a :class:`FrameSource` as fast as the device delivers them
and keeps only the newest, stamped with the clock's time when it arrived; ``read()`` never waits
for the device. The default source is OpenCV's ``VideoCapture``, imported only when a camera
connects (it comes with ``opencv-python``); tests inject a source of their own.

    config = OpenCVCameraConfig("front", height=480, width=640, device="/dev/video0", fps=30)
    with OpenCVCamera(config) as camera:
        frame = camera.read()       # StaleFrameError once the device stops delivering
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any, Protocol

import numpy as np

from hardware.cameras.camera import Camera, CameraConfig, CameraError, Frame, register_camera
from hardware.clock import Clock

log = logging.getLogger(__name__)


class FrameSource(Protocol):
    """Where an OpenCV camera's images come from."""

    def open(self) -> None:
        """Start delivering; raises CameraError when the device cannot be opened."""
        ...

    def grab(self, timeout: float) -> np.ndarray | None:
        """The next (H, W, 3) uint8 RGB image, or None when none came within about
        ``timeout`` s; raises CameraError when the device failed."""
        ...

    def close(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class OpenCVCameraConfig(CameraConfig):
    """A camera OpenCV can open."""

    device: int | str = 0
    """USB camera index (``0``) or device path (``/dev/video0``)."""
    fps: float | None = None
    """Frame rate to ask the device for; None leaves its default."""
    connect_timeout: float = 5.0
    """Longest ``connect()`` waits for the first frame (s)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.device, int) and self.device < 0:
            raise ValueError(f"camera {self.name}: a device index must be >= 0")
        if isinstance(self.device, str) and not self.device:
            raise ValueError(f"camera {self.name}: device path is empty")
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"camera {self.name}: fps must be positive")
        if not self.connect_timeout > 0:
            raise ValueError(f"camera {self.name}: connect_timeout must be positive")


class VideoCaptureSource:
    """OpenCV's ``VideoCapture`` on a device, delivering RGB frames."""

    def __init__(self, config: OpenCVCameraConfig) -> None:
        self.config = config
        self._cv2: Any = None
        self._capture: Any = None

    def open(self) -> None:
        try:
            import cv2
        except ImportError as exc:
            raise CameraError(
                "OpenCV cameras need the opencv-python package (pip install opencv-python)"
            ) from exc
        self._cv2 = cv2
        capture = cv2.VideoCapture(self.config.device)
        if not capture.isOpened():
            raise CameraError(f"camera {self.config.name}: cannot open {self.config.device!r}")
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.config.width)
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.config.height)
        if self.config.fps is not None:
            capture.set(cv2.CAP_PROP_FPS, self.config.fps)
        self._capture = capture

    def grab(self, timeout: float) -> np.ndarray | None:
        # VideoCapture.read blocks for one frame period; it has no timeout of its own
        ok, bgr = self._capture.read()
        if not ok:
            raise CameraError(f"camera {self.config.name}: {self.config.device!r} stopped")
        return self._cv2.cvtColor(bgr, self._cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


@register_camera("opencv", OpenCVCameraConfig)
class OpenCVCamera(Camera):
    """A camera read through OpenCV in a background thread.

    Args:
        config: device, frame size, rate and ``max_age``.
        clock: stamps each frame as it arrives (default: the system clock).
        source: where frames come from (default: OpenCV's ``VideoCapture`` on ``config.device``).
    """

    config: OpenCVCameraConfig

    def __init__(
        self,
        config: OpenCVCameraConfig,
        *,
        clock: Clock | None = None,
        source: FrameSource | None = None,
    ) -> None:
        super().__init__(config, clock)
        self.source = source or VideoCaptureSource(config)
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._error: CameraError | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def wait_frame(self, after: int = -1, timeout: float | None = None) -> Frame:
        """Block until a frame numbered above ``after`` has arrived (or the camera failed);
        CameraError when none came within ``timeout`` s."""
        with self._cond:
            arrived = self._cond.wait_for(
                lambda: (
                    self._error is not None
                    or (self._frame is not None and self._frame.index > after)
                ),
                timeout,
            )
            if self._error is not None:
                raise self._error
            if not arrived or self._frame is None:
                raise CameraError(f"camera {self.name}: no frame within {timeout} s")
            return self._frame

    def _connect(self) -> None:
        self.source.open()
        self._frame, self._error = None, None
        self._stop.clear()
        self._thread = threading.Thread(target=self._grab, name=f"camera-{self.name}", daemon=True)
        self._thread.start()
        try:
            self.wait_frame(timeout=self.config.connect_timeout)
        except CameraError:
            self._disconnect()
            raise

    def _disconnect(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(1.0, self.config.connect_timeout))
            if self._thread.is_alive():
                log.warning("camera %s: grab thread still blocked in the device", self.name)
            self._thread = None
        self.source.close()

    def _latest(self) -> Frame:
        with self._cond:
            if self._error is not None:
                raise self._error
            if self._frame is None:
                raise CameraError(f"camera {self.name}: no frame yet")
            return self._frame

    def _grab(self) -> None:
        index = 0
        try:
            while not self._stop.is_set():
                image = self.source.grab(timeout=0.1)
                if image is None:
                    continue
                frame = Frame(self.check_frame(image), self.clock.monotonic(), index)
                with self._cond:
                    self._frame = frame
                    self._cond.notify_all()
                index += 1
        except CameraError as exc:
            self._fail(exc)
        except Exception as exc:  # a device library failing in its own way
            self._fail(CameraError(f"camera {self.name}: {type(exc).__name__}: {exc}"))

    def _fail(self, error: CameraError) -> None:
        with self._cond:
            self._error = error
            self._cond.notify_all()
