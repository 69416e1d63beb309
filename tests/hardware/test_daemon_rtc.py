"""Real-time chunking in the daemon: each request carries the executing plan's prefix and
``frozen``, the old chunk runs until the new one's first free action is due, boundaries stop
jerking, and with it off everything is as before. On virtual time with a fake policy whose
chunks a sample does not determine, then once over a real ``robopolicy serve``."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hardware.clock import VirtualClock
from hardware.daemon.adapters import JointAdapter, ObsHistory
from hardware.daemon.config import ControlConfig
from hardware.daemon.daemon import Daemon, limits_for
from hardware.daemon.loop import ControlLoop
from hardware.daemon.requester import Requester, real_time_chunking
from hardware.driver import ArmState
from hardware.monitor import InvariantMonitor
from hardware.sim_arm import SimArm
from hardware.testing.chunk_jerk import chunk_jerk
from robopolicy.errors import RobopolicyError
from robopolicy.serve.chunks import Plan, committed_steps
from robopolicy.serve.client import ServerError
from tests.hardware.daemon_helpers import (
    CENTER,
    META,
    PERIOD,
    FakeClient,
    InlineRequester,
    chunk_at,
    wave_reply,
)
from tests.hardware.test_daemon_parts import SPEC, checker

RTC_META = {**META, "horizon": 16, "n_action_steps": 8, "inpaint": True}
"""A joint-space policy that inpaints: To 2, Tp 16, Ta 8 at 10 Hz."""
MARK = 0.03
"""Added to joint 0 of the actions a fake reply was told are committed: never executed."""


class Phases:
    """A fake policy's replies: the wave around ``CENTER`` (0.1 rad at 0.5 Hz on every joint)
    at a phase of its own, drawn anew for each request without a prefix; with one it goes on
    at the previous chunk's phase (as an inpainted chunk continues its prefix) and marks the
    committed actions (``MARK``), which the daemon must replace by its own."""

    def __init__(self, seed: int = 0, horizon: int = 16) -> None:
        self.rng, self.horizon, self.phase = np.random.default_rng(seed), horizon, 0.0
        self.client = FakeClient(self)

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        fields = self.client.fields[-1]
        if "prefix" not in fields:
            self.phase = self.rng.uniform(0, 2 * np.pi)
        t = obs["timestamp"][0, -1] + PERIOD * (np.arange(self.horizon) - 1)
        actions = np.tile(CENTER, (self.horizon, 1))
        actions[:, :6] += 0.1 * np.sin(np.pi * t + self.phase)[:, None]
        if "prefix" in fields:
            actions[: fields["frozen"], 0] += MARK
        return actions[None]


class DelayedRequester(InlineRequester):
    """Asks at once, in the loop's thread, but hands each chunk over ``lag`` seconds after it
    was asked for, as a slow server would; records each hand-over with the plan executed then."""

    lag = 0.0
    handovers: list[tuple[float, Plan, Any]]

    def want(self) -> None:
        self.asked = self.clock.monotonic()
        super().want()

    def poll(self) -> Any:
        if not self.pending() or self.clock.monotonic() < self.asked + self.lag - 1e-9:
            return None
        before = self.executing()
        chunk = super().poll()
        self.handovers.append((self.clock.monotonic(), before, chunk))
        return chunk


@dataclasses.dataclass
class Run:
    rows: list[dict[str, Any]]
    requester: DelayedRequester
    client: FakeClient
    loop: ControlLoop
    monitor: InvariantMonitor

    def column(self, key: str) -> np.ndarray:
        return np.array([row[key] for row in self.rows])

    def jerk(self) -> Any:
        """The run's :func:`~hardware.testing.chunk_jerk.chunk_jerk`."""
        time, commanded = self.column("time"), np.stack(self.column("commanded"))
        return chunk_jerk(time, commanded, self.column("chunk"), PERIOD)


def run_loop(tmp_path: Path, rtc: str, lag: float, meta: dict = RTC_META) -> Run:
    """4 s of the loop on virtual time against :class:`Phases` behind a ``lag``."""
    clock = VirtualClock()
    monitor = InvariantMonitor(SimArm(clock=clock))
    config = ControlConfig(estop_latch_path=str(tmp_path / "estop.json"), rtc=rtc)
    limits = limits_for(monitor.spec, config)
    phases = Phases(horizon=int(meta["horizon"]))
    requester = DelayedRequester.for_policy(
        lambda: phases.client,
        meta,
        JointAdapter(monitor.spec),
        config,
        limits,
        rate_hz=config.rate_hz,
        clock=clock,
    )
    requester.lag, requester.handovers = lag, []
    rows: list[dict[str, Any]] = []
    loop = ControlLoop(
        monitor,
        config,
        limits,
        requester,
        clock=clock,
        checker=requester.checker,
        history=requester.history,
        record=lambda **row: rows.append(row),
    )
    requester.executing = lambda: loop.follower.published  # as the daemon wires it
    monitor.connect()
    assert loop.run(duration=4.0) == "duration"
    return Run(rows, requester, phases.client, loop, monitor)


@pytest.mark.parametrize("lag", [0.0, 0.1, 0.3])
def test_the_old_chunk_runs_until_the_new_one_is_due_and_boundaries_stop_jerking(
    tmp_path: Path, lag: float
) -> None:
    run = run_loop(tmp_path, "on", lag)
    stats = run.loop.stats
    assert stats.chunks_accepted >= 6 and stats.chunks_rejected == 0
    assert stats.command_hold_ticks == 0 and run.monitor.unsafe == 0
    # every request but the first carries the plan's prefix; the delay sets what is frozen
    fields = run.client.fields
    assert fields[0] == {} and all("prefix" in f for f in fields[1:])
    assert {f["frozen"] for f in fields[2:]} == {1 + committed_steps(lag, PERIOD)}
    handover = max(lag, 0.01)  # taken at the next tick at the soonest
    assert run.requester.delay.seconds() == pytest.approx(handover, abs=1e-6)
    time, commanded = run.column("time"), np.stack(run.column("commanded"))
    checked = 0
    for handed, before, chunk in run.requester.handovers[1:]:
        assert chunk.committed == committed_steps(lag, PERIOD)
        handover = chunk.time_of(chunk.committed - 1)  # its last committed tick
        for i in np.flatnonzero((time >= handed - 1e-9) & (time <= handover + 1e-9)):
            np.testing.assert_allclose(commanded[i], before.sample(time[i]), atol=1e-12)
            checked += 1
    assert checked >= 5 * len(run.requester.handovers[1:])  # the old chunk ran on
    with_rtc, without = run.jerk(), run_loop(tmp_path, "off", lag).jerk()
    assert with_rtc.boundaries >= 5 and without.boundaries >= 5
    # the hand-over knot lies on the old chunk's chord, the fake's next action on its wave
    assert with_rtc.boundary_max <= 1.25 * with_rtc.within_max, with_rtc
    assert without.boundary_median > 3 * without.within_max, without


def test_with_rtc_off_requests_and_commands_are_as_without_inpainting(tmp_path: Path) -> None:
    """``rtc=off`` against a server that inpaints runs exactly as ``auto`` against one that
    does not: no request carries a prefix, no chunk has committed actions, the same commands."""
    off = run_loop(tmp_path, "off", 0.1)
    plain = run_loop(tmp_path, "auto", 0.1, {**RTC_META, "inpaint": False})
    for run in (off, plain):
        assert not run.requester.rtc and all(f == {} for f in run.client.fields)
        assert all(chunk.committed == 0 for _, _, chunk in run.requester.handovers)
    assert len(off.rows) == len(plain.rows)
    for key in ("commanded", "safe", "chunk", "flags"):
        np.testing.assert_array_equal(np.stack(off.column(key)), np.stack(plain.column(key)))


def requester(meta: dict, client: FakeClient, rtc: str = "auto") -> tuple[Requester, VirtualClock]:
    """A requester (no thread) whose newest reading was sensed at t = 10."""
    clock = VirtualClock(10.0)
    history = ObsHistory(16)
    for i in range(5):
        history.push(ArmState(CENTER[:6].copy(), 10.0 - 0.04 * (4 - i), gripper=0.5))
    config = ControlConfig(rtc=rtc)
    adapter = JointAdapter(SPEC)
    req = Requester(lambda: client, adapter, history, checker(), config, meta, clock)
    req.reference = lambda: CENTER
    return req, clock


def test_a_request_carries_the_plans_prefix_and_the_delay_sets_frozen() -> None:
    client = FakeClient(wave_reply)
    req, clock = requester({**META, "inpaint": True}, client)
    plan = Plan()
    plan.add(chunk_at(9.75, CENTER, n=8), 9.75)  # knots 9.75 .. 10.45, off the new grid
    req.executing = lambda: plan
    req.delay.add(0.15)  # one hand-over measured: 0.15 s, so 3 actions past the history
    assert req.request_once() == "chunk"
    prefix, frozen = plan.prefix(10.0, 1, 3)
    assert len(prefix) == 6 and frozen == 4  # ticks 9.9 .. 10.4 of the new chunk
    np.testing.assert_allclose(prefix[1], plan.sample(10.0))  # interpolated, not the nearest
    fields = client.fields[0]
    np.testing.assert_array_equal(fields["prefix"], prefix[None].astype(np.float32))
    assert fields["frozen"] == frozen and req.stats["prefix_requests"] == 1
    clock.advance(0.25)
    chunk = req.poll()
    assert chunk is not None and chunk.committed == 3  # the chunk begins at To - 1
    assert req.delay.seconds() == pytest.approx(np.quantile([0.15, 0.25], 0.9))
    req.history.push(ArmState(CENTER[:6].copy(), clock.monotonic(), gripper=0.5))
    req.executing = lambda: Plan()  # nothing planned: no prefix
    assert req.request_once() == "chunk" and client.fields[1] == {}


@dataclasses.dataclass(frozen=True)
class _Named:
    """An adapter as :func:`real_time_chunking` sees it: its name."""

    name: str


def test_rtc_needs_a_server_that_inpaints_and_joint_actions() -> None:
    joint, ee = JointAdapter(SPEC), _Named("ee")
    inpaints = {**META, "inpaint": True}
    assert real_time_chunking("auto", inpaints, joint)
    assert not real_time_chunking("auto", META, joint)
    assert not real_time_chunking("auto", inpaints, ee)
    assert not real_time_chunking("off", inpaints, joint)
    with pytest.raises(RobopolicyError, match="does not inpaint"):
        real_time_chunking("on", META, joint)
    with pytest.raises(RobopolicyError, match="actions are ee"):
        real_time_chunking("on", inpaints, ee)
    with pytest.raises(ValueError, match="rtc must be one of"):
        ControlConfig(rtc="yes")


def test_a_refused_prefix_turns_rtc_off_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    def reply(obs: dict[str, np.ndarray]) -> Any:
        if "prefix" in client.fields[-1]:
            return ServerError("invalid_input", "this server cannot hold a prefix")
        return wave_reply(obs)

    client = FakeClient(reply)
    req, _ = requester({**META, "inpaint": True}, client, rtc="on")
    plan = Plan()
    plan.add(chunk_at(9.75, CENTER, n=8), 9.75)
    req.executing = lambda: plan
    with caplog.at_level(logging.WARNING):
        assert req.request_once() == "server_invalid_input" and not req.pending()
    assert "real-time chunking off" in caplog.text and req.stats["rtc_refused"] == 1
    assert not req.rtc and req.request_once() == "chunk"
    assert client.fields[1] == {} and req.poll().committed == 0


@pytest.mark.slow
def test_the_daemon_sends_prefixes_to_robopolicy_serve(tmp_path: Path) -> None:
    """A tiny trained diffusion policy on the torch backend, 100 ms slow: the daemon's requests
    carry prefixes, the server inpaints them, and every chunk is accepted."""
    from hardware.testing.phase_policy import train_phase_policy
    from hardware.testing.processes import policy_server
    from robopolicy.serve.client import PolicyClient

    checkpoint = train_phase_policy(tmp_path / "phase", steps=300)
    flags = ["--backend", "torch", "--sampler", "ddim", "--steps", "5", "--fps", "10"]
    server = policy_server(checkpoint, *flags, "--delay-ms", "100")
    try:
        config = ControlConfig(estop_latch_path=str(tmp_path / "estop.json"), rtc="on")
        daemon = Daemon(SimArm(), config, lambda: PolicyClient(*server.address))
        result = daemon.run(duration=3.0)
    finally:
        server.stop()
    assert result.reason == "duration", result
    assert result.requests["prefix_requests"] >= 3 and "rtc_refused" not in result.requests
    assert result.stats["chunks_accepted"] >= 4 and result.stats["chunks_rejected"] == 0
    assert result.requests.get("rejected", 0) == 0
    assert daemon.requester is not None
    assert 0.1 <= daemon.requester.delay.seconds() < config.request_timeout_s
