"""Hardware-layer fixtures; tests marked ``hardware`` need a real robot and are skipped unless
``ROBOPOLICY_HARDWARE=1`` (plus the robot's address, e.g. ``ROBOPOLICY_UR_HOST``)."""

from __future__ import annotations

import os

import pytest

from hardware.calibration import ArmCalibration, GripperCalibration, JointCalibration

SO101_JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll")


@pytest.fixture(autouse=True)
def _skip_real_hardware(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("hardware") and os.environ.get("ROBOPOLICY_HARDWARE") != "1":
        pytest.skip("real-hardware test: set ROBOPOLICY_HARDWARE=1 and the robot's address")


@pytest.fixture(autouse=True)
def _private_estop_latch(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    """Each test its own e-stop latch file: no test reads or sets this machine's latch."""
    path = tmp_path_factory.mktemp("latch") / "estop.json"
    monkeypatch.setenv("ROBOPOLICY_ESTOP_LATCH", str(path))


@pytest.fixture
def so101_calibration() -> ArmCalibration:
    """Five joints on servos 1..5 (alternating directions) and a gripper on servo 6."""
    joints = {
        name: JointCalibration(
            id=i + 1,
            offset=2048 + 10 * i,
            direction=-1 if i % 2 else 1,
            range_min=1024,
            range_max=3072,
        )
        for i, name in enumerate(SO101_JOINTS)
    }
    return ArmCalibration(joints, GripperCalibration(id=6, open_ticks=2000, closed_ticks=2600))
