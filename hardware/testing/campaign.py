"""The fault-injection campaign (``../shared/RELIABILITY.md``): the control daemon driving
``SimArm``, a policy server in its own process reached over loopback through a
:class:`~hardware.testing.fault_proxy.FaultProxy`, every fault class injected in turn, and a
:class:`~hardware.testing.scorecard.Scorecard` at the end.

    python -m hardware.testing.campaign [--sessions 5] [--seed 7] [--out card.json] [--json]

One **session** is one daemon run in this process, over
``FaultSwitch(InvariantMonitor(SimArm()))``, against the torch-free wave policy behind the
real ``PolicyServer``. Once the first chunk runs, a director thread injects each fault class
once, in a seeded order; after each it waits until the daemon executes a fresh chunk again
(*survived*; not within ``RECOVERY`` s: not survived), lets it run healthy for ``GAP`` s, and
goes on. Pacing follows recovery, not a schedule, so a loaded machine makes the campaign
longer, not flaky. Last, the e-stop is pressed mid-motion; it is survived when the run ended
at the first tick that saw it, a restarted daemon refuses to start while the latch is set, and
the operator's ``robopolicy control --clear-estop`` clears it.

Bad replies are counted where they are made (the server's emission counts, the proxy's
counters) and where they are refused (an error reply from the server, a reply the client could
not use, a chunk the daemon rejected). A reply the proxy damaged is followed to its own outcome,
so one that passed every check (a flipped bit in a field the daemon does not use, a value still
within limits) is reported as ``passed``, not hidden. Harm comes from the invariant monitor on
the simulated arm's write and from the tick logs; every harm count must be zero.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from hardware.daemon import ControlConfig, Daemon, EStopLatched, Flag, Mode, RunResult
from hardware.daemon.daemon import limits_for
from hardware.daemon.log import read_ticks
from hardware.monitor import InvariantMonitor
from hardware.sim_arm import SimArm
from hardware.testing.director import FAULTS, RECOVERY, Director
from hardware.testing.fault_proxy import FaultProxy
from hardware.testing.fault_switch import FaultSwitch
from hardware.testing.processes import ServerProcess, fake_server
from hardware.testing.scorecard import Scorecard, violations
from robopolicy.atomic import atomic_write_json
from robopolicy.cli import main as robopolicy
from robopolicy.data.store import EpisodeStore
from robopolicy.serve.client import PolicyClient


class Campaign:
    """The server, the proxy, the director and the scorecard (module docstring)."""

    def __init__(self, workdir: Path, *, seed: int = 7) -> None:
        self.workdir, self.rng = Path(workdir), random.Random(seed)
        self.center = np.append(SimArm().arm.home, 0.5)
        self.control = self.workdir / "control.json"
        self.mode()
        self.server = self.start_server()
        self.proxy = FaultProxy(self.server.address, seed=seed)
        self.host, self.port = self.proxy.start()
        self.card = Scorecard()
        self.config = ControlConfig(
            rate_hz=100.0,
            stop_timeout_s=5.0,  # T2 above a server restart on a loaded machine: hold, not stop
            request_timeout_s=0.3,
            estop_latch_path=str(self.workdir / "estop.json"),
            log_segment_s=5.0,
        )
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
        log_path = self.workdir / f"session{index}.zarr"
        config = dataclasses.replace(self.config, log_path=str(log_path))
        monitor = InvariantMonitor(SimArm())
        switch = FaultSwitch(monitor)
        ended = threading.Event()
        pressed: list[float] = []
        daemon = Daemon(switch, config, self._client)
        director = Director(self, daemon, switch, ended, index)

        def start() -> None:
            threading.Thread(
                target=director.run, args=(order, pressed), name="director", daemon=True
            ).start()

        daemon.on_start = start
        try:
            result = daemon.run(duration=60.0 + RECOVERY * len(order))
        except Exception:
            self.card.daemon_crashes += 1
            raise
        finally:
            ended.set()
            director.done.wait(RECOVERY + 30.0)
        self._score(result, monitor, log_path, pressed, config)

    def _client(self) -> PolicyClient:
        return PolicyClient(self.host, self.port, connect_timeout_s=self.config.request_timeout_s)

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
        result: RunResult,
        monitor: InvariantMonitor,
        log_path: Path,
        pressed: list[float],
        config: ControlConfig,
    ) -> None:
        card = self.card
        ticks = read_ticks(log_path)
        store = EpisodeStore.open(log_path)
        card.episodes_logged += store.n_episodes
        card.ticks_logged += store.n_frames
        card.log_ticks_lost += result.log_rows - store.n_frames
        card.unsafe_commands += monitor.unsafe
        too_far, bad = violations(ticks, limits_for(monitor.spec, config), config.period)
        card.limit_violations += too_far
        card.bad_values_executed += bad
        card.fault("estop_mid_motion", bool(pressed) and self._estop_ok(result, ticks, pressed[0]))

    def _estop_ok(self, result: RunResult, ticks: dict[str, np.ndarray], pressed: float) -> bool:
        """Stopped by the e-stop at the first tick that saw it, mid-motion; restart refused;
        cleared only by the operator's command."""
        loop = ticks["mode"] != 4
        flags, mode, sensed = ticks["flags"][loop], ticks["mode"][loop], ticks["sensed_at"][loop]
        stopped = (
            result.reason == "estop"
            and len(flags) >= 2
            and bool(flags[-1] & Flag.ESTOP)
            and mode[-2] == Mode.RUN  # executing a plan when it was pressed
            and int((sensed > pressed).sum()) <= 1  # no tick after the one that saw it
            and not result.exit["held"]
            and not result.exit["parked"]
        )
        restarted = InvariantMonitor(SimArm())
        try:
            Daemon(restarted, self.config, self._client).run(1.0)
            refused = False
        except EStopLatched:
            refused = not restarted.is_connected and restarted.writes == 0
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = robopolicy(
                ["control", "--clear-estop", "--estop-latch", self.config.estop_latch_path]
            )
        cleared = code == 0 and json.loads(out.getvalue())["estop"] == "cleared"
        return stopped and refused and cleared

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
