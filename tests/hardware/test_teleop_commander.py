"""From a device to a safe joint command: the IK mapping and the safety filter in the path."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware.clock import VirtualClock
from hardware.driver import ArmState
from hardware.limits import SafetyLimits
from hardware.sim_arm import SimArm, arm6_spec
from hardware.teleop.commander import TeleopCommander
from hardware.teleop.device import (
    DeviceError,
    DeviceReading,
    EndEffectorCommand,
    JointCommand,
    OperatorEvent,
    TeleopDevice,
)
from hardware.teleop.ee_target import EndEffectorConfig, EndEffectorTarget, rotation_matrix
from hardware.teleop.keyboard import KeyboardConfig, KeyboardDevice, KeyQueue
from sim.arm import Arm, tool_down

DT = 0.02


class Scripted(TeleopDevice):
    """Plays back a list of motions (then holds)."""

    def __init__(self, motions: list) -> None:
        self.motions = list(motions)

    def read(self) -> DeviceReading:
        motion = self.motions.pop(0) if self.motions else None
        return DeviceReading(motion, (), 0.0)


@pytest.fixture(scope="module")
def arm6() -> Arm:
    return Arm.load()


def within(action: np.ndarray, limits: SafetyLimits) -> bool:
    lo, hi = limits.arrays["action_lower"], limits.arrays["action_upper"]
    return bool(np.isfinite(action).all() and (action >= lo).all() and (action <= hi).all())


def test_rotation_matrix_is_rodrigues() -> None:
    assert np.allclose(rotation_matrix(np.zeros(3)), np.eye(3))
    assert np.allclose(rotation_matrix(np.array([0, 0, np.pi / 2])) @ [1, 0, 0], [0, 1, 0])
    r = rotation_matrix(np.array([0.3, -0.2, 0.5]))
    assert np.allclose(r @ r.T, np.eye(3)) and np.isclose(np.linalg.det(r), 1.0)


def test_ik_mapping_reaches_the_moved_target(arm6: Arm) -> None:
    target = EndEffectorTarget(arm6, EndEffectorConfig(ik_iterations=30))
    target.reset(arm6.home)
    start, _ = arm6.fk(arm6.home)
    q = target.apply(EndEffectorCommand(np.array([0.03, -0.02, 0.04]), np.zeros(3)), arm6.home)
    reached, rotation = arm6.fk(q)
    assert np.allclose(reached, start + np.array([0.03, -0.02, 0.04]), atol=2e-3)
    assert np.allclose(rotation, tool_down(), atol=2e-2)
    q = target.apply(EndEffectorCommand(np.zeros(3), np.array([0.0, 0.0, 0.3])), q)
    assert np.allclose(arm6.fk(q)[1], tool_down(0.3), atol=3e-2)


def test_an_unreachable_target_does_not_wind_up(arm6: Arm) -> None:
    target = EndEffectorTarget(arm6, EndEffectorConfig(max_error=0.02))
    target.reset(arm6.home)
    q = arm6.home
    for _ in range(20):  # push 2 m out, far beyond the reach
        q = target.apply(EndEffectorCommand(np.array([0.1, 0.0, 0.0]), np.zeros(3)), q)
    assert np.linalg.norm(target.position - arm6.fk(q)[0]) <= 0.02 + 1e-9
    x_out = arm6.fk(q)[0][0]
    q = target.apply(EndEffectorCommand(np.array([-0.05, 0.0, 0.0]), np.zeros(3)), q)
    assert arm6.fk(q)[0][0] < x_out  # coming back moves at once
    nan = EndEffectorCommand(np.array([np.nan, 0.0, 0.0]), np.zeros(3))
    assert np.array_equal(target.apply(nan, q), q)


def test_keyboard_drives_the_sim_arm_through_ik_and_filter() -> None:
    clock = VirtualClock()
    arm = SimArm(clock=clock)
    limits = SafetyLimits.from_spec(arm.spec, max_step=0.05)
    keys = KeyQueue()
    device = KeyboardDevice(KeyboardConfig(step=0.004), source=keys, clock=clock)
    with arm, device:
        commander = TeleopCommander(device, limits, DT, kinematics=arm.arm, fk=arm.ee_position)
        start = arm.ee_position(arm.read_state().positions)
        for _ in range(25):  # 25 presses of w: 10 cm forward
            keys.push("w")
            step = commander.step(arm.read_state())
            assert within(step.action, limits)
            arm.send_action(step.action)
            clock.sleep(DT)
        keys.push("space", "enter")
        step = commander.step(arm.read_state())
        assert step.events == (OperatorEvent.KEEP,) and step.action[-1] == 1.0
        for _ in range(50):  # settle
            arm.send_action(commander.step(arm.read_state()).action)
            clock.sleep(DT)
        moved = arm.ee_position(arm.read_state().positions) - start
    assert moved[0] == pytest.approx(0.1, abs=0.01)
    assert abs(moved[1]) < 0.01 and abs(moved[2]) < 0.01


def test_the_filter_holds_nan_and_limits_jumps(arm6: Arm) -> None:
    limits = SafetyLimits.from_spec(arm6_spec(arm6), max_step=0.02)
    home = np.asarray(arm6.home)
    state = ArmState(home.copy(), 0.0, gripper=0.0)
    far = home + 1.0
    bad = home.copy()
    bad[2] = np.nan
    device = Scripted([JointCommand(far, 0.5), JointCommand(bad), None, JointCommand(far)])
    commander = TeleopCommander(device, limits, DT)
    first = commander.step(state)
    assert np.allclose(first.action[:6] - home, 0.02) and first.report.modified
    assert first.action[6] == 0.5
    held = commander.step(state)
    assert held.report.held and np.array_equal(held.action, first.action)
    hold = commander.step(state)  # no motion: the last safe command again
    assert np.array_equal(hold.action, first.action) and not hold.report.modified
    assert np.allclose(commander.step(state).action[:6] - home, 0.04)


def test_the_workspace_box_stops_an_ee_device(arm6: Arm) -> None:
    sim = SimArm(clock=VirtualClock())
    floor = float(arm6.fk(arm6.home)[0][2]) - 0.01
    limits = SafetyLimits.from_spec(
        sim.spec, max_step=0.05, workspace=((-1.0, -1.0, floor), (1.0, 1.0, 1.0))
    )
    down = [EndEffectorCommand(np.array([0.0, 0.0, -0.005]), np.zeros(3))] * 20
    commander = TeleopCommander(Scripted(down), limits, DT, kinematics=arm6, fk=sim.ee_position)
    state = ArmState(np.asarray(arm6.home), 0.0, gripper=0.0)
    held = 0
    for _ in range(20):
        step = commander.step(state)
        assert sim.ee_position(step.action[:6])[2] >= floor
        held += step.report.held
        state = ArmState(step.action[:6], 0.0, gripper=0.0)
    assert held > 0


def test_mismatched_devices_are_refused(arm6: Arm) -> None:
    limits = SafetyLimits.from_spec(arm6_spec(arm6))
    state = ArmState(np.asarray(arm6.home), 0.0, gripper=0.0)
    five = TeleopCommander(Scripted([JointCommand(np.zeros(5))]), limits, DT)
    with pytest.raises(DeviceError, match="5,"):
        five.step(state)
    ee = EndEffectorCommand(np.zeros(3), np.zeros(3))
    with pytest.raises(DeviceError, match="no kinematics"):
        TeleopCommander(Scripted([ee]), limits, DT).step(state)


KEYS = st.lists(st.sampled_from(["w", "s", "a", "d", "r", "f", "z", "c", "space", "x"]), max_size=4)


@settings(max_examples=25, deadline=None)
@given(presses=st.lists(KEYS, min_size=1, max_size=30), step=st.floats(0.001, 0.2))
def test_no_key_sequence_gets_an_unsafe_command_through(arm6: Arm, presses, step) -> None:
    limits = SafetyLimits.from_spec(arm6_spec(arm6), max_step=0.03, gripper_max_step=0.5)
    keys = KeyQueue()
    device = KeyboardDevice(KeyboardConfig(step=step, yaw_step=step * 5), source=keys)
    commander = TeleopCommander(device, limits, DT, kinematics=arm6)
    state = ArmState(np.asarray(arm6.home), 0.0, gripper=0.0)
    previous = state.as_action()
    for tick in presses:
        keys.push(*tick)
        action = commander.step(state).action
        assert within(action, limits)
        assert np.abs(action[:6] - previous[:6]).max() <= 0.03 + 1e-12
        assert abs(action[6] - previous[6]) <= 0.5 + 1e-12
        previous = action
        state = ArmState(action[:6], 0.0, gripper=float(action[6]))
