"""Shared pieces of the daemon tests: a scripted chunk source, wave chunks, a virtual-time rig,
a fake client, a requester without its thread, and a wait on a policy server's progress."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hardware.clock import VirtualClock
from hardware.daemon.adapters import ObsHistory
from hardware.daemon.config import ControlConfig
from hardware.daemon.daemon import limits_for
from hardware.daemon.loop import ControlLoop
from hardware.daemon.requester import Requester
from hardware.driver import Driver
from hardware.faults import FaultPlan, FaultyDriver
from hardware.monitor import InvariantMonitor
from hardware.sim_arm import SimArm
from hardware.testing.processes import ServerProcess
from robopolicy.serve.chunks import Chunk
from robopolicy.serve.client import PolicyClient

PERIOD = 0.1  # seconds between a chunk's actions (a 10 Hz policy)
META: dict[str, Any] = {
    "n_obs_steps": 2,
    "n_action_steps": 4,
    "horizon": 8,
    "action_dim": 7,
    "fps": 10.0,
    "obs": {"state": {"shape": [2, 7], "dtype": "float32"}},
}
"""The metadata of a joint-space policy for the built-in arm (To 2, Tp 8, Ta 4, 10 Hz)."""
CENTER = np.append(SimArm().arm.home, 0.5)
"""The built-in arm's home pose with the gripper half closed."""


def wave(times: np.ndarray, center: np.ndarray, amplitude: float = 0.1) -> np.ndarray:
    """Smooth joint targets (T, Da) around ``center`` at ``times`` (the gripper stays put)."""
    out = np.tile(center, (len(times), 1))
    out[:, :-1] += amplitude * np.sin(2 * np.pi * 0.25 * np.asarray(times)[:, None])
    return out


def chunk_at(due0: float, center: np.ndarray, n: int = 8, seq: int = 1) -> Chunk:
    times = due0 + PERIOD * np.arange(n)
    return Chunk(wave(times, center), due0, PERIOD, seq=seq, execute=4)


class ScriptedSource:
    """Hands the loop chunks: ``queue`` ones at given times, or ``on_want`` when asked."""

    def __init__(self, clock: VirtualClock, on_want: Any = None) -> None:
        self.clock, self.on_want = clock, on_want
        self.timed: list[tuple[float, Chunk]] = []
        self.wants = 0
        self._ready: Chunk | None = None

    def at(self, t: float, chunk: Chunk) -> None:
        self.timed.append((t, chunk))
        self.timed.sort(key=lambda x: x[0])

    def poll(self) -> Chunk | None:
        now = self.clock.monotonic()
        if self.timed and self.timed[0][0] <= now:
            return self.timed.pop(0)[1]
        chunk, self._ready = self._ready, None
        return chunk

    def want(self) -> None:
        self.wants += 1
        if self.on_want is not None:
            self._ready = self.on_want(self.clock.monotonic())

    def pending(self) -> bool:
        return self._ready is not None


@dataclasses.dataclass
class Rig:
    """A loop on virtual time over ``FaultyDriver(InvariantMonitor(SimArm))``."""

    clock: VirtualClock
    sim: SimArm
    monitor: InvariantMonitor
    driver: Driver
    source: ScriptedSource
    loop: ControlLoop
    rows: list[dict[str, Any]]
    config: ControlConfig

    @property
    def center(self) -> np.ndarray:
        return np.append(self.sim.arm.home, 0.0)

    def column(self, key: str, default: float = np.nan) -> np.ndarray:
        return np.array([row.get(key, default) for row in self.rows], dtype=float)

    def vectors(self, key: str) -> np.ndarray:
        """(ticks, Da) of ``key``, NaN where a tick has none (e.g. nothing was sent)."""
        missing = np.full(self.driver.spec.action_size, np.nan)
        return np.array([row.get(key, missing) for row in self.rows], dtype=float)


def make_rig(
    tmp_path: Path, plan: FaultPlan | None = None, on_want: Any = None, **overrides: Any
) -> Rig:
    clock = VirtualClock()
    sim = SimArm(clock=clock)
    monitor = InvariantMonitor(sim)
    driver: Driver = monitor if plan is None else FaultyDriver(monitor, plan)
    settings = {"rate_hz": 100.0, "estop_latch_path": str(tmp_path / "estop.json"), **overrides}
    config = ControlConfig(**settings)
    source = ScriptedSource(clock, on_want)
    rows: list[dict[str, Any]] = []
    loop = ControlLoop(
        driver,
        config,
        limits_for(driver.spec, config),
        source,
        clock=clock,
        history=ObsHistory(64),
        record=lambda **row: rows.append(row),
    )
    driver.connect()
    return Rig(clock, sim, monitor, driver, source, loop, rows, config)


class FakeClient:
    """Answers every ``infer`` with ``reply(obs)``: actions or an exception to raise; the
    reply's info is the protocol's (``info`` overrides it). ``fields`` holds each request's
    real-time chunking fields (``prefix``, ``frozen``; empty without)."""

    def __init__(self, reply: Any, info: dict[str, Any] | None = None) -> None:
        self.reply, self.info, self.calls, self.closed = reply, info or {}, [], 0
        self.fields: list[dict[str, Any]] = []

    def infer(
        self, obs: dict[str, np.ndarray], *, timeout_s: float, **fields: Any
    ) -> tuple[np.ndarray, dict]:
        self.calls.append(obs)
        self.fields.append(fields)
        result = self.reply(obs)
        if isinstance(result, BaseException):
            raise result
        due = obs["timestamp"][:, -1]
        return result, {"start": 1, "period": PERIOD, "due": due, **self.info}

    def close(self) -> None:
        self.closed += 1


class InlineRequester(Requester):
    """The requester without its thread: each ``want`` is answered at once, in the loop's
    thread, so a run on virtual time is deterministic (the loop waits on the client)."""

    def start(self) -> None:
        """Nothing to start."""

    def want(self) -> None:
        super().want()
        self.request_once()


def wave_reply(obs: dict[str, np.ndarray]) -> np.ndarray:
    t = obs["timestamp"][0, -1] + PERIOD * (np.arange(8) - 1)
    return wave(t, CENTER)[None].astype(np.float32)


def served(server: ServerProcess) -> int:
    """Inferences the server has answered (0 while it cannot say: frozen, restarting)."""
    with (
        contextlib.suppress(OSError, TimeoutError, RuntimeError),
        PolicyClient(*server.address, connect_timeout_s=0.5) as client,
    ):
        return int(client.health(timeout_s=0.5)["stats"].get("served", 0))
    return 0


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Wait for ``condition``: progress, not a guess of how long a loaded machine takes
    (``timeout`` only catches a broken daemon)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.02)


def wait_served(server: ServerProcess, count: int) -> None:
    """Wait until ``server`` has answered ``count`` inferences: a daemon's progress."""
    wait_until(lambda: served(server) >= count, f"{count} inferences served")
