"""The camera interface: the newest frame with the time it was sensed, refused when too old.

A camera is a small object (``docs/STYLE.md`` habit 7): its config says its name and frame
size **without a connection**; ``connect()`` / ``disconnect()`` are idempotent (it is also a
context manager); ``read()`` returns the newest :class:`Frame` — an ``(H, W, 3)`` uint8 RGB image,
the time it was sensed on the camera's clock, and its number since connect — and raises
:class:`StaleFrameError` when that frame is older than ``max_age`` (a frozen camera means hold,
``docs/RELIABILITY.md`` R4). Its observation key is ``image.<name>``.

Cameras register by decorator and are imported on demand: ``make_camera(config, ...)`` builds the
camera registered for the config's kind (``"opencv"``, ``"sim"``).
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import numpy as np

from hardware.clock import SYSTEM_CLOCK, Clock
from hardware.registry import LazyRegistry
from robopolicy.errors import RobopolicyError


class CameraError(RobopolicyError):
    """A camera that cannot deliver: not connected, unopenable, failed, wrong frame size."""


class StaleFrameError(CameraError):
    """The newest frame is older than the camera's ``max_age``."""


@dataclasses.dataclass(frozen=True)
class Frame:
    """One camera frame."""

    image: np.ndarray
    """(H, W, 3) uint8 RGB."""
    sensed_at: float
    """When it was captured, in seconds on the camera's clock."""
    index: int
    """Frames delivered before this one since connect."""


@dataclasses.dataclass(frozen=True)
class CameraConfig:
    """What every camera has; each kind subclasses it with its own fields."""

    kind: ClassVar[str]
    name: str
    """Camera name; its frames are observed and recorded as ``image.<name>``."""
    height: int
    """Frame height in pixels."""
    width: int
    """Frame width in pixels."""
    max_age: float = 0.2
    """Oldest a frame may be when read (s); older means the camera is stale."""

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or "." in self.name:
            raise ValueError(f"camera name must be non-empty without '/' or '.': {self.name!r}")
        if self.height < 8 or self.width < 8:
            raise ValueError(f"camera {self.name}: frames must be at least 8x8 pixels")
        if not (self.max_age > 0 and math.isfinite(self.max_age)):
            raise ValueError(f"camera {self.name}: max_age must be a positive number of seconds")

    @property
    def key(self) -> str:
        return f"image.{self.name}"


class Camera(abc.ABC):
    """Base class: connection bookkeeping and the freshness check; subclasses grab frames."""

    def __init__(self, config: CameraConfig, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or SYSTEM_CLOCK
        self._connected = False

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def is_connected(self) -> bool:
        return self._connected

    def connect(self) -> None:
        """Open the camera (idempotent); raises CameraError when it cannot deliver."""
        if not self._connected:
            self._connect()
            self._connected = True

    def disconnect(self) -> None:
        """Close the camera (idempotent)."""
        if self._connected:
            self._connected = False
            self._disconnect()

    def read(self) -> Frame:
        """The newest frame; StaleFrameError when it is older than ``max_age``."""
        if not self._connected:
            raise CameraError(f"camera {self.name} is not connected")
        frame = self._latest()
        age = self.clock.monotonic() - frame.sensed_at
        if age > self.config.max_age:
            raise StaleFrameError(
                f"camera {self.name}: newest frame is {age:.3f} s old "
                f"(max_age {self.config.max_age:g} s)"
            )
        return frame

    def check_frame(self, image: np.ndarray) -> np.ndarray:
        """``image`` if it is an (H, W, 3) uint8 frame of the configured size, else CameraError."""
        want = (self.config.height, self.config.width, 3)
        if image.shape != want or image.dtype != np.uint8:
            raise CameraError(
                f"camera {self.name} delivered {image.dtype} frames of shape {image.shape}, "
                f"configured {want} uint8"
            )
        return image

    def __enter__(self) -> Camera:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()

    @abc.abstractmethod
    def _connect(self) -> None: ...

    @abc.abstractmethod
    def _disconnect(self) -> None: ...

    @abc.abstractmethod
    def _latest(self) -> Frame:
        """The newest frame (raises CameraError when the camera failed)."""


# -- registry ----------------------------------------------------------------------------------

CAMERAS: LazyRegistry[Camera] = LazyRegistry(
    "camera kind",
    {"opencv": "hardware.cameras.opencv", "sim": "hardware.cameras.sim"},
    CameraError,
)
C = TypeVar("C", bound=type[Camera])


def register_camera(kind: str, config_class: type[CameraConfig]) -> Callable[[C], C]:
    """Class decorator: build cameras of ``kind`` from ``config_class`` configs."""

    def decorate(cls: C) -> C:
        CAMERAS.add(kind, cls)
        config_class.kind = kind
        return cls

    return decorate


def camera_kinds() -> tuple[str, ...]:
    """Every known camera kind, without importing any of them."""
    return CAMERAS.names()


def camera_class(kind: str) -> type[Camera]:
    """The camera class registered as ``kind``, importing its module on demand."""
    return CAMERAS.get(kind)


def make_camera(config: CameraConfig, **kwargs: Any) -> Camera:
    """A new, unconnected camera for ``config`` (``kwargs``: clock, the sim arm, a source)."""
    return camera_class(config.kind)(config, **kwargs)
