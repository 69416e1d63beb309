"""The leader arm on the real servo-bus driver code against the pty emulators, mirrored onto a
follower through the safety filter."""

from __future__ import annotations

import numpy as np
import pytest

from hardware.emulators import DynamixelEmulator, FeetechEmulator
from hardware.limits import SafetyLimits
from hardware.servo_arm import DynamixelArm, FeetechArm
from hardware.teleop.commander import TeleopCommander
from hardware.teleop.device import JointCommand, OperatorEvent
from hardware.teleop.keyboard import KeyboardDevice, KeyQueue
from hardware.teleop.leader import LeaderArm, LeaderArmConfig
from hardware.teleop.with_events import WithEvents
from hardware.transport import PosixTransport
from tests.hardware.teleop_fakes import wait_for

PROTOCOLS = [
    pytest.param((FeetechEmulator, FeetechArm), id="feetech"),
    pytest.param((DynamixelEmulator, DynamixelArm), id="dynamixel"),
]


def move_by_hand(emulator, ticks: dict[int, int]) -> None:
    """The operator moves the unpowered leader: its servos now read ``ticks``."""
    with emulator._lock:
        for servo_id, value in ticks.items():
            emulator.servos[servo_id].position = float(value)


def torque_off(emulator, arm) -> bool:
    address = arm.table.torque_enable.address
    return all(emulator.register(i, address, 1) == 0 for i in emulator.servos)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_leader_reads_joint_angles_through_its_calibration(protocol, so101_calibration) -> None:
    emulator_cls, arm_cls = protocol
    with emulator_cls(ids=range(1, 7)) as emulator:
        transport = PosixTransport(emulator.path)
        driver = arm_cls(calibration=so101_calibration, transport=transport)
        try:
            with LeaderArm(driver=driver) as leader:
                wait_for(lambda: torque_off(emulator, driver))  # free to move by hand
                ticks = {1: 2300, 2: 1800, 3: 2900, 4: 1500, 5: 2048, 6: 2300}
                move_by_hand(emulator, ticks)
                reading = leader.read()
            assert isinstance(reading.motion, JointCommand) and reading.events == ()
            expected = so101_calibration.to_radians([ticks[i] for i in range(1, 6)])
            assert np.allclose(reading.motion.positions, expected)
            assert reading.motion.gripper == pytest.approx(0.5)  # halfway from 2000 to 2600
            assert not driver.is_connected
        finally:
            transport.close()


def test_leader_maps_onto_a_different_follower(so101_calibration) -> None:
    config = LeaderArmConfig(
        scale=(1.0, -1.0, 1.0, 1.0, 2.0),
        offset=(0.1, 0.0, 0.0, -0.2, 0.0),
        gripper_range=(0.2, 0.8),
    )
    with FeetechEmulator(ids=range(1, 7)) as emulator:
        transport = PosixTransport(emulator.path)
        driver = FeetechArm(calibration=so101_calibration, transport=transport)
        try:
            with LeaderArm(config, driver=driver) as leader:
                wait_for(lambda: torque_off(emulator, driver))
                move_by_hand(emulator, {1: 2148, 2: 2158, 6: 2120})
                raw = driver.read_state()
                motion = leader.read().motion
        finally:
            transport.close()
    assert np.allclose(motion.positions, np.array(config.scale) * raw.positions + config.offset)
    assert motion.gripper == pytest.approx(0.0)  # 0.2 on the leader is the follower's open
    with pytest.raises(ValueError, match="3 values"):
        LeaderArm(LeaderArmConfig(scale=(1.0, 1.0, 1.0)), driver=driver)
    with pytest.raises(ValueError, match="gripper_range"):
        LeaderArmConfig(gripper_range=(0.5, 0.5))


def test_follower_mirrors_the_leader_through_the_safety_filter(so101_calibration) -> None:
    with FeetechEmulator(ids=range(1, 7)) as lead_bus, FeetechEmulator(ids=range(1, 7)) as arm_bus:
        lead_t, arm_t = PosixTransport(lead_bus.path), PosixTransport(arm_bus.path)
        leader_driver = FeetechArm(calibration=so101_calibration, transport=lead_t)
        follower = FeetechArm(calibration=so101_calibration, transport=arm_t)
        keys = KeyQueue()
        device = WithEvents(LeaderArm(driver=leader_driver), KeyboardDevice(source=keys))
        limits = SafetyLimits.from_spec(follower.spec, max_step=0.05)
        try:
            with follower, device:
                wait_for(lambda: torque_off(lead_bus, leader_driver))
                target_ticks = {1: 2548, 2: 1758, 3: 2348, 4: 2048, 5: 2048, 6: 2600}
                move_by_hand(lead_bus, target_ticks)
                commander = TeleopCommander(device, limits, dt=0.02)
                state = follower.read_state()
                steps = []
                for _ in range(40):
                    step = commander.step(state)
                    steps.append(step)
                    follower.send_action(step.action)
                    state = follower.read_state()
                keys.push("enter")
                assert commander.step(state).events == (OperatorEvent.KEEP,)
                goal = so101_calibration.to_radians([target_ticks[i] for i in range(1, 6)])
        finally:
            lead_t.close()
            arm_t.close()
    actions = np.array([s.action for s in steps])
    assert np.abs(np.diff(actions[:, :5], axis=0)).max() <= 0.05 + 1e-9  # never a jump
    assert steps[0].report.modified  # the first ticks were clipped by the filter
    assert np.allclose(actions[-1, :5], goal) and actions[-1, 5] == pytest.approx(1.0)
