"""The fault-injection campaign (``docs/RELIABILITY.md``): the control daemon, the policy
server and a director as three processes on loopback, every fault class injected in turn, and
a :class:`~hardware.testing.scorecard.Scorecard` at the end.

    python -m hardware.testing.campaign [--sessions 5] [--seed 7] [--out card.json] [--json]

One **session** is one daemon started as a user starts it — ``python -m robopolicy control
--robot sim ...``, its ``SimArm`` in its own process — against the torch-free wave policy behind
the real ``PolicyServer`` in another, reached through a
:class:`~hardware.testing.fault_proxy.FaultProxy`. This process directs: it switches the
server's faults, the proxy's, and, through the test-only fault channel
(:mod:`hardware.testing.fault_channel`, on only because the campaign sets
``ROBOPOLICY_TESTING_FAULT_CHANNEL=1`` for the daemon), the driver faults inside the daemon's
process. Once the first chunk runs, the :class:`~hardware.testing.director.Director` injects
each fault class once, in a seeded order; after each it waits until the daemon executes a
fresh chunk again (*survived*; not within ``RECOVERY`` s: not survived), lets it run healthy
for ``GAP`` s, and goes on. Pacing follows recovery, not a schedule, so a loaded machine makes
the campaign longer, not flaky. Last, the e-stop is pressed mid-motion; it is survived when the
daemon ended with the e-stop's exit status at the first tick that saw it, a restarted daemon
refuses to start while the latch is set (and writes no tick log), and the operator's
``robopolicy control --clear-estop`` clears the latch the daemon set.

Bad replies are counted where they are made (the server's emission counts, the proxy's
counters) and where they are refused (an error reply from the server, a reply the client could
not use, a chunk the daemon rejected). A reply the proxy damaged is followed to its own outcome,
so one that passed every check (a flipped bit in a field the daemon does not use, a value still
within limits) is reported as ``passed``, not hidden.

Harm is read from what the daemon recorded and did, not from objects in this process: every
write in its tick log is checked against the arm's limits (unsafe commands), consecutive writes
against the step and speed bounds, planned targets against the joint limits, the rows the
daemon says it logged against the rows committed, and a daemon that ends other than by a run's
exit statuses (0, 3, 4) is a crash. Every harm count must be zero.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from hardware.commands import TESTING_FAULT_CHANNEL
from hardware.daemon import ControlConfig, Flag, Mode
from hardware.daemon.daemon import limits_for
from hardware.daemon.exit import EXIT_MODE
from hardware.daemon.log import read_ticks
from hardware.sim_arm import arm6_spec
from hardware.testing.director import FAULTS, RECOVERY, Director
from hardware.testing.fault_channel import ChannelClient
from hardware.testing.fault_proxy import FaultProxy
from hardware.testing.processes import DaemonProcess, ServerProcess, fake_server
from hardware.testing.scorecard import Scorecard, unsafe_writes, violations
from robopolicy.atomic import atomic_write_json
from robopolicy.cli import main as robopolicy
from robopolicy.data.store import EpisodeStore
from sim.arm import Arm

OVERRIDES = {"stop_timeout_s": 5.0, "request_timeout_s": 0.3, "log_segment_s": 5.0}
"""The daemons' settings beyond the defaults (``key=value`` on their command line): T2 above a
server restart on a loaded machine (hold, not stop), a short request deadline, 5 s segments."""
RUN_EXIT_STATUSES = (0, 3, 4)
"""``robopolicy control``'s exit statuses after a run (ended, latched stop, e-stop); any other
ending is a crash."""


class Campaign:
    """The server, the proxy, the sessions' daemons and the scorecard (module docstring)."""

    def __init__(self, workdir: Path, *, seed: int = 7) -> None:
        self.workdir, self.rng = Path(workdir), random.Random(seed)
        self.center = np.append(Arm.load().home, 0.5)
        self.control = self.workdir / "control.json"
        self.mode()
        self.server = self.start_server()
        self.proxy = FaultProxy(self.server.address, seed=seed)
        self.host, self.port = self.proxy.start()
        self.card = Scorecard()
        self.latch = self.workdir / "estop.json"
        self.config = ControlConfig(rate_hz=100.0, estop_latch_path=str(self.latch), **OVERRIDES)
        """The daemons' settings, as they parse them from their command line."""
        self._sessions = 0
        self._started = time.monotonic()

    # -- the run ------------------------------------------------------------------------------

    def run(self, sessions: int) -> Scorecard:
        """``sessions`` daemon runs (module docstring); the scorecard of all of them."""
        for _ in range(sessions):
            self.session()
        return self.card

    def session(self) -> None:
        index = self._sessions
        self._sessions += 1
        order = list(FAULTS)
        self.rng.shuffle(order)
        log_path = self._session_log(index)
        env = {**os.environ, TESTING_FAULT_CHANNEL: "1"}
        daemon = DaemonProcess(self.daemon_args(log_path, 60.0 + RECOVERY * len(order)), env=env)
        pressed = None
        try:
            try:
                channel = ChannelClient(daemon.event("fault_channel")["port"])
                daemon.wait_running()
            except (RuntimeError, TimeoutError, OSError):
                self.card.daemon_crashes += 1
                raise
            try:
                pressed = Director(self, daemon, channel, index).run(order)
            finally:
                channel.close()
            restarted = None if pressed is None else self.restart(index)
            code = daemon.wait(RECOVERY + 60.0)
        finally:
            if daemon.proc.poll() is None:  # only a hung daemon gets here
                daemon.proc.kill()
                daemon.wait()
        self._score(daemon, code, index, pressed, restarted)

    def restart(self, index: int) -> DaemonProcess | None:
        """Once the e-stop latch is on disk, ``robopolicy control`` started again as an operator
        (or a supervisor) would — no fault channel — while the stopped daemon shuts down; None
        when no latch appears."""
        deadline = time.monotonic() + RECOVERY
        while not self.latch.exists():
            if time.monotonic() > deadline:
                return None
            time.sleep(0.02)
        return DaemonProcess(self.daemon_args(self._restart_log(index), 1.0))

    def _session_log(self, index: int) -> Path:
        return self.workdir / f"session{index}.zarr"

    def _restart_log(self, index: int) -> Path:
        return self.workdir / f"restart{index}.zarr"

    def daemon_args(self, log_path: Path, duration: float) -> list[str]:
        """``robopolicy control`` arguments for a run against the proxy with :attr:`config`."""
        return [
            "--robot",
            "sim",
            "--server",
            f"{self.host}:{self.port}",
            "--json",
            "--rate",
            f"{self.config.rate_hz:g}",
            "--duration",
            f"{duration:g}",
            "--out",
            str(log_path),
            "--estop-latch",
            str(self.latch),
            *(f"{key}={value}" for key, value in OVERRIDES.items()),
        ]

    def start_server(self) -> ServerProcess:
        """A fresh fake policy server reading the campaign's control file."""
        return fake_server(self.center, control=self.control)

    def mode(self, **faults: Any) -> None:
        """Switch the fake servers' faults (none: healthy)."""
        atomic_write_json(self.control, {"mode": "normal", **faults})

    def emitted(self) -> dict[str, int]:
        """Bad chunks the fake servers made, by mode (each server process keeps its own file)."""
        total: dict[str, int] = {}
        for path in self.workdir.glob(f"{self.control.name}.*.counts.json"):
            with contextlib.suppress(OSError, ValueError):
                for mode, n in json.loads(path.read_text()).items():
                    total[mode] = total.get(mode, 0) + int(n)
        return total

    # -- scoring ------------------------------------------------------------------------------

    def _score(
        self,
        daemon: DaemonProcess,
        code: int,
        index: int,
        pressed: float | None,
        restarted: DaemonProcess | None,
    ) -> None:
        card = self.card
        try:
            summary = json.loads(daemon.stdout())
        except ValueError:
            summary = None
        if code not in RUN_EXIT_STATUSES or summary is None:
            card.daemon_crashes += 1
        ticks = read_ticks(self._session_log(index))
        store = EpisodeStore.open(self._session_log(index))
        card.episodes_logged += store.n_episodes
        card.ticks_logged += store.n_frames
        if summary is not None:
            card.log_ticks_lost += summary["log_rows"] - store.n_frames
        limits = limits_for(arm6_spec(), self.config)
        writes, unsafe = unsafe_writes(ticks, limits)
        card.commands_checked += writes
        card.unsafe_commands += unsafe
        too_far, bad = violations(ticks, limits, self.config.period)
        card.limit_violations += too_far
        card.bad_values_executed += bad
        # the e-stop: all three parts run whatever the others found, so every run is cleaned up
        stopped = summary is not None and pressed is not None
        stopped = stopped and self._stopped(code, summary, ticks, pressed)
        refused = restarted is not None and self._refused(restarted, index)
        cleared = self._cleared()
        card.fault("estop_mid_motion", stopped and refused and cleared)

    def _stopped(
        self, code: int, summary: dict[str, Any], ticks: dict[str, np.ndarray], pressed: float
    ) -> bool:
        """Stopped by the e-stop pressed at ``pressed``, at the first tick that saw it, while
        executing a plan; nothing held or parked after it."""
        loop = ticks["mode"] != EXIT_MODE
        flags, mode, sensed = ticks["flags"][loop], ticks["mode"][loop], ticks["sensed_at"][loop]
        saw = (flags & Flag.ESTOP) != 0
        return (
            code == 4
            and summary["reason"] == "estop"
            and len(flags) >= 2
            and bool(saw[-1])
            and int(saw.sum()) == 1
            and mode[-2] == Mode.RUN  # mid-motion
            and int((sensed > pressed).sum()) <= 1  # no tick after the one that saw it
            and not summary["exit"]["held"]
            and not summary["exit"]["parked"]
        )

    def _refused(self, restarted: DaemonProcess, index: int) -> bool:
        """The restarted daemon refused to start while the latch was set, naming it, before
        touching the arm (no tick log)."""
        return (
            restarted.wait(60.0) == 2
            and "e-stop latched" in restarted.stderr()
            and not self._restart_log(index).exists()
        )

    def _cleared(self) -> bool:
        """The operator's ``robopolicy control --clear-estop`` (run in this process) cleared the
        latch the daemon had set."""
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = robopolicy(["control", "--clear-estop", "--estop-latch", str(self.latch)])
        try:
            record = json.loads(out.getvalue())
        except ValueError:
            record = {}
        return (
            status == 0
            and record.get("estop") == "cleared"
            and (record.get("was") or {}).get("source") == "daemon"
            and not self.latch.exists()
        )

    def close(self) -> Scorecard:
        """Stop the server and the proxy; the scorecard with the campaign's totals."""
        self.card.server_crashes += int(not self.server.alive())
        self.server.stop()
        self.proxy.stop()
        self.card.sessions = self._sessions
        self.card.seconds = time.monotonic() - self._started
        return self.card


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=None, help="write the scorecard JSON here")
    parser.add_argument("--json", action="store_true", help="the scorecard as JSON on stdout")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        campaign = Campaign(Path(tmp), seed=args.seed)
        try:
            campaign.run(args.sessions)
        finally:
            card = campaign.close()
    if args.out is not None:
        card.write(args.out)
    print(json.dumps(card.to_dict(), indent=2) if args.json else card.table())
    return 0 if card.passed else 1


if __name__ == "__main__":
    sys.exit(main())
