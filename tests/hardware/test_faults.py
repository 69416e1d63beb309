"""Seeded fault injection and the invariant monitor, on SimArm and virtual time."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hardware.clock import VirtualClock
from hardware.driver import DriverError, EStopError, UnsafeCommandError
from hardware.faults import Fault, FaultKind, FaultPlan, FaultyDriver
from hardware.monitor import InvariantMonitor
from hardware.safety import FilterState, SafetyLimits, filter_command
from hardware.sim_arm import SimArm

TICK = 0.01


def faulty_sim(plan: FaultPlan) -> tuple[VirtualClock, FaultyDriver, InvariantMonitor]:
    clock = VirtualClock()
    monitor = InvariantMonitor(SimArm(clock=clock))
    return clock, FaultyDriver(monitor, plan), monitor


def run(driver: FaultyDriver, clock: VirtualClock, seconds: float) -> list[tuple]:
    """Read and write every tick: (t, sensed_at, positions, write outcome, estopped, writes)."""
    trace = []
    target = None
    while driver.elapsed < seconds - 1e-9:
        state = driver.read_state()
        if target is None:
            target = driver.inner.inner.read_state().as_action()
        try:
            driver.send_action(target)
            outcome = "ok"
        except EStopError:
            outcome = "estop"
        except DriverError:
            outcome = "error"
        writes = driver.inner.writes  # the monitor below the faults: what reached the arm
        row = (round(driver.elapsed, 6), state.sensed_at, state.positions.copy(), outcome)
        trace.append((*row, state.estopped, writes))
        clock.sleep(TICK)
    return trace


def window(trace: list[tuple], start: float, duration: float) -> list[tuple]:
    return [row for row in trace if start <= row[0] < start + duration]


PLAN = FaultPlan(
    (
        Fault(0.10, FaultKind.STALE, 0.05),
        Fault(0.20, FaultKind.NAN_STATE, 0.05, joint=2),
        Fault(0.30, FaultKind.LATENCY, 0.05, magnitude=0.02),
        Fault(0.40, FaultKind.DROP_WRITES, 0.05),
        Fault(0.50, FaultKind.WRITE_ERROR, 0.05),
        Fault(0.60, FaultKind.ENCODER_JUMP, 0.05, magnitude=0.3, joint=1),
        Fault(0.70, FaultKind.ESTOP, 0.05),
    )
)


def test_each_fault_class_is_injected_as_planned() -> None:
    clock, driver, monitor = faulty_sim(PLAN)
    driver.connect()
    trace = run(driver, clock, 0.9)
    assert dict(driver.injected) == {kind: 1 for kind in FaultKind} and not driver.missed()

    stale = window(trace, 0.10, 0.05)
    assert len({row[1] for row in stale}) == 1  # timestamps stopped advancing
    assert window(trace, 0.16, 0.02)[0][1] > stale[0][1]

    nan = window(trace, 0.20, 0.05)
    assert all(np.isnan(row[2][2]) and np.isfinite(np.delete(row[2], 2)).all() for row in nan)

    slow = window(trace, 0.30, 0.05)  # each read and write costs 20 ms more: ticks 50 ms apart
    assert np.allclose(np.diff([row[0] for row in slow]), TICK + 0.04)

    dropped = window(trace, 0.40, 0.05)
    assert all(row[3] == "ok" for row in dropped)  # the caller believes they were sent...
    assert len({row[5] for row in dropped}) == 1  # ...but none reached the arm
    assert all(row[3] == "error" for row in window(trace, 0.50, 0.05))

    jump = window(trace, 0.60, 0.05)
    normal = window(trace, 0.56, 0.03)[-1]
    assert all(abs(row[2][1] - normal[2][1] - 0.3) < 0.01 for row in jump)

    stop = window(trace, 0.70, 0.05)
    assert all(row[4] and row[3] == "estop" for row in stop)
    assert not any(row[4] for row in window(trace, 0.76, 0.1))
    assert monitor.writes == sum(row[3] == "ok" for row in trace) - len(dropped)
    assert monitor.unsafe == 0
    kinds = {entry[1] for entry in driver.log}
    assert kinds == {str(kind) for kind in FaultKind}


def test_latency_makes_readings_old() -> None:
    plan = FaultPlan((Fault(0.0, FaultKind.LATENCY, 1.0, magnitude=0.03),))
    clock, driver, _ = faulty_sim(plan)
    with driver:
        state = driver.read_state()
        assert clock.monotonic() - state.sensed_at == pytest.approx(0.03)


def test_random_plans_are_seeded_and_round_trip_through_json() -> None:
    a = FaultPlan.random(7, horizon=10.0, per_kind=5)
    assert a == FaultPlan.random(7, horizon=10.0, per_kind=5)
    assert a != FaultPlan.random(8, horizon=10.0, per_kind=5)
    assert len(a.faults) == 5 * len(FaultKind)
    assert [f.at for f in a.faults] == sorted(f.at for f in a.faults)
    assert FaultPlan.from_dict(json.loads(json.dumps(a.to_dict()))) == a


def test_same_seed_same_run() -> None:
    plan = FaultPlan.random(3, horizon=0.5, per_kind=2, duration=(0.02, 0.08))
    traces = []
    for _ in range(2):
        clock, driver, _ = faulty_sim(plan)
        driver.connect()
        traces.append((run(driver, clock, 0.6), list(driver.log), dict(driver.injected)))
    (t1, log1, inj1), (t2, log2, inj2) = traces
    assert log1 == log2 and inj1 == inj2 and len(t1) == len(t2)
    assert all(np.array_equal(a[2], b[2], equal_nan=True) for a, b in zip(t1, t2, strict=True))


def test_fault_validation() -> None:
    with pytest.raises(ValueError):
        Fault(0.0, FaultKind.STALE, 0.0)
    with pytest.raises(ValueError):
        Fault(0.0, "not-a-fault", 1.0)


# -- the invariant monitor ------------------------------------------------------------------------


def test_monitor_counts_unsafe_commands_that_reach_the_write() -> None:
    clock = VirtualClock()
    monitor = InvariantMonitor(SimArm(clock=clock))
    with monitor:
        home = monitor.read_state().as_action()
        monitor.send_action(home)
        assert (monitor.writes, monitor.unsafe) == (1, 0)
        with pytest.raises(UnsafeCommandError):
            monitor.send_action(np.full(7, np.nan))
        monitor.send_action(home + np.array([10, 0, 0, 0, 0, 0, 0]))  # the arm clamps it
        with pytest.raises(UnsafeCommandError):
            monitor.send_action(home[:3])
        assert (monitor.writes, monitor.unsafe) == (4, 3)
        assert "non-finite" in monitor.violations[0] and "shoulder_pan" in monitor.violations[1]


def test_filter_then_monitor_emits_no_unsafe_command_under_faults() -> None:
    """R1 end to end: garbage commands and faulty state, filtered, never reach the arm unsafe."""
    plan = FaultPlan.random(11, horizon=2.0, per_kind=3, duration=(0.02, 0.2))
    clock, driver, monitor = faulty_sim(plan)
    arm: SimArm = driver.inner.inner
    limits = SafetyLimits.from_spec(
        arm.spec,
        max_step=0.05,
        max_acceleration=50.0,
        workspace=((-0.7, -0.7, 0.02), (0.7, 0.7, 0.9)),
    )
    rng = np.random.default_rng(0)
    driver.connect()
    state = FilterState.from_arm(driver.read_state())
    while driver.elapsed < 2.0:
        reading = driver.read_state()
        state = FilterState(reading.as_action(), state.last_command, state.last_velocity)
        command = reading.as_action() + rng.normal(0, 0.3, 7)
        command[rng.random(7) < 0.05] = rng.choice([np.nan, np.inf, -np.inf, 1e308])
        safe, report = filter_command(command, state, limits, TICK, fk=arm.ee_position)
        if report.reference_ok:
            try:
                driver.send_action(safe)
                state = state.after(safe, report)
            except DriverError:
                pass
        clock.sleep(TICK)
    assert sum(driver.injected.values()) >= 15
    assert monitor.writes > 100 and monitor.unsafe == 0
