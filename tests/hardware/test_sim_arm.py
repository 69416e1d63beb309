"""SimArm behind the driver interface, the clocks, and a sweep of every registered driver."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest

from hardware.clock import SystemClock, VirtualClock
from hardware.driver import (
    Driver,
    DriverError,
    UnsafeCommandError,
    driver_class,
    driver_names,
    make_driver,
)
from hardware.sim_arm import SimArm
from sim.arm import JOINTS, Arm


def test_virtual_clock_moves_only_when_told() -> None:
    clock = VirtualClock(start=5.0)
    clock.sleep(0.25)
    clock.advance(-1.0)
    clock.sleep(float("nan"))
    assert clock.monotonic() == 5.25
    real = SystemClock()
    before = real.monotonic()
    real.sleep(-1.0)
    assert real.monotonic() >= before


def test_spec_is_known_without_a_connection() -> None:
    arm = SimArm()
    model = Arm.load()
    assert not arm.is_connected
    assert arm.spec.names == JOINTS and arm.spec.action_size == 7
    assert np.array_equal(arm.spec.lower, model.lower) and np.array_equal(
        arm.spec.upper, model.upper
    )
    assert np.array_equal(arm.spec.velocity, model.velocity_limits)
    assert arm.spec.gripper == (0.0, 1.0) and arm.spec.units == "rad"
    with pytest.raises(DriverError, match="not connected"):
        arm.read_state()
    with pytest.raises(DriverError, match="not connected"):
        arm.send_action(np.zeros(7))


def test_connect_and_disconnect_are_idempotent() -> None:
    arm = SimArm(clock=VirtualClock())
    arm.disconnect()
    with arm:
        arm.connect()
        assert arm.is_connected
    assert not arm.is_connected
    arm.disconnect()


def test_read_send_track_and_timestamps_on_virtual_time() -> None:
    clock = VirtualClock(start=100.0)
    with SimArm(clock=clock) as arm:
        state = arm.read_state()
        assert state.sensed_at == 100.0 and state.gripper == pytest.approx(0.0)
        assert np.allclose(state.positions, arm.arm.home) and np.allclose(state.velocities, 0)
        target = state.as_action()
        target[0] += 0.4
        target[6] = 1.0
        assert np.array_equal(arm.send_action(target), target)
        stamps = []
        for _ in range(50):
            clock.sleep(0.02)
            stamps.append(arm.read_state().sensed_at)
        assert np.all(np.diff(stamps) > 0) and stamps[-1] == pytest.approx(101.0, abs=0.005)
        final = arm.read_state()
        assert np.allclose(final.positions, target[:6], atol=1e-3)
        assert final.gripper == pytest.approx(1.0, abs=0.01)
        assert arm.steps == pytest.approx(200, abs=1)


def test_driver_clamps_to_limits_and_refuses_non_finite() -> None:
    clock = VirtualClock()
    with SimArm(clock=clock) as arm:
        sent = arm.send_action([10, -10, 0, 0, 0, 0, 3])
        assert np.array_equal(sent, [*arm.spec.upper[:1], arm.spec.lower[1], 0, 0, 0, 0, 1])
        ctrl = arm.data.ctrl.copy()
        for bad in ([np.nan] * 7, [0.0] * 6, "garbage", [0, 0, 0, 0, 0, np.inf, 0]):
            with pytest.raises(UnsafeCommandError):
                arm.send_action(bad)
        assert np.array_equal(arm.data.ctrl, ctrl)  # nothing was written


def test_release_stops_holding_and_the_next_write_holds_again() -> None:
    clock = VirtualClock()
    with SimArm(clock=clock) as arm:
        assert arm.release()
        assert not arm.model.actuator_gainprm[arm.arm.actuator_index, 0].any()
        arm.send_action(arm.read_state().as_action())
        assert arm.model.actuator_gainprm[arm.arm.actuator_index, 0].all()


def test_realtime_thread_steps_without_reads() -> None:
    arm = SimArm(realtime=True)
    arm.connect()
    try:
        time.sleep(0.15)
        assert arm.steps > 5
    finally:
        arm.disconnect()
    assert arm._thread is None


def test_a_large_clock_jump_is_skipped_not_simulated() -> None:
    clock = VirtualClock()
    with SimArm(clock=clock, max_catch_up=0.1) as arm:
        clock.sleep(3600.0)
        state = arm.read_state()
        assert arm.steps == pytest.approx(20, abs=1) and state.sensed_at <= clock.monotonic()


# -- the registry ---------------------------------------------------------------------------------

MINIMAL_KWARGS = {
    "sim": {},
    "ur": {"host": "192.0.2.1"},
    "xarm": {"host": "192.0.2.1"},
}


def test_every_registered_driver_constructs_without_hardware_or_sdk(so101_calibration) -> None:
    assert set(driver_names()) >= {"sim", "feetech", "dynamixel", "ur", "xarm"}
    for name in driver_names():
        kwargs = MINIMAL_KWARGS.get(name, {"port": "/dev/null", "calibration": so101_calibration})
        driver = make_driver(name, **kwargs)
        assert isinstance(driver, Driver) and driver.name == name and not driver.is_connected
        spec = driver.spec
        assert spec.dof == len(spec.names) and spec.action_size == len(spec.action_names)
        assert np.all(np.array(spec.lower) < spec.upper) and np.all(np.array(spec.velocity) > 0)
        driver.disconnect()  # harmless before connecting
    assert "rtde_control" not in sys.modules and "xarm" not in sys.modules


def test_unknown_driver_suggests_a_name() -> None:
    with pytest.raises(DriverError, match="did you mean 'feetech'"):
        driver_class("feetch")
