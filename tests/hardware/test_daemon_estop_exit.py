"""The e-stop latch across restarts (R5) and the exit behaviour on every exit path (R6).

Normal exit and exception run in-process on virtual time; SIGINT and SIGTERM go to a real
``robopolicy control`` subprocess driving ``SimArm`` against the fake policy server.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hardware.clock import VirtualClock
from hardware.daemon import ControlConfig, Daemon, EStopLatch, EStopLatched
from hardware.daemon.daemon import limits_for
from hardware.daemon.exit import run_exit_behaviour
from hardware.daemon.log import read_ticks
from hardware.driver import ArmState, DriverWrapper
from hardware.faults import Fault, FaultKind, FaultPlan, FaultyDriver
from hardware.monitor import InvariantMonitor
from hardware.sim_arm import SimArm
from hardware.testing.processes import DaemonProcess, ServerProcess, fake_server
from robopolicy.cli import main as cli
from robopolicy.data.store import EpisodeStore
from tests.hardware.daemon_helpers import (
    CENTER,
    META,
    FakeClient,
    served,
    wait_served,
    wave_reply,
)

PARK = CENTER.copy()
PARK[0] += 0.3


def daemon(tmp_path: Path, driver: Any, clock: VirtualClock, **overrides: Any) -> Daemon:
    settings = {"estop_latch_path": str(tmp_path / "estop.json"), "log_path": None, **overrides}
    client = FakeClient(wave_reply)
    return Daemon(driver, ControlConfig(**settings), lambda: client, clock=clock, metadata=META)


def sim_arm() -> tuple[VirtualClock, SimArm, InvariantMonitor]:
    clock = VirtualClock()
    sim = SimArm(clock=clock)
    return clock, sim, InvariantMonitor(sim)


def released(sim: SimArm) -> bool:
    return bool((sim.model.actuator_gainprm[sim.arm.actuator_index] == 0).all())


def test_the_estop_latch_survives_a_restart_and_clears_only_by_command(tmp_path: Path) -> None:
    clock, _, monitor = sim_arm()
    faulty = FaultyDriver(monitor, FaultPlan((Fault(0.4, FaultKind.ESTOP, 0.2),)))
    result = daemon(tmp_path, faulty, clock).run(duration=2.0)
    latch = EStopLatch(tmp_path / "estop.json")
    assert result.reason == "estop" and latch.is_set() and result.exit["estopped"]
    assert "emergency stop" in latch.read()["reason"] and monitor.unsafe == 0

    for _ in range(2):  # a restarted daemon refuses, and refusing clears nothing
        clock, _, monitor = sim_arm()
        with pytest.raises(EStopLatched, match="clear-estop"):
            daemon(tmp_path, monitor, clock).run(duration=1.0)
        assert not monitor.is_connected and monitor.writes == 0 and latch.is_set()

    latch.path.write_text("{ corrupt")  # a damaged latch still counts as set
    with pytest.raises(EStopLatched):
        daemon(tmp_path, monitor, clock).run(duration=1.0)

    assert cli(["control", "--clear-estop", "--estop-latch", str(latch.path)]) == 0
    assert not latch.is_set()
    assert daemon(tmp_path, monitor, clock).run(duration=1.0).reason == "duration"
    assert monitor.writes > 0 and monitor.unsafe == 0


def test_an_operator_estop_stops_a_running_loop(tmp_path: Path) -> None:
    clock, _, monitor = sim_arm()
    latch_path = tmp_path / "estop.json"

    class Operator(DriverWrapper):  # presses the button half a second in
        def read_state(self) -> ArmState:
            if clock.monotonic() > 0.5 and not latch_path.exists():
                assert cli(["control", "--estop", "--estop-latch", str(latch_path)]) == 0
            return self.inner.read_state()

    result = daemon(tmp_path, Operator(monitor), clock, estop_poll_s=0.05).run(duration=3.0)
    assert result.reason == "estop" and result.stats["ticks"] < 60
    assert EStopLatch(latch_path).read()["source"] == "operator"


@pytest.mark.parametrize("behaviour", ["hold", "park_then_release", "release"])
def test_exit_behaviour_on_a_normal_end(tmp_path: Path, behaviour: str) -> None:
    clock, sim, monitor = sim_arm()
    d = daemon(tmp_path, monitor, clock, exit_behaviour=behaviour, park_position=tuple(PARK))
    report = d.run(duration=1.0).exit
    assert (
        report["behaviour"] == behaviour and report["path"] == "duration" and not report["errors"]
    )
    assert report["held"] == (behaviour == "hold")
    assert report["released"] == released(sim) == (behaviour != "hold")
    if behaviour == "park_then_release":
        assert report["parked"] and abs(sim.arm.joint_positions(sim.data)[0] - PARK[0]) < 0.02
    assert monitor.unsafe == 0


@pytest.mark.parametrize("behaviour", ["hold", "park_then_release", "release"])
def test_exit_behaviour_after_an_exception(tmp_path: Path, behaviour: str) -> None:
    clock, sim, monitor = sim_arm()

    class Broken(DriverWrapper):  # a bug in a driver: not a DriverError
        def read_state(self) -> ArmState:
            if clock.monotonic() > 0.5:
                raise RuntimeError("driver bug")
            return self.inner.read_state()

    log = tmp_path / "ticks.zarr"
    d = daemon(
        tmp_path,
        Broken(monitor),
        clock,
        exit_behaviour=behaviour,
        park_position=tuple(PARK),
        log_path=str(log),
    )
    with pytest.raises(RuntimeError, match="driver bug"):
        d.run(duration=2.0)
    summary = EpisodeStore.open(log).attrs["summary"]
    assert summary["reason"] == "exception: RuntimeError"
    assert summary["exit"]["path"] == "exception: RuntimeError"
    assert released(sim) == (behaviour != "hold") == summary["exit"]["released"]
    if behaviour == "park_then_release":  # the park needs readings: it refuses to move blind
        assert summary["exit"]["parked"] is False and summary["exit"]["errors"]
    assert len(read_ticks(log)["time"]) == summary["log_rows"] > 0


def test_the_park_refuses_to_move_on_a_stale_reading(tmp_path: Path) -> None:
    """R4 on the way out: a park after a silent sensor would move blind; it releases instead."""
    clock, _, monitor = sim_arm()
    frozen = FaultyDriver(monitor, FaultPlan((Fault(0.0, FaultKind.STALE, 100.0),)))
    frozen.connect()
    frozen.read_state()  # the reading that stays
    clock.advance(0.5)
    config = ControlConfig(
        exit_behaviour="park_then_release", estop_latch_path=str(tmp_path / "estop.json")
    )
    report = run_exit_behaviour(
        frozen,
        config,
        limits_for(frozen.spec, config),
        clock,
        filter_state=None,
        park_position=PARK,
        estopped=False,
        path="sensor_timeout",
    )
    assert report["parked"] is False and "too old" in report["errors"][0]
    assert report["released"] and monitor.writes == 0


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    proc = fake_server(CENTER)
    yield proc
    proc.stop()


def run_cli_until_signal(
    tmp_path: Path, server: ServerProcess, sig: signal.Signals, *settings: str
) -> tuple[int, dict]:
    daemon = DaemonProcess(
        [
            "--robot",
            "sim",
            "--json",
            "--server",
            f"{server.host}:{server.port}",
            "--rate",
            "100",
            "--out",
            str(tmp_path / "ticks.zarr"),
            "--estop-latch",
            str(tmp_path / "estop.json"),
            *settings,
        ]
    )
    daemon.wait_running()
    wait_served(server, served(server) + 3)  # moving: the signal comes mid-motion
    daemon.proc.send_signal(sig)
    return daemon.wait(), json.loads(daemon.stdout())


@pytest.mark.parametrize(
    "sig, behaviour",
    [
        (signal.SIGINT, "park_then_release"),
        (signal.SIGTERM, "park_then_release"),
        (signal.SIGTERM, "release"),
        (signal.SIGINT, "hold"),
    ],
)
def test_exit_behaviour_on_sigint_and_sigterm(
    tmp_path: Path, server: ServerProcess, sig: signal.Signals, behaviour: str
) -> None:
    park = "park_position=" + json.dumps([round(float(x), 6) for x in PARK])
    rc, summary = run_cli_until_signal(tmp_path, server, sig, f"exit_behaviour={behaviour}", park)
    report = summary["exit"]
    assert rc == 0 and summary["reason"] == sig.name == report["path"]
    assert report["behaviour"] == behaviour and not report["errors"]
    assert report["released"] == (behaviour != "hold") and report["held"] == (behaviour == "hold")
    assert report["parked"] is (True if behaviour == "park_then_release" else None)
    stored = EpisodeStore.open(tmp_path / "ticks.zarr").attrs["summary"]
    assert stored["exit"] == report and summary["stats"]["chunks_accepted"] > 0
    ticks = read_ticks(tmp_path / "ticks.zarr")
    if behaviour == "park_then_release":  # the park is logged, and it got there
        parking = ticks["mode"] == 4
        assert parking.any() and abs(ticks["measured"][parking][-1, 0] - PARK[0]) < 0.05
