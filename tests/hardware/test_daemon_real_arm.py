"""``robopolicy control`` on a real arm: skipped unless ``ROBOPOLICY_HARDWARE=1`` and the arm is
named by ``ROBOPOLICY_CONTROL_ROBOT`` (feetech, dynamixel, ur, xarm), ``ROBOPOLICY_CONTROL_PORT``
(serial device or address) and, for servo buses, ``ROBOPOLICY_CONTROL_CALIBRATION``.

The policy holds the arm where it was found (the fake server with amplitude 0, centred on the
first reading), so the run exercises the real driver's reads, writes and exit behaviour at the
control rate without moving the arm; keep a hand on the e-stop all the same.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from hardware.daemon.log import read_ticks
from hardware.driver import driver_class
from hardware.testing.processes import DaemonProcess, fake_server


@pytest.mark.hardware
def test_the_daemon_holds_a_real_arm_still(tmp_path: Path) -> None:
    robot, port = (os.environ.get(f"ROBOPOLICY_CONTROL_{k}") for k in ("ROBOT", "PORT"))
    calibration = os.environ.get("ROBOPOLICY_CONTROL_CALIBRATION")
    if not (robot and port):
        pytest.skip("set ROBOPOLICY_CONTROL_ROBOT and ROBOPOLICY_CONTROL_PORT")
    servo = robot in ("feetech", "dynamixel")
    kwargs = {"port": port, "calibration": calibration} if servo else {"host": port}
    with driver_class(robot)(**kwargs) as arm:
        start = arm.read_state().as_action()
    server = fake_server(start, "--amplitude", "0")
    args = ["--robot", robot, "--port", port, "--server", f"{server.host}:{server.port}"]
    if servo:
        args += ["--calibration", str(calibration)]
    daemon = DaemonProcess(
        [
            *args,
            "--json",
            "--duration",
            "3",
            "--out",
            str(tmp_path / "ticks.zarr"),
            "--estop-latch",
            str(tmp_path / "estop.json"),
            "exit_behaviour=hold",
        ]
    )
    try:
        assert daemon.wait(60) == 0, daemon.stderr()[-3000:]
    finally:
        server.stop()
    summary = json.loads(daemon.stdout())
    stats = summary["stats"]
    assert summary["reason"] == "duration" and stats["chunks_accepted"] > 0
    assert stats["write_errors"] == stats["read_errors"] == 0 and summary["exit"]["held"]
    measured = read_ticks(tmp_path / "ticks.zarr")["measured"]
    n = len(start) - (arm.spec.gripper is not None)
    assert np.nanmax(np.abs(measured[:, :n] - start[:n])) < 0.05  # held where it was
