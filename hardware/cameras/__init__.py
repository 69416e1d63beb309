"""Cameras: the newest frame with its sensing time, refused when older than ``max_age``.

- :mod:`hardware.cameras.camera`: ``Camera``, ``CameraConfig``, ``Frame``, the errors and the
  registry (``make_camera(config)``; kinds ``"opencv"`` and ``"sim"``, imported on demand);
- :mod:`hardware.cameras.opencv`: ``OpenCVCamera`` (USB index or device path, its own thread);
- :mod:`hardware.cameras.sim`: ``SimCamera``, rendered from the simulated arm by MuJoCo.
"""

from hardware.cameras.camera import (
    Camera,
    CameraConfig,
    CameraError,
    Frame,
    StaleFrameError,
    camera_class,
    camera_kinds,
    make_camera,
    register_camera,
)

__all__ = [
    "Camera",
    "CameraConfig",
    "CameraError",
    "Frame",
    "StaleFrameError",
    "camera_class",
    "camera_kinds",
    "make_camera",
    "register_camera",
]
