"""``SimCamera``: frames of the simulated arm (:class:`~hardware.sim_arm.SimArm`) rendered by
MuJoCo, for tests and for teleoperating the simulated arm.

``read()`` renders the arm's physics as it is now (caught up with the arm's clock), so a frame is
never older than the state it shows and runs on a virtual clock are deterministic. Views: any
camera of the model (``wrist`` on the built-in arm) or ``overview``, a fixed free camera looking
at the arm from the front. Rendering is offscreen, on the backend :mod:`sim.gl` finds at the
first connect; the GL context belongs to the thread that connected, so connect and read from one
thread.
"""

from __future__ import annotations

import dataclasses

# isort: off
import sim  # noqa: F401  (first: it defers MuJoCo's GL before mujoco loads)

# isort: on
import mujoco

from hardware.cameras.camera import Camera, CameraConfig, CameraError, Frame, register_camera
from hardware.sim_arm import SimArm
from sim.gl import RenderingUnavailable, make_renderer

OVERVIEW = "overview"
"""The free camera's view name."""


@dataclasses.dataclass(frozen=True)
class SimCameraConfig(CameraConfig):
    """A rendered view of the simulated arm."""

    view: str = OVERVIEW
    """A camera of the arm's model (``wrist``) or ``overview`` (in front of the arm)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.view:
            raise ValueError(f"camera {self.name}: view must be named")


@register_camera("sim", SimCameraConfig)
class SimCamera(Camera):
    """Renders ``config.view`` of ``arm`` on every read; timestamps are the arm's clock."""

    config: SimCameraConfig

    def __init__(self, config: SimCameraConfig, *, arm: SimArm) -> None:
        super().__init__(config, arm.clock)
        self.arm = arm
        self._renderer: mujoco.Renderer | None = None
        self._view: str | mujoco.MjvCamera = config.view
        self._index = 0

    def _connect(self) -> None:
        model = self.arm.model
        if self.config.view == OVERVIEW:
            view = mujoco.MjvCamera()
            view.type = mujoco.mjtCamera.mjCAMERA_FREE
            view.lookat[:] = (0.15, 0.0, 0.2)
            view.distance, view.azimuth, view.elevation = 1.0, 150.0, -25.0
            self._view = view
        elif mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, self.config.view) < 0:
            names = [model.camera(i).name for i in range(model.ncam)]
            raise CameraError(
                f"camera {self.name}: no view {self.config.view!r} (have {[OVERVIEW, *names]})"
            )
        try:
            self._renderer = make_renderer(model, self.config.height, self.config.width)
        except RenderingUnavailable as exc:
            raise CameraError(f"camera {self.name}: {exc}") from exc
        self._index = 0

    def _disconnect(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def _latest(self) -> Frame:
        renderer = self._renderer
        if renderer is None:
            raise CameraError(f"camera {self.name} is not connected")
        with self.arm.physics() as (data, sensed_at):
            renderer.update_scene(data, camera=self._view)
            image = renderer.render()
        self._index += 1
        return Frame(self.check_frame(image), sensed_at, self._index - 1)
