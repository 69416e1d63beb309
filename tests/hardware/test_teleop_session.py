"""The teleop session end to end on the simulated arm and cameras, on virtual time, driven by
scripted key presses: episodes committed whole with the recorded keys, discard and re-record,
Ctrl-C / SIGTERM mid-episode, resume, the recording accepted by ``robopolicy train``, replay in
simulation (R17), and the ``robopolicy teleop`` command on a pseudo-terminal."""

from __future__ import annotations

import errno
import io
import json
import os
import pty
import signal
from pathlib import Path

import numpy as np
import pytest

from hardware.cameras.camera import Camera, CameraConfig, Frame, StaleFrameError
from hardware.cameras.sim import SimCamera, SimCameraConfig
from hardware.clock import VirtualClock
from hardware.daemon.config import default_latch_path
from hardware.daemon.estop import EStopLatch, EStopLatched
from hardware.recorder import EpisodeWriter, RecorderConfig, RecordingError
from hardware.sim_arm import SimArm, arm6_spec
from hardware.teleop.keyboard import KeyboardConfig, KeyboardDevice
from hardware.teleop.replay import replay_episode
from hardware.teleop.session import SessionResult, TeleopConfig, TeleopSession
from hardware.teleop.view import HeadlessView
from hardware.testing.processes import DaemonProcess
from robopolicy.cli import main as cli
from robopolicy.data.store import EpisodeStore
from tests.hardware.teleop_fakes import Script, ScriptedKeys

FPS = 20.0


def record(
    path: Path, script: Script, cameras: tuple[str, ...] = (), fps: float = FPS, **config: object
) -> tuple[SessionResult, list[dict]]:
    """Run a session on a fresh simulated arm; its result and the JSON events it printed."""
    clock = VirtualClock()
    arm = SimArm(clock=clock)
    keys = ScriptedKeys(script)
    device = KeyboardDevice(KeyboardConfig(step=0.01), source=keys, clock=clock)
    views = [SimCamera(SimCameraConfig(v, height=24, width=32, view=v), arm=arm) for v in cameras]
    stream = io.StringIO()
    session = TeleopSession(
        arm,
        device,
        views,
        TeleopConfig(fps=fps, **config),
        RecorderConfig(path, task="reach"),
        view=HeadlessView(stream),
    )
    result = session.run()
    return result, [json.loads(line) for line in stream.getvalue().splitlines()]


def episode_events(events: list[dict]) -> list[tuple[str, int]]:
    return [(e["event"], e["episode"]) for e in events if e["event"].startswith("episode_")]


@pytest.fixture(scope="module")
def two_episodes(gl, tmp_path_factory) -> tuple[Path, SessionResult, list[dict]]:
    """Two 10-frame episodes with two cameras, the arm moved by key presses."""
    path = tmp_path_factory.mktemp("teleop") / "demos.zarr"
    script: Script = {3: ["w", "w", "w"], 6: ["r", "space"], 12: ["a", "a"], 15: ["s"]}
    result, events = record(
        path, script, ("overview", "wrist"), episodes=2, episode_seconds=0.5, reset_seconds=0
    )
    return path, result, events


def test_episodes_are_committed_with_the_recorded_keys(two_episodes) -> None:
    path, result, events = two_episodes
    assert (result.reason, result.kept, result.frames, result.discarded) == ("done", [0, 1], 20, 0)
    assert result.first_episode == 0 and result.skipped == {} and result.missed_ticks == 0
    store = EpisodeStore.open(path)
    assert store.episode_lengths.tolist() == [10, 10] and store.fps == FPS
    assert store.episode_meta("episode_number").tolist() == [0, 1]
    assert store.attrs["tasks"] == ["reach"]
    shapes = {key: (store.spec(key).shape, store.spec(key).dtype) for key in store.keys}
    assert shapes == {
        "state": ((7,), np.dtype("float32")),
        "action": ((7,), np.dtype("float32")),
        "velocity": ((6,), np.dtype("float32")),
        "timestamp": ((), np.dtype("float64")),
        "intervention": ((), np.dtype("uint8")),
        "image.overview": ((24, 32, 3), np.dtype("uint8")),
        "image.wrist": ((24, 32, 3), np.dtype("uint8")),
    }
    frames = store.frames(0, store.n_frames)
    assert np.allclose(np.diff(frames["timestamp"]), 1 / FPS)  # one frame a tick, no gaps
    assert (frames["intervention"] == 1).all()  # without a policy the operator drives throughout
    assert np.ptp(frames["state"][:, :6], axis=0).max() > 0.02  # the keys moved the arm
    assert frames["action"][-1, 6] == 1.0  # the space bar closed the gripper
    spec = arm6_spec()
    assert (frames["action"][:, :6] >= np.float32(spec.lower)).all()
    assert (frames["action"][:, :6] <= np.float32(spec.upper)).all()
    assert frames["image.overview"].std() > 0  # something was rendered
    assert episode_events(events) == [
        ("episode_started", 0),
        ("episode_kept", 0),
        ("episode_started", 1),
        ("episode_kept", 1),
    ]
    assert events[0]["event"] == "running" and events[-1]["event"] == "stopped"
    status = [e for e in events if e["event"] == "status"]
    assert status and status[0]["cameras"] == {
        "image.overview": [24, 32, 3],
        "image.wrist": [24, 32, 3],
    }


def test_discard_and_rerecord_use_the_number_again(tmp_path: Path) -> None:
    script: Script = {
        2: ["enter"],  # start episode 0: frames at polls 3..6
        6: ["backspace"],  # ...discarded
        8: ["enter"],  # start again: polls 9..12
        12: ["b"],  # re-recorded from poll 13: kept after 10 frames (poll 22)
        25: ["enter"],  # start episode 1: polls 26..28
        28: ["enter"],  # ...kept
    }
    result, events = record(tmp_path / "r.zarr", script, episodes=2, episode_seconds=0.5)
    assert (result.kept, result.discarded, result.frames) == ([0, 1], 2, 13)
    store = EpisodeStore.open(tmp_path / "r.zarr")
    assert store.episode_lengths.tolist() == [10, 3]
    assert store.episode(0)["timestamp"][0] == pytest.approx(13 / FPS)
    assert episode_events(events) == [
        ("episode_started", 0),
        ("episode_discarded", 0),
        ("episode_started", 0),
        ("episode_discarded", 0),
        ("episode_started", 0),
        ("episode_kept", 0),
        ("episode_started", 1),
        ("episode_kept", 1),
    ]
    discarded = [e for e in events if e["event"] == "episode_discarded"]
    assert [e["frames"] for e in discarded] == [4, 4]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_episode_keeps_the_committed_ones(tmp_path: Path, signum: int) -> None:
    previous = signal.getsignal(signum)
    script: Script = {13: lambda: os.kill(os.getpid(), signum)}  # in episode 2 (polls 11..15)
    result, events = record(
        tmp_path / "s.zarr", script, episodes=5, episode_seconds=0.25, reset_seconds=0
    )
    assert result.reason == signal.Signals(signum).name
    assert (result.kept, result.discarded) == ([0, 1], 1)
    assert EpisodeStore.open(tmp_path / "s.zarr").episode_lengths.tolist() == [5, 5]
    assert episode_events(events)[-1] == ("episode_discarded", 2)
    assert signal.getsignal(signum) is previous  # the handlers are restored


def test_quit_ends_the_session_and_resume_continues_the_numbering(tmp_path: Path) -> None:
    path = tmp_path / "q.zarr"
    first, _ = record(path, {}, episodes=1, episode_seconds=0.2, reset_seconds=0)
    second, events = record(path, {6: ["escape"]}, episodes=3, episode_seconds=0.2, reset_seconds=0)
    assert first.kept == [0] and events[0]["next"] == 1
    assert (second.reason, second.first_episode, second.kept, second.discarded) == (
        "quit",
        1,
        [1],
        1,
    )
    assert EpisodeStore.open(path).episode_meta("episode_number").tolist() == [0, 1]
    with pytest.raises(RecordingError, match="fps 20 -> 10"):
        record(path, {}, fps=10.0, reset_seconds=0)


def test_the_estop_latch_stops_a_session_and_a_set_latch_refuses_one(tmp_path: Path) -> None:
    """Set from outside mid-episode (``robopolicy control --estop``), the latch ends the session
    within a poll, nothing more is written and the episode in flight is not kept; while it is
    set, the next session does not start (R5)."""
    latch = EStopLatch(default_latch_path())  # this test's own (tests/hardware/conftest.py)
    path = tmp_path / "e.zarr"
    script: Script = {12: lambda: latch.set("operator", source="test")}  # episode 2: polls 11..15
    result, events = record(path, script, episodes=3, episode_seconds=0.25, reset_seconds=0)
    assert result.reason == "estop" and result.kept == [0, 1] and result.discarded == 1
    assert any("e-stop" in e.get("message", "") for e in events if e["event"] == "notice")
    assert result.ticks <= 12 + 1 + round(0.1 * FPS)  # seen within one poll of 0.1 s
    assert EpisodeStore.open(path).episode_lengths.tolist() == [5, 5]
    with pytest.raises(EStopLatched):
        record(path, {}, reset_seconds=0)
    assert EpisodeStore.open(path).episode_lengths.tolist() == [5, 5]


class FlakyCamera(Camera):
    """8x8 black frames; the reads numbered in ``fail`` raise a stale-frame error."""

    def __init__(self, clock: VirtualClock, fail: set[int]) -> None:
        super().__init__(CameraConfig("flaky", height=8, width=8), clock)
        self.fail, self.reads = fail, 0

    def _connect(self) -> None: ...

    def _disconnect(self) -> None: ...

    def _latest(self) -> Frame:
        self.reads += 1
        if self.reads - 1 in self.fail:
            raise StaleFrameError("camera flaky: frozen")
        return Frame(np.zeros((8, 8, 3), np.uint8), self.clock.monotonic(), self.reads)


def test_failed_readings_and_a_full_disk_cost_frames_not_the_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = {"frames": 0}
    add = EpisodeWriter.add

    def full_once(self: EpisodeWriter, frame: dict) -> None:
        written["frames"] += 1
        if written["frames"] == 13:  # episode 0 had 7 frames: the sixth of episode 1
            raise OSError(errno.ENOSPC, "No space left on device")
        add(self, frame)

    monkeypatch.setattr(EpisodeWriter, "add", full_once)
    clock = VirtualClock()
    camera = FlakyCamera(clock, fail={3, 4, 7})  # in episode 0 (reads 1..10)
    device = KeyboardDevice(source=ScriptedKeys({}), clock=clock)
    config = TeleopConfig(fps=FPS, episodes=2, episode_seconds=0.5, reset_seconds=0)
    stream = io.StringIO()
    recorder = RecorderConfig(tmp_path / "f.zarr")
    session = TeleopSession(
        SimArm(clock=clock), device, [camera], config, recorder, view=HeadlessView(stream)
    )
    result = session.run()
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert (result.kept, result.discarded, result.skipped) == ([0, 1], 1, {"camera": 3})
    assert EpisodeStore.open(tmp_path / "f.zarr").episode_lengths.tolist() == [7, 10]
    notices = [e["message"] for e in events if e["event"] == "notice"]
    assert len(notices) == 3 and "frozen" in notices[0] and "frozen" in notices[1]
    assert "disk is full" in notices[2]
    (discarded,) = [e for e in events if e["event"] == "episode_discarded"]
    assert discarded["episode"] == 1 and "disk is full" in discarded["reason"]


@pytest.mark.slow
def test_robopolicy_train_accepts_the_recording(two_episodes, tmp_path: Path, capsys) -> None:
    path, _, _ = two_episodes
    small = ["max_steps=2", "policy.denoiser.hidden_dims=[8,8,8]", "batch_size=4"]
    args = ["train", "--task", "arm-push", "--data", str(path), "--out", str(tmp_path / "run")]
    assert cli([*args, "--no-eval", "--json", *small]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["step"] == 2 and summary["latest"].endswith("step-0000002")


REPLAY_TOLERANCE = 1e-4
"""rad, on every joint at every frame. On virtual time a session writes each action at the
time its frame was sensed, which is what the replay assumes; what is left is what a recording
does not hold exactly: states and actions stored as float32 (~1e-7 rad) and the arm's full
physics state at the first frame (finger positions and velocities, the solver's warm start),
rebuilt from the recorded joints, gripper and joint velocities. Replays of 20-50 Hz sessions
land within 5e-6 rad, starting at rest or in motion."""


def test_replaying_an_episode_reproduces_its_recorded_states(tmp_path: Path) -> None:
    path = tmp_path / "replay.zarr"
    moves = ["w", "w", "r", "a", "z", "s", "f", "d", "d", "c"]
    script: Script = {3 + 2 * i: [key] * 2 for i, key in enumerate(moves)}
    record(path, script, episodes=2, episode_seconds=0.6, reset_seconds=0)
    store = EpisodeStore.open(path)
    for index in range(2):  # episode 1 starts with the arm in motion
        state = store.episode(index)["state"]
        assert np.ptp(state[:, :6], axis=0).max() > 0.01
        report = replay_episode(path, index)
        assert report.compared == len(state) - 1
        assert report.max_error < REPLAY_TOLERANCE, report


@pytest.mark.slow
def test_the_command_records_from_the_terminal_and_stops_on_ctrl_c(gl, tmp_path: Path) -> None:
    out = tmp_path / "cli.zarr"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["--robot", "sim", "--device", "keyboard", "--out", str(out), "--fps", "20"]
    args += ["--cameras", "overview,hand=wrist", "--camera-size", "24x32", "--headless"]
    args += ["--task", "reach", "--json", "reset_seconds=0"]
    master, terminal = pty.openpty()  # the keyboard reads the terminal the command runs in
    runs: list[DaemonProcess] = []
    try:
        two = [*args, "--episodes", "2", "--episode-seconds", "1"]
        run = DaemonProcess(two, env=env, command="teleop", stdin=terminal)
        runs.append(run)
        run.event("episode_started")
        os.write(master, b"wwwrr ")
        assert run.wait(120) == 0, run.stderr()[-3000:]
        summary = json.loads(run.stdout())
        assert (summary["reason"], summary["kept"], summary["frames"]) == ("done", [0, 1], 40)

        more = [*args, "--episodes", "5", "--episode-seconds", "60"]
        again = DaemonProcess(more, env=env, command="teleop", stdin=terminal)
        runs.append(again)
        assert again.event("running")["next"] == 2
        again.event("episode_started")
        os.write(master, b"\r")  # enter: episode 2 is kept, episode 3 starts
        again.event("episode_kept")
        again.proc.send_signal(signal.SIGINT)  # episode 3 is in flight
        assert again.wait(60) == 0, again.stderr()[-3000:]
        summary = json.loads(again.stdout())
    finally:
        for process in runs:
            if process.proc.poll() is None:
                process.proc.kill()
        os.close(master)
        os.close(terminal)
    assert (summary["reason"], summary["kept"], summary["first_episode"]) == ("SIGINT", [2], 2)
    store = EpisodeStore.open(out)
    assert store.episode_meta("episode_number").tolist() == [0, 1, 2]
    assert store.episode_lengths.tolist()[:2] == [20, 20] and store.episode_lengths[2] >= 1
    assert {"image.overview", "image.hand", "state", "action"} <= set(store.keys)
    state = store.frames(0, store.n_frames)["state"]
    assert np.ptp(state[:, :6], axis=0).max() > 0.01  # the typed keys moved the arm
