"""Intervention mode end to end on the simulated arm, on virtual time: a fake policy server (the
daemon tests' in-process client, answered inline) drives, scripted key presses take over and
hand back. Who drove each frame is recorded tick for tick, the operator's ticks are the
commander's, nothing jumps at a change of driver, chunks from before a hand-back are never
executed, and a server that dies means a hold, a notice and a take-over that still works. Then
``robopolicy teleop --server`` on a pseudo-terminal against the fake server subprocess."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import pty
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from hardware.clock import VirtualClock
from hardware.driver import ArmState
from hardware.faults import Fault, FaultKind, FaultPlan, FaultyDriver
from hardware.monitor import InvariantMonitor
from hardware.recorder import RecorderConfig
from hardware.sim_arm import SimArm
from hardware.teleop.commander import TeleopCommander, TeleopStep
from hardware.teleop.device import DeviceReading
from hardware.teleop.intervention import PolicySource
from hardware.teleop.keyboard import KeyboardDevice
from hardware.teleop.session import SessionResult, TeleopConfig, TeleopSession
from hardware.teleop.view import HeadlessView
from hardware.testing.processes import DaemonProcess, fake_server
from robopolicy.cli import main as cli
from robopolicy.data.store import EpisodeStore
from tests.hardware.daemon_helpers import CENTER, META, PERIOD, FakeClient, InlineRequester, wave
from tests.hardware.teleop_fakes import Script, ScriptedKeys

FPS = 20.0
MAX_STEP = TeleopConfig().max_step
AMPLITUDE = 0.05
"""rad: the fake policy's wave stays within reach of where the operator leaves the arm."""
MARK = 0.9
"""The gripper command of a chunk that must never be executed (the policy's is 0.5)."""


class FakePolicy:
    """The policy server's answers: a slow wave around ``CENTER``; ``dead`` refuses the
    connection, ``marked`` closes the gripper to :data:`MARK`."""

    def __init__(self) -> None:
        self.dead = False
        self.marked = False
        self.client = FakeClient(self.reply)

    def reply(self, obs: dict[str, np.ndarray]) -> np.ndarray | BaseException:
        if self.dead:
            return ConnectionRefusedError("the policy server is gone")
        t = obs["timestamp"][0, -1] + PERIOD * (np.arange(META["horizon"]) - 1)
        actions = wave(t, CENTER, AMPLITUDE)
        if self.marked:
            actions[:, -1] = MARK
        return actions[None].astype(np.float32)


@dataclasses.dataclass
class Run:
    """A session's result, what it printed and recorded, and what the commander proposed."""

    result: SessionResult
    events: list[dict]
    frames: dict[str, np.ndarray]
    polls: np.ndarray
    """The tick (device poll) each frame was recorded on."""
    commanded: dict[int, np.ndarray]
    """The commander's action by tick, on the ticks the operator drove."""
    monitor: InvariantMonitor

    def notices(self) -> list[str]:
        return [e["message"] for e in self.events if e["event"] == "notice"]

    def at(self, poll: int) -> int:
        """The frame recorded on tick ``poll``."""
        return int(np.flatnonzero(self.polls == poll)[0])


def record(
    tmp_path: Path,
    policy: FakePolicy | None,
    script: Callable[[TeleopSession], Script],
    monkeypatch: pytest.MonkeyPatch,
    plan: FaultPlan | None = None,
    **config: object,
) -> Run:
    """One episode (started at once) on a fresh simulated arm (behind ``plan``'s faults), the
    policy answering inline (None: the operator drives alone)."""
    clock = VirtualClock()
    monitor = InvariantMonitor(SimArm(clock=clock))
    keys = ScriptedKeys({})
    stream = io.StringIO()
    source = None if policy is None else PolicySource(lambda: policy.client, META, InlineRequester)
    session = TeleopSession(
        monitor if plan is None else FaultyDriver(monitor, plan),
        KeyboardDevice(source=keys, clock=clock),
        [],
        TeleopConfig(fps=FPS, reset_seconds=0, **config),
        RecorderConfig(tmp_path / "dagger.zarr"),
        view=HeadlessView(stream, every=0.25),
        policy=source,
    )
    keys.script = script(session)
    commanded: dict[int, np.ndarray] = {}
    command = TeleopCommander.command

    def spy(self: TeleopCommander, reading: DeviceReading, state: ArmState) -> TeleopStep:
        step = command(self, reading, state)
        commanded[round(state.sensed_at * FPS)] = step.action.copy()
        return step

    monkeypatch.setattr(TeleopCommander, "command", spy)
    result = session.run()
    store = EpisodeStore.open(tmp_path / "dagger.zarr")
    frames = store.frames(0, store.n_frames)
    polls = np.round(frames["timestamp"] * FPS).astype(int)
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    return Run(result, events, frames, polls, commanded, monitor)


def wave_now(t: np.ndarray) -> np.ndarray:
    """Where the fake policy wants the joints at times ``t``."""
    return wave(t, CENTER, AMPLITUDE)[:, :6]


def test_the_policy_drives_and_the_operator_takes_over_and_hands_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    take, back = 20, 30
    script: Script = {take: ["t"], 22: ["w"], 24: ["w", "a"], back: ["g"]}
    run = record(tmp_path, FakePolicy(), lambda _: script, monkeypatch, episode_seconds=3.0)
    result, frames, polls = run.result, run.frames, run.polls
    assert (result.reason, result.kept, result.frames, result.takeovers) == ("done", [0], 60, 1)
    assert polls.tolist() == list(range(1, 61))  # one frame a tick
    human = (polls >= take) & (polls < back)
    assert frames["intervention"].dtype == np.uint8
    assert frames["intervention"].tolist() == human.astype(int).tolist()  # tick for tick

    action = frames["action"].astype(np.float64)
    for i in np.flatnonzero(human):  # the operator's ticks are the commander's actions ...
        np.testing.assert_allclose(action[i], run.commanded[polls[i]], atol=1e-6)
    assert not set(polls[~human].tolist()) & set(run.commanded)  # ... and only those are
    moved = np.ptp(action[human, :6], axis=0).max()
    assert moved > 0.005  # the key presses moved the arm

    steps = np.abs(np.diff(action[:, :6], axis=0))
    assert steps.max() <= MAX_STEP + 1e-6  # nothing jumps, at a change of driver or elsewhere
    at_take = run.at(take)
    assert np.array_equal(action[at_take], action[at_take - 1])  # no keys yet: it holds there
    at_back = run.at(back)
    assert np.array_equal(action[at_back], action[at_back - 1])  # holds for a fresh chunk

    policy = (~human) & ((polls >= 4) & (polls < take) | (polls >= back + 3))
    t = frames["timestamp"][policy]
    assert np.abs(action[policy, :6] - wave_now(t)).max() < 5e-3  # the policy's plan
    assert result.policy["chunks_accepted"] >= 6 and result.policy["chunks_rejected"] == 0
    assert [e["event"] for e in run.events if e["event"] in ("takeover", "handback")] == [
        "takeover",
        "handback",
    ]
    controls = {e["control"] for e in run.events if e["event"] == "status"}
    assert {"policy", "operator"} <= controls
    assert run.monitor.unsafe == 0


def test_chunks_asked_for_before_a_change_of_driver_are_never_executed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reply that lands as the operator takes over, and one that lands as they hand back,
    both carry a closed gripper: neither is executed, and the policy resumes with a chunk
    asked for after the hand-back."""
    policy = FakePolicy()

    def script(session: TeleopSession) -> Script:
        def delivered(keys: list[str]) -> Callable[[], list[str]]:
            def press() -> list[str]:
                assert session.intervention is not None
                requester = session.intervention.requester
                policy.marked = True
                assert requester.request_once() == "chunk" and requester.pending()
                policy.marked = False
                return keys

            return press

        return {20: delivered(["t"]), 27: delivered(["g"])}

    run = record(tmp_path, policy, script, monkeypatch, episode_seconds=2.5)
    gripper = run.frames["action"][:, -1]
    assert gripper.max() == pytest.approx(0.5)  # the marked chunks never reached the arm
    after = run.polls >= 30
    assert (run.frames["intervention"][after] == 0).all()
    t = run.frames["timestamp"][after]
    action = run.frames["action"][after, :6].astype(np.float64)
    assert np.abs(action - wave_now(t)).max() < 5e-3  # fresh chunks drive again
    assert run.monitor.unsafe == 0


def test_a_dead_server_means_a_hold_a_notice_and_a_take_over_still_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = FakePolicy()

    def switch(dead: bool, keys: list[str]) -> Callable[[], list[str]]:
        def press() -> list[str]:
            policy.dead = dead
            return keys

        return press

    take, back = 60, 75
    script: Script = {
        10: switch(True, []),  # the server dies at 0.5 s
        take: ["t"],  # 3.0 s: after the hold (T1) and the policy's stop (T2)
        62: ["w"],
        64: ["w"],
        70: switch(False, []),  # it is back at 3.5 s
        back: ["g"],
    }
    run = record(tmp_path, policy, lambda _: script, monkeypatch, episode_seconds=5.0)
    result, frames, polls = run.result, run.frames, run.polls
    assert (result.reason, result.kept, result.takeovers) == ("done", [0], 1)
    human = (polls >= take) & (polls < back)
    assert frames["intervention"].tolist() == human.astype(int).tolist()

    late, stopped = run.notices()[:2]
    assert late.startswith("policy late (last request: connection_errors): the arm holds")
    assert stopped.startswith("policy stopped (command_timeout")
    order = [e["event"] for e in run.events if e["event"] in ("notice", "takeover")]
    assert order[:3] == ["notice", "notice", "takeover"]  # told before the operator acted
    action = frames["action"].astype(np.float64)
    holding = (polls >= 30) & (polls < take)  # the last chunk ran out by 1.2 s
    assert np.ptp(action[holding], axis=0).max() == 0.0  # a hold is a hold
    assert result.policy["command_hold_ticks"] > 0
    assert result.policy["requests"]["connection_errors"] > 0
    controls = [e["control"] for e in run.events if e["event"] == "status"]
    assert {"holding", "stopped", "operator"} <= set(controls)

    for i in np.flatnonzero(human):  # the operator drives the held arm
        np.testing.assert_allclose(action[i], run.commanded[polls[i]], atol=1e-6)
    assert np.ptp(action[human, :6], axis=0).max() > 0.005
    resumed = polls >= back + 5  # handed back to a live server: the policy drives again
    t = frames["timestamp"][resumed]
    assert np.abs(action[resumed, :6] - wave_now(t)).max() < 5e-3
    assert np.abs(np.diff(action[:, :6], axis=0)).max() <= MAX_STEP + 1e-6
    assert run.monitor.unsafe == 0


@pytest.mark.parametrize("driven", ["policy", "operator"])
def test_nothing_is_written_until_a_reading_is_finite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, driven: str
) -> None:
    """Blind from the start (NaN joints for 0.2 s), neither driver has anything to hold at: no
    command reaches the arm (not the middle of the joint ranges), then it starts where it is."""
    policy = FakePolicy() if driven == "policy" else None
    plan = FaultPlan((Fault(0.0, FaultKind.NAN_STATE, 0.2),))
    run = record(tmp_path, policy, lambda _: {}, monkeypatch, plan, episode_seconds=1.0)
    assert run.result.skipped == {"arm": 4} and run.monitor.unsafe == 0
    blind = "arm: the reading is not finite, nothing written"
    told = ["no usable reading: the arm holds", "policy: chunks again"] if policy else []
    notices, expected = run.notices(), [blind, *told]
    assert len(notices) == len(expected)
    assert all(n.startswith(m) for n, m in zip(notices, expected, strict=True)), notices
    assert run.polls[0] == 4 and run.monitor.writes == len(run.polls)
    home = SimArm().arm.home
    assert np.abs(run.frames["action"][0, :6] - home).max() < 1e-6  # held where it was


@pytest.mark.parametrize(
    "args, message",
    [
        (["--server", "localhost"], "--server must be HOST:PORT"),
        (["policy.max_step=0.1"], "policy.max_step is the control daemon's own"),
        (["policy.stop_timeout=2"], "did you mean 'stop_timeout_s'"),
        (
            ["--server", "127.0.0.1:9", "policy.first_chunk_timeout_s=0.3"],
            "no policy server answered",
        ),
    ],
    ids=["bad-address", "daemon-field", "typo", "no-server"],
)
def test_teleop_refuses_a_policy_it_cannot_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    """One ``error:`` line, exit status 2, and nothing connected or created."""
    out = tmp_path / "never.zarr"
    assert cli(["teleop", "--out", str(out), "--headless", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def wait_for_line(run: DaemonProcess, match: Callable[[dict], bool], what: str) -> dict:
    """The first JSON event line on ``run``'s stderr that ``match``es, once printed."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for line in run.stderr().splitlines():
            if line.startswith("{") and match(json.loads(line)):
                return json.loads(line)
        assert run.proc.poll() is None, f"teleop exited early: {run.stderr()[-3000:]}"
        time.sleep(0.05)
    raise AssertionError(f"no {what}: {run.stderr()[-3000:]}")


def event(name: str, **fields: object) -> Callable[[dict], bool]:
    """Matches the event ``name`` whose ``fields`` have these values."""
    return lambda e: e["event"] == name and all(e.get(k) == v for k, v in fields.items())


@pytest.mark.slow
def test_the_command_takes_over_from_a_policy_server_and_survives_its_death(
    tmp_path: Path,
) -> None:
    out = tmp_path / "cli.zarr"
    server = fake_server(CENTER, "--amplitude", str(AMPLITUDE))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["--robot", "sim", "--device", "keyboard", "--server", f"{server.host}:{server.port}"]
    args += ["--out", str(out), "--fps", "20", "--episodes", "1", "--episode-seconds", "60"]
    args += ["--headless", "--json", "reset_seconds=0"]
    master, terminal = pty.openpty()  # the keyboard reads the terminal the command runs in
    run = DaemonProcess(args, env=env, command="teleop", stdin=terminal)
    try:
        wait_for_line(run, event("status", control="policy"), "the policy driving")
        os.write(master, b"t")
        wait_for_line(run, event("takeover", takeovers=1), "take-over")
        os.write(master, b"ww")
        os.write(master, b"g")
        wait_for_line(run, event("handback"), "hand-back")
        server.kill()
        notice = wait_for_line(
            run, lambda e: e["event"] == "notice" and "policy late" in e["message"], "notice"
        )
        assert "connection" in notice["message"] or "timeouts" in notice["message"]
        os.write(master, b"t")  # the operator takes the held arm
        wait_for_line(run, event("takeover", takeovers=2), "second take-over")
        os.write(master, b"ww\r")  # drive it, then keep the episode: the session is done
        assert run.wait(60) == 0, run.stderr()[-3000:]
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
        server.stop()
        os.close(master)
        os.close(terminal)
    summary = json.loads(run.stdout())
    assert (summary["reason"], summary["kept"], summary["takeovers"]) == ("done", [0], 2)
    assert summary["policy"]["chunks_accepted"] > 0
    flags = EpisodeStore.open(out).episode(0)["intervention"]
    assert flags[0] == 0 and flags[-1] == 1  # the policy began, the operator ended
    switches = np.flatnonzero(np.diff(flags.astype(int)))
    assert len(switches) == 3  # took over, handed back, took over
