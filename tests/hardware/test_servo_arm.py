"""Feetech and Dynamixel arms: the real driver code against pty emulators, and calibration."""

from __future__ import annotations

import importlib.util
import json
import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware.buses.base import BusError
from hardware.calibration import ArmCalibration, GripperCalibration, JointCalibration
from hardware.driver import DriverError
from hardware.emulators import DynamixelEmulator, FeetechEmulator
from hardware.servo_arm import DynamixelArm, FeetechArm
from hardware.transport import PosixTransport, PySerialTransport, TransportError, open_serial
from robopolicy.errors import DataError

PROTOCOLS = [
    pytest.param((FeetechEmulator, FeetechArm), id="feetech"),
    pytest.param((DynamixelEmulator, DynamixelArm), id="dynamixel"),
]
BACKENDS = [
    "posix",
    pytest.param(
        "pyserial",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("serial") is None, reason="pyserial (the hardware extra)"
        ),
    ),
]


@pytest.fixture(params=PROTOCOLS)
def bus(request):
    """(emulator, arm class), the emulator serving six servos on a fresh pty."""
    emulator_cls, arm_cls = request.param
    with emulator_cls(ids=range(1, 7), speed=20000.0) as emulator:
        yield emulator, arm_cls


def wait_for(condition, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


@pytest.mark.parametrize("backend", BACKENDS)
def test_read_and_write_positions_through_the_pty(bus, so101_calibration, backend) -> None:
    emulator, arm_cls = bus
    arm = arm_cls(
        calibration=so101_calibration, transport=open_serial(emulator.path, backend=backend)
    )
    with arm:
        table = arm.table
        torque = table.torque_enable.address
        wait_for(lambda: all(emulator.register(i, torque, 1) == 1 for i in range(1, 7)))
        state = arm.read_state()
        expected = so101_calibration.to_radians([2048] * 5)
        assert np.allclose(state.positions, expected) and state.gripper == pytest.approx(48 / 600)
        target = np.array([0.3, -0.2, 0.5, -0.7, 1.0, 0.75])
        sent = arm.send_action(target)
        assert np.allclose(sent, target, atol=2 * math.pi / 4096)  # quantized to whole ticks
        ticks = [*so101_calibration.to_ticks(target[:5]), 2450]
        goal = table.goal_position  # a sync write has no reply: wait for the servos to apply it
        wait_for(
            lambda: [emulator.register(i, goal.address, goal.size) for i in range(1, 7)] == ticks
        )
        wait_for(lambda: emulator.position(1) == ticks[0] and emulator.position(5) == ticks[4])
        state = arm.read_state()
        assert np.array_equal(state.positions, sent[:5]) and state.gripper == sent[5]
        arm.release()
        wait_for(lambda: emulator.register(3, torque, 1) == 0)
    assert isinstance(arm.spec.lower, tuple) and not arm.is_connected


def test_out_of_range_targets_are_clamped_to_the_calibrated_range(bus, so101_calibration) -> None:
    emulator, arm_cls = bus
    with arm_cls(emulator.path, calibration=so101_calibration) as arm:
        sent = arm.send_action([9.0, -9.0, 0.0, 0.0, 0.0, 2.0])
        assert sent[0] == arm.spec.upper[0] and sent[1] == arm.spec.lower[1] and sent[5] == 1.0
        goal = arm.table.goal_position
        # servo 1 turns with its joint, servo 2 against it: both limits land on tick 3072
        ends = lambda: [emulator.register(i, goal.address, goal.size) for i in (1, 2)]  # noqa: E731
        wait_for(lambda: ends() == [3072, 3072])


def test_corrupt_checksum_is_an_error_naming_the_servo(bus, so101_calibration) -> None:
    emulator, arm_cls = bus
    with arm_cls(emulator.path, calibration=so101_calibration) as arm:
        good = arm.read_state().positions
        emulator.corrupt_checksum(3)
        with pytest.raises(BusError, match=r"servo 3: corrupt reply") as info:
            arm.read_state()
        assert info.value.servo_id == 3 and info.value.kind == "checksum"
        assert np.array_equal(arm.read_state().positions, good)  # the bus recovers


def test_silent_servo_is_an_error_naming_the_servo(bus, so101_calibration) -> None:
    """Silence and lateness come from the emulator's faults, not from a race with the reply
    timeout: a silent servo never answers, a held reply comes only when released. The timeout
    is generous, so a loaded machine never makes a healthy reply look lost."""
    emulator, arm_cls = bus
    with arm_cls(emulator.path, calibration=so101_calibration, timeout=0.25) as arm:
        good = arm.read_state().positions
        emulator.silence(4, times=1)  # found out when servo 5 answers in its turn
        with pytest.raises(BusError, match=r"servo 4: no reply.*silent servo") as info:
            arm.read_state()
        assert info.value.servo_id == 4 and info.value.kind == "timeout"
        assert np.array_equal(arm.read_state().positions, good)
        emulator.silence(6, times=1)  # the last servo: nobody answers after it
        with pytest.raises(BusError, match=r"servo 6: no reply within 250 ms"):
            arm.read_state()
        emulator.hold(2)  # late, not lost: the late reply is never taken as a new one
        with pytest.raises(BusError, match=r"servo 2: no reply within 250 ms") as info:
            arm.read_state()
        assert info.value.kind == "timeout"
        written = emulator.replies
        emulator.release()
        wait_for(lambda: emulator.replies == written + 5, timeout=30.0)  # servos 2..6, late
        assert np.array_equal(arm.read_state().positions, good)


def test_connect_names_a_missing_or_wrong_servo(so101_calibration) -> None:
    with FeetechEmulator(ids=[1, 2, 3, 5, 6]) as emulator:
        arm = FeetechArm(emulator.path, calibration=so101_calibration, timeout=0.25)
        with pytest.raises(BusError, match="servo 4: no reply"):
            arm.connect()
        assert not arm.is_connected
    with DynamixelEmulator() as emulator:
        arm = DynamixelArm(emulator.path, calibration=so101_calibration, model="xl430-w250")
        with pytest.raises(DriverError, match="servo 1 reports model number 1200, expected 1060"):
            arm.connect()
    with pytest.raises(DriverError, match="did you mean 'sts3215'"):
        FeetechArm("/dev/null", calibration=so101_calibration, model="sts3125")
    with pytest.raises(TransportError, match="cannot open"):
        FeetechArm("/nonexistent/tty", calibration=so101_calibration).connect()


def test_transports_time_out_and_report_a_vanished_device() -> None:
    with FeetechEmulator() as emulator:
        transport = PosixTransport(emulator.path)
        start = time.monotonic()
        assert transport.read(10, 0.02) == b""
        assert time.monotonic() - start >= 0.015
    with pytest.raises(TransportError, match="went away"):
        transport.read(1, 0.1)
    transport.close()
    if importlib.util.find_spec("serial") is None:
        with pytest.raises(TransportError, match=r"pip install 'robopolicy\[hardware\]'"):
            PySerialTransport("/dev/null")


# -- calibration ----------------------------------------------------------------------------------


def test_calibration_round_trips_through_json(tmp_path, so101_calibration) -> None:
    path = tmp_path / "cal" / "so101.json"
    so101_calibration.save(path)
    assert ArmCalibration.load(path) == so101_calibration
    assert json.loads(path.read_text())["joints"]["elbow_flex"]["direction"] == 1
    arm = FeetechArm("/dev/null", calibration=path)
    assert arm.spec.names[0] == "shoulder_pan" and arm.spec.gripper == (0.0, 1.0)
    assert [p.name for p in path.parent.iterdir()] == ["so101.json"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["joints"]["wrist_roll"].update(id=1), "servo ids must be unique"),
        (lambda d: d["joints"]["elbow_flex"].update(direction=0), "direction must be 1 or -1"),
        (lambda d: d["joints"]["elbow_flex"].update(range_max=5000), r"elbow_flex: ticks must lie"),
        (lambda d: d["joints"]["elbow_flex"].update(range_min=4000), "must be below range_max"),
        (lambda d: d["joints"]["elbow_flex"].update(ofset=3), "did you mean 'offset'"),
        (lambda d: d["joints"]["elbow_flex"].update(offset=1.5), "expected int"),
        (lambda d: d.update(format=2), "unsupported calibration format"),
        (lambda d: d["gripper"].update(closed_ticks=2000), "must differ"),
    ],
)
def test_bad_calibration_files_are_refused_with_the_reason(
    tmp_path, so101_calibration, edit, message
) -> None:
    path = tmp_path / "cal.json"
    so101_calibration.save(path)
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=message) as info:
        ArmCalibration.load(path)
    assert str(path) in str(info.value)


def test_unreadable_calibration_files(tmp_path) -> None:
    with pytest.raises(DataError, match="no calibration file"):
        ArmCalibration.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="not a readable JSON"):
        ArmCalibration.load(tmp_path / "bad.json")


@settings(max_examples=200, deadline=None)
@given(
    offset=st.integers(0, 4095),
    direction=st.sampled_from([1, -1]),
    fraction=st.floats(0, 1),
)
def test_ticks_and_radians_round_trip_within_half_a_tick(offset, direction, fraction) -> None:
    cal = ArmCalibration({"j": JointCalibration(1, offset, direction, 100, 4000)})
    lower, upper = cal.limits()
    angle = lower[0] + fraction * (upper[0] - lower[0])
    ticks = cal.to_ticks(np.array([angle]))
    assert 100 <= ticks[0] <= 4000
    assert abs(cal.to_radians(ticks)[0] - angle) <= math.pi / 4096 + 1e-12
    assert cal.gripper is None
    with pytest.raises(ValueError, match="no gripper"):
        cal.gripper_ticks(0.5)
    grip = GripperCalibration(2, open_ticks=3000, closed_ticks=1000)
    assert ArmCalibration({"j": cal.joints["j"]}, grip).gripper_command(2000) == 0.5
