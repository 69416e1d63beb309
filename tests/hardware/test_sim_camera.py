"""The simulated camera renders the arm as it is now, stamped with the arm's clock."""

from __future__ import annotations

import numpy as np
import pytest

from hardware.cameras import CameraError, make_camera
from hardware.cameras.sim import SimCamera, SimCameraConfig
from hardware.clock import VirtualClock
from hardware.sim_arm import SimArm


def test_frames_show_the_moving_arm_at_the_arm_clock(gl):
    clock = VirtualClock()
    with SimArm(clock=clock) as arm:
        config = SimCameraConfig("front", height=48, width=64, view="overview", max_age=0.05)
        camera = make_camera(config, arm=arm)
        assert isinstance(camera, SimCamera)
        with camera:
            first = camera.read()
            assert first.image.shape == (48, 64, 3) and first.image.dtype == np.uint8
            assert first.image.std() > 0  # something was drawn
            target = arm.read_state().positions + np.array([0.6, -0.3, 0.3, 0.0, 0.0, 0.0])
            arm.send_action(np.append(target, 1.0))
            clock.sleep(0.5)
            second = camera.read()
        assert (first.index, second.index) == (0, 1)
        assert second.sensed_at == pytest.approx(0.5)
        assert not np.array_equal(first.image, second.image)


def test_a_model_camera_renders_and_an_unknown_view_is_refused(gl):
    with SimArm(clock=VirtualClock()) as arm:
        with SimCamera(SimCameraConfig("wrist", height=32, width=32, view="wrist"), arm=arm) as cam:
            assert cam.read().image.shape == (32, 32, 3)
        camera = SimCamera(SimCameraConfig("x", height=32, width=32, view="ceiling"), arm=arm)
        with pytest.raises(CameraError, match=r"no view 'ceiling'.*'wrist'"):
            camera.connect()
