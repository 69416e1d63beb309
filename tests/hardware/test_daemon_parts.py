"""The daemon's parts on their own: config, chunk checks, follower, requester, adapters, mirror,
log."""

from __future__ import annotations

import dataclasses
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hardware.clock import VirtualClock
from hardware.daemon.adapters import AdapterError, EEAdapter, JointAdapter, ObsHistory, make_adapter
from hardware.daemon.chunks import ChunkChecker
from hardware.daemon.config import ControlConfig
from hardware.daemon.daemon import limits_for
from hardware.daemon.follower import PlanFollower
from hardware.daemon.log import TickLog, read_ticks
from hardware.daemon.mirror import MirroredSim
from hardware.daemon.requester import Requester
from hardware.daemon.status import LoopStats, Window
from hardware.driver import ArmState, DriverError, EStopError
from hardware.faults import FaultKind
from hardware.monitor import InvariantMonitor
from hardware.sim_arm import SimArm, arm6_spec
from hardware.testing.fault_switch import FaultSwitch
from hardware.testing.scorecard import unsafe_writes
from hardware.ur_arm import ur_spec
from robopolicy.config import ConfigError, apply_overrides
from robopolicy.serve.chunks import Chunk, Plan, PlanConfig
from robopolicy.serve.client import ServerError
from tests.hardware.daemon_helpers import (
    CENTER,
    META,
    PERIOD,
    FakeClient,
    ScriptedSource,
    wait_until,
    wave,
    wave_reply,
)

SPEC = arm6_spec()


def test_config_validates_every_field() -> None:
    ControlConfig(rate_hz=500.0, sensor_max_age_s=0.01)
    for bad in (
        {"rate_hz": 20.0},
        {"rate_hz": 1000.0},
        {"command_timeout_s": 1.0, "stop_timeout_s": 0.5},
        {"sensor_max_age_s": 0.001},
        {"exit_behaviour": "explode"},
        {"interpolation": "cubic"},
        {"velocity_scale": 0.0},
        {"chunk_lead_s": -1.0},
        {"workspace_lower": (0.0, 0.0, 0.0)},
        {"park_position": (float("nan"),)},
    ):
        with pytest.raises(ValueError):
            ControlConfig(**bad)
    config = apply_overrides(ControlConfig(), ["exit_behaviour=release", "rate_hz=250"])
    assert config.exit_behaviour == "release" and config.rate_hz == 250.0
    with pytest.raises(ConfigError, match="did you mean 'stop_timeout_s'"):
        apply_overrides(ControlConfig(), ["stop_timeout=1"])


def checker() -> ChunkChecker:
    return ChunkChecker(limits_for(SPEC, ControlConfig()), 0.01)


def test_a_chunk_leaving_the_limits_is_rejected_whole_not_clipped() -> None:
    times = np.arange(8) * PERIOD
    good = Chunk(wave(times, CENTER), times[0], PERIOD, seq=1)
    assert checker().check(good)
    for where, value, stage in ((3, np.nan, "nonfinite"), (5, 9.0, "position")):
        actions = good.actions.copy()
        actions[where, 2] = value
        verdict = checker().check(dataclasses.replace(good, actions=actions))
        assert not verdict and verdict.step == where and verdict.limit == stage
        assert verdict.joint == "elbow" and "step" in verdict.reason
    jump = good.actions.copy()
    jump[4:, 0] += 1.0  # inside the joint range, but 1 rad in 0.1 s is 10 rad/s
    verdict = checker().check(dataclasses.replace(good, actions=jump))
    assert not verdict and verdict.step == 4 and verdict.limit in ("step", "velocity")
    far = checker().check_bridge(CENTER, CENTER + 0.8, 0.02, PERIOD)
    near = checker().check_bridge(CENTER, CENTER + 0.05, 0.02, PERIOD)
    assert not far and near


def test_a_chunk_accepted_mid_plan_continues_it_without_repeating_a_command() -> None:
    clock, tick = VirtualClock(10.0), 0.01
    source = ScriptedSource(clock)
    follower = PlanFollower(ControlConfig(), source, checker())
    follower.start(10.0)
    times = 10.0 + np.arange(8) * PERIOD
    source.at(10.0, Chunk(wave(times, CENTER), times[0], PERIOD, seq=1))
    # the next chunk of the same motion, arriving at tick 25, its first action due between ticks
    later = 10.25 + 0.5 * tick + np.arange(8) * PERIOD
    source.at(10.245, Chunk(wave(later, CENTER), later[0], PERIOD, seq=2))
    last, targets = None, []
    for _ in range(40):
        now = clock.monotonic()
        reading = ArmState(CENTER[:6].copy(), now, gripper=0.5)
        step = follower.step(reading, CENTER, now, last)
        assert step.target is not None and not step.holding
        targets.append(last := step.target)
        clock.advance(tick)
    assert follower.plan.seq == 2
    moves = np.abs(np.diff(np.array(targets)[:, 0]))
    assert moves[20:35].min() > 0.2 * moves[20:35].max()  # no tick stands still at the switch
    assert np.allclose(targets[25], wave(np.array([10.25]), CENTER)[0], atol=1e-3)


def requester(
    reply: Any, info: dict[str, Any] | None = None
) -> tuple[Requester, FakeClient, VirtualClock]:
    clock = VirtualClock(10.0)
    history = ObsHistory(16)
    for i in range(5):
        history.push(ArmState(CENTER[:6].copy(), 10.0 - 0.04 * (4 - i), gripper=0.5))
    client = FakeClient(reply, info)
    config = ControlConfig()
    req = Requester(
        lambda: client, JointAdapter(SPEC), history, checker(), config, META, clock, lambda: CENTER
    )
    return req, client, clock


def test_the_requester_delivers_checked_chunks_with_due_times() -> None:
    req, client, _ = requester(wave_reply)
    assert req.request_once() == "chunk" and req.pending()
    obs = client.calls[0]
    assert obs["state"].shape == (1, 2, 7) and obs["state"].dtype == np.float32
    assert obs["timestamp"][0].tolist() == pytest.approx([9.88, 10.0])  # one period apart
    chunk = req.poll()
    assert chunk is not None and not req.pending() and req.poll() is None
    assert chunk.actions.shape == (7, 7)  # Tp - start
    assert chunk.times == pytest.approx(10.0 + PERIOD * np.arange(7))
    plan = Plan(PlanConfig(lead=ControlConfig().chunk_lead_s))
    plan.add(chunk, 10.0)
    assert plan.replan_at == pytest.approx(10.0 + 4 * PERIOD - 0.25)


@pytest.mark.parametrize(
    "poison, outcome",
    [
        (lambda a: a.__setitem__((0, 3, 1), np.nan), "rejected"),
        (lambda a: a.__setitem__((0, 5, 0), 50.0), "rejected"),
        (lambda a: a.__setitem__((0, slice(4, None), 0), a[0, 4:, 0] + 1.0), "rejected"),
    ],
    ids=["nan", "out_of_range", "jump"],
)
def test_the_daemon_rejects_bad_chunks_itself(poison: Any, outcome: str) -> None:
    """A fake client hands over what a broken server or link might: the daemon's own check."""

    def bad(obs: dict[str, np.ndarray]) -> np.ndarray:
        actions = wave_reply(obs)
        poison(actions)
        return actions

    req, _, _ = requester(bad)
    assert req.request_once() == outcome and not req.pending()
    assert req.stats["rejected"] == 1 and req.rejections


@pytest.mark.parametrize(
    "info, reply, why",
    [
        ({"start": 3}, wave_reply, "start 3, expected To - 1 = 1"),
        ({"due": np.array([20.0])}, wave_reply, "is not the observation's time"),
        ({"period": 1e6}, wave_reply, "the policy's is 0.1 s"),
        ({}, lambda obs: wave_reply(obs)[:, :6], r"expected \(1, 8, Da\)"),
    ],
    ids=["start", "due", "period", "horizon"],
)
def test_replies_with_the_wrong_timing_are_rejected(info: dict, reply: Any, why: str) -> None:
    """A damaged or inconsistent reply would shift the plan in time (early actions, or a plan
    that never runs out and so never asks again): it is rejected, naming the field."""
    req, _, _ = requester(reply, info)
    assert req.request_once() == "rejected" and not req.pending()
    assert re.search(why, req.rejections[-1])


def test_failed_requests_are_counted_and_never_deliver() -> None:
    errors = iter(
        [TimeoutError(), ConnectionError(), ServerError("internal", "x"), np.zeros((1, 8, 3))]
    )
    req, _, _ = requester(lambda obs: next(errors))
    outcomes = [req.request_once() for _ in range(4)]
    assert outcomes == ["timeouts", "connection_errors", "server_internal", "rejected"]
    assert not req.pending()


def test_a_flush_drops_the_chunk_waiting_and_the_reply_in_flight() -> None:
    """What was asked for before a flush is never delivered after it (intervention mode flushes
    when the operator takes over and hands back)."""
    sent, release = threading.Event(), threading.Event()

    def slow(obs: dict[str, np.ndarray]) -> np.ndarray:
        sent.set()
        assert release.wait(10)
        return wave_reply(obs)

    req, _, _ = requester(wave_reply)
    assert req.request_once() == "chunk" and req.pending()
    req.flush()  # a chunk waiting
    assert not req.pending() and req.poll() is None
    req, client, _ = requester(slow)
    req.start()
    try:
        req.want()
        assert sent.wait(10)  # the request is in flight
        req.flush()
        release.set()
        wait_until(lambda: req.stats["stale"] == 1, "the stale reply", timeout=10)
        assert not req.pending() and req.stats["chunks"] == 0 and len(client.calls) == 1
        req.want()  # asked for after the flush: delivered
        wait_until(req.pending, "a fresh chunk", timeout=10)
    finally:
        req.stop()
    assert req.poll() is not None and [o for _, o in req.outcomes] == ["stale", "chunk"]


def test_no_request_without_a_fresh_reading() -> None:
    req, client, clock = requester(wave_reply)
    clock.advance(1.0)  # the newest reading is now a second old
    assert req.request_once() == "no_observation" and not client.calls


def test_adapters_map_policy_io_to_joints() -> None:
    config = ControlConfig()
    assert isinstance(make_adapter(META, SPEC, config), JointAdapter)
    ee_meta = {**META, "action_dim": 2, "obs": {"state": {"shape": [2, 3], "dtype": "float32"}}}
    adapter = make_adapter(ee_meta, SPEC, config)
    assert isinstance(adapter, EEAdapter)
    home = SimArm().arm.home
    obs = adapter.observation([ArmState(home, 0.0, gripper=0.0)] * 2)["state"]
    assert obs.shape == (2, 3) and obs[0] == pytest.approx([0.32, 0.0, 0.2], abs=1e-3)
    arm = adapter.arm
    pushing = arm.ik(np.array([0.33, 0.0, config.ee_height]), adapter.rotation, home, iterations=50)
    targets = np.array([[0.335, 0.003], [0.34, 0.005], [5.0, 5.0]])  # the last: off the table
    joints = adapter.to_joint(targets, pushing)
    assert joints.shape == (3, 7) and np.isfinite(joints).all() and (joints[:, 6] == 1.0).all()
    ee = np.array([arm.fk(q)[0] for q in joints[:, :6]])
    assert ee[1] == pytest.approx([0.34, 0.005, config.ee_height], abs=2e-3)  # IK got there
    steps = np.linalg.norm(np.diff(ee, axis=0), axis=1)
    assert steps[-1] <= config.ee_max_step + 2e-3  # a far target is approached step by step
    descending = adapter.to_joint(targets[:1], home)  # from 0.2 m up: 2 cm at a time
    assert arm.fk(descending[0, :6])[0][2] == pytest.approx(0.2 - config.ee_max_step, abs=3e-3)
    with pytest.raises(AdapterError, match="built-in arm"):
        make_adapter(ee_meta, ur_spec(), config)
    with pytest.raises(AdapterError, match="'state' observation only"):
        make_adapter({**META, "obs": {"image.front": {}}}, SPEC, config)


def test_history_picks_readings_one_policy_period_apart() -> None:
    history = ObsHistory(100)
    assert history.window(2, 0.1, 0.0, 0.05) is None
    for i in range(30):
        history.push(ArmState(np.zeros(6), 0.01 * i))
    picked = history.window(3, 0.1, 0.3, 0.05)
    assert [s.sensed_at for s in picked] == pytest.approx([0.09, 0.19, 0.29])
    assert history.window(2, 0.1, 0.5, 0.05) is None  # the newest is 0.21 s old


def test_dry_run_mirrors_the_real_limits(so101_calibration: Any) -> None:
    from hardware.servo_arm import FeetechArm

    for spec in (FeetechArm(calibration=so101_calibration).spec, ur_spec()):
        clock = VirtualClock()
        with MirroredSim(spec, clock=clock) as arm:
            assert arm.spec == spec
            state = arm.read_state()
            assert state.positions.shape == (spec.dof,)
            assert (state.positions >= spec.lower).all() and (state.positions <= spec.upper).all()
            target = np.array(spec.lower) + 0.6 * (np.array(spec.upper) - np.array(spec.lower))
            action = np.append(target, 0.5) if spec.gripper else target
            assert np.allclose(arm.send_action(action), action)
            clock.sleep(2.0)
            reached = arm.read_state().positions
            assert (
                np.abs(reached - target)[: arm.shared].max()
                < 0.05 * np.ptp([spec.lower, spec.upper], axis=0).max()
            )


def test_tick_log_commits_segments_and_a_summary(tmp_path: Path) -> None:
    log = TickLog(
        tmp_path / "ticks.zarr",
        rate_hz=100.0,
        action_names=SPEC.action_names,
        joint_names=SPEC.names,
        segment=10,
    )
    for i in range(25):
        log.record(time=i * 0.01, measured=CENTER, sent=CENTER if i % 2 else None, flags=i, mode=0)
    log.close(summary={"reason": "duration"})
    ticks = read_ticks(tmp_path / "ticks.zarr")
    assert len(ticks["time"]) == 25 and ticks["flags"].tolist() == list(range(25))
    assert np.isnan(ticks["sent"][0]).all() and np.allclose(ticks["sent"][1], CENTER)
    assert (ticks["chunk"] == -1).all()
    from robopolicy.data.store import EpisodeStore

    store = EpisodeStore.open(tmp_path / "ticks.zarr")
    assert store.n_episodes == 3 and store.attrs["summary"] == {"reason": "duration"}
    assert store.fps == 100.0


def test_the_lateness_window_keeps_the_latest_ticks_in_order() -> None:
    window = Window(4)
    for x in range(6):
        window.append(float(x))
    assert window.values().tolist() == [2.0, 3.0, 4.0, 5.0]
    stats = LoopStats()
    assert np.isnan(stats.jitter()["p99"])
    for x in (0.001, 0.002, 0.010):
        stats.lateness.append(x)
    assert stats.jitter()["max"] == 0.010 and stats.jitter()["p50"] == 0.002


def test_the_fault_switch_injects_driver_faults_on_command() -> None:
    clock = VirtualClock()
    monitor = InvariantMonitor(SimArm(clock=clock))
    with FaultSwitch(monitor) as arm:
        first = arm.read_state()
        arm.switch("stale")
        clock.advance(0.1)
        assert arm.read_state() is first  # frozen: the sensing time stops
        arm.switch(FaultKind.WRITE_ERROR)
        with pytest.raises(DriverError, match="switched write failure"):
            arm.send_action(CENTER)
        arm.switch(FaultKind.NAN_STATE)
        blind = arm.read_state()
        assert np.isnan(blind.positions).all() and np.isnan(blind.velocities).all()
        arm.switch(FaultKind.ESTOP)
        assert arm.read_state().estopped
        with pytest.raises(EStopError):
            arm.send_action(CENTER)
        assert monitor.writes == 0
        clock.advance(0.05)
        assert arm.switch(None) == clock.monotonic() == pytest.approx(0.15)  # when it took effect
        arm.send_action(CENTER)
        assert monitor.writes == 1 and not arm.read_state().estopped
        assert arm.read_state().sensed_at == pytest.approx(0.15, abs=0.003)
        with pytest.raises(ValueError, match="cannot be switched"):
            arm.switch("latency")
    assert dict(arm.injected) == {"stale": 1, "write_error": 1, "nan_state": 1, "estop": 1}


def test_unsafe_writes_are_counted_from_a_tick_log() -> None:
    """The scorecard's unsafe commands: every row that wrote, its command and what was sent."""
    limits = limits_for(SPEC, ControlConfig())
    n = 6
    safe = np.tile(CENTER, (n, 1))
    safe[1, 0] = np.nan  # a non-finite command handed to the driver
    safe[2, 2] = limits.upper[2] + 0.1  # beyond a joint limit
    safe[3, 6] = 1.5  # beyond the gripper's range
    safe[5, 0] = np.nan  # ... but this row never wrote: not a command emitted
    sent = safe.copy()
    sent[1] = sent[5] = np.nan
    sent[4, 1] = limits.lower[1] - 0.1  # the driver reports writing outside the limits
    write_time = np.arange(n, dtype=float)
    write_time[5] = np.nan
    ticks = {"safe": safe, "sent": sent, "write_time": write_time}
    assert unsafe_writes(ticks, limits) == (5, 4)
    assert unsafe_writes({k: v[[0]] for k, v in ticks.items()}, limits) == (1, 0)
