"""``robopolicy control``: run the control daemon between a policy server and an arm.

    robopolicy control --robot sim --server 127.0.0.1:8765 --rate 100 --out ticks.zarr
    robopolicy control --robot feetech --port /dev/ttyACM0 --calibration so101.json \\
        --server 127.0.0.1:8765 --dry-run          # SimArm behind the SO-101's limits
    robopolicy control --estop                     # latch the e-stop (stops a running daemon)
    robopolicy control --clear-estop               # the operator's explicit recovery
    robopolicy control --replay ticks.zarr         # replay a tick log on SimArm (R17)
    robopolicy data view ticks.zarr --episode 0    # plot a tick log's first segment

Any :class:`~hardware.daemon.config.ControlConfig` field can be set as ``key=value`` after the
options (``exit_behaviour=park_then_release stop_timeout_s=0.5``). Once the loop runs, one JSON
line ``{"event": "running", "pid": ...}`` goes to stderr; at the end the run's summary goes to
stdout (one JSON document with ``--json``). Exit status: 0 when the run ended by its duration or
a signal, 3 after a latched safe stop, 4 after an e-stop, 2 for errors the user can fix
(including starting while the e-stop is latched).

For fault-injection tests only, ``ROBOPOLICY_TESTING_FAULT_CHANNEL=1`` in the environment puts
a fault switch between the daemon and a simulated arm and serves it on loopback
(:mod:`hardware.testing.fault_channel`); with any other driver the command refuses to start.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from robopolicy.cli import arg, command, print_json
from robopolicy.errors import RobopolicyError

C = TypeVar("C")
ROBOTS = ("sim", "feetech", "dynamixel", "ur", "xarm")
TESTING_FAULT_CHANNEL = "ROBOPOLICY_TESTING_FAULT_CHANNEL"
"""Environment variable that, set to ``1``, turns on the test-only fault channel."""
ROBOT_ARGS = (
    arg("--robot", choices=ROBOTS, default="sim", help="the arm's driver"),
    arg("--port", default=None, help="serial device (feetech, dynamixel) or address (ur, xarm)"),
    arg("--calibration", default=None, help="servo calibration JSON (feetech, dynamixel)"),
    arg("--dry-run", action="store_true", help="drive SimArm behind the robot's limits"),
)
"""The arm's options, shared by every command that drives one (read by :func:`driver_from_args`)."""
SERVER_ARGS = (
    arg("--server", default=None, help="policy server HOST:PORT"),
    arg("--token", default=None, help="the server's token (or $ROBOPOLICY_SERVE_TOKEN)"),
)
"""The policy server's options (read by :func:`client_factory`)."""


@command(
    "control",
    help="run the real-robot control daemon (fixed-rate loop, safety filter, watchdog, e-stop)",
    args=(
        *ROBOT_ARGS,
        *SERVER_ARGS,
        arg("--rate", type=float, default=None, help="control rate in Hz (50..500)"),
        arg("--out", default=None, help="episode store for the tick log"),
        arg("--duration", type=float, default=None, help="stop after this many seconds"),
        arg("--exit", dest="exit_behaviour", default=None, help="hold|park_then_release|release"),
        arg("--estop-latch", default=None, help="the e-stop latch file"),
        arg("--estop", action="store_true", help="latch the e-stop now, then exit"),
        arg("--clear-estop", action="store_true", help="clear the e-stop latch, then exit"),
        arg("--replay", default=None, metavar="LOG", help="replay a tick log on SimArm, then exit"),
        arg("--json", action="store_true", help="the summary as one JSON document"),
        arg("overrides", nargs="*", metavar="KEY=VALUE", help="ControlConfig overrides"),
    ),
)
def control(args: argparse.Namespace) -> int:
    from hardware.daemon import ControlConfig, Daemon, EStopLatch
    from hardware.daemon.process import tune_process

    flags = {
        "rate_hz": args.rate,
        "log_path": args.out,
        "exit_behaviour": args.exit_behaviour,
        "estop_latch_path": args.estop_latch,
    }
    config = config_from_args(ControlConfig, flags, args.overrides, "control config")
    latch = EStopLatch(config.estop_latch_path)
    if args.clear_estop or args.estop:
        if args.estop:
            latch.set("operator command `robopolicy control --estop`", source="operator")
            print(json.dumps({"estop": "latched", "latch": str(latch.path)}))
        else:
            record = latch.clear()
            print(json.dumps({"estop": "cleared", "was": record, "latch": str(latch.path)}))
        return 0
    if args.replay:
        return _replay(args.replay, as_json=args.json)
    if not args.server:
        raise RobopolicyError("give the policy server as --server HOST:PORT")
    client = client_factory(args.server, args.token, config.request_timeout_s)
    driver = driver_from_args(args)
    channel = _fault_channel(driver)
    if channel is not None:
        driver = channel.switch
    tune_process(config.period)

    def started() -> None:
        print(json.dumps({"event": "running", "pid": os.getpid()}), file=sys.stderr, flush=True)

    daemon = Daemon(driver, config, client, on_start=started)
    if channel is not None:
        channel.serve(daemon)
    try:
        result = daemon.run(args.duration)
    finally:
        if channel is not None:
            channel.close()
    summary = result.to_dict()
    if args.json:
        print_json(summary)
    else:
        _table(summary)
    if result.reason == "estop":
        return 4
    return 3 if result.latched else 0


def _replay(path: str, *, as_json: bool) -> int:
    """Replay the tick log at ``path`` on SimArm from its first reading; print how far the
    simulated joints strayed from the recorded ones."""
    import dataclasses

    from hardware.daemon.replay import replay

    try:
        report = dataclasses.asdict(replay(path))
    except (OSError, ValueError) as exc:
        raise RobopolicyError(f"cannot replay {path}: {exc}") from None
    if as_json:
        print_json(report)
    else:
        print(
            f"replayed {report['compared']} readings: max error {report['max_error']:.3g} rad, "
            f"rms {report['rms_error']:.3g} rad"
        )
    return 0


def config_from_args(cls: type[C], flags: dict[str, Any], overrides: list[str], what: str) -> C:
    """``cls`` from the flags given (None: not given) and ``key=value`` overrides on top; a
    value the config refuses is a RobopolicyError naming ``what``."""
    from robopolicy.config import apply_overrides

    try:
        config = cls(**{k: v for k, v in flags.items() if v is not None})
        return apply_overrides(config, overrides)
    except (TypeError, ValueError) as exc:
        raise RobopolicyError(f"{what}: {exc}") from None


def client_factory(server: str, token: str | None, connect_timeout_s: float) -> Callable[[], Any]:
    """New clients of the policy server at ``--server HOST:PORT`` with ``--token`` (else
    ``$ROBOPOLICY_SERVE_TOKEN``); a RobopolicyError for a malformed address."""
    host, sep, port = server.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise RobopolicyError(f"--server must be HOST:PORT, got {server!r}")
    token = token or os.environ.get("ROBOPOLICY_SERVE_TOKEN") or None

    def client() -> Any:
        from robopolicy.serve.client import PolicyClient

        return PolicyClient(host, int(port), token=token, connect_timeout_s=connect_timeout_s)

    return client


def driver_from_args(args: argparse.Namespace) -> Any:
    """The driver for ``--robot`` (:data:`ROBOT_ARGS`); with ``--dry-run`` a SimArm behind its
    spec."""
    from hardware.daemon.mirror import MirroredSim
    from hardware.driver import DriverError, driver_class
    from hardware.sim_arm import SimArm

    if args.robot == "sim":
        return SimArm()
    kwargs: dict[str, Any] = {}
    if args.robot in ("feetech", "dynamixel"):
        if not args.calibration:
            raise RobopolicyError(f"--robot {args.robot} needs --calibration FILE")
        if not (args.port or args.dry_run):
            raise RobopolicyError(f"--robot {args.robot} needs --port DEVICE (or --dry-run)")
        kwargs = {"port": args.port, "calibration": args.calibration}
    elif args.port:
        kwargs = {"host": args.port}
    elif args.dry_run:
        kwargs = {"host": "dry-run"}  # never contacted: only the spec is used
    else:
        raise RobopolicyError(f"--robot {args.robot} needs --port ADDRESS")
    try:
        real = driver_class(args.robot)(**kwargs)
    except (DriverError, OSError, ValueError) as exc:
        raise RobopolicyError(f"{args.robot}: {exc}") from None
    return MirroredSim(real.spec) if args.dry_run else real


def _fault_channel(driver: Any) -> Any:
    """The test-only fault channel around ``driver`` when ``$ROBOPOLICY_TESTING_FAULT_CHANNEL``
    is ``1`` (module docstring), else None."""
    if os.environ.get(TESTING_FAULT_CHANNEL) != "1":
        return None
    from hardware.testing.fault_channel import FaultChannel

    return FaultChannel(driver)


def _table(summary: dict[str, Any]) -> None:
    stats, jitter = summary["stats"], summary["stats"]["jitter_s"]
    rejected = stats["chunks_rejected"] + summary["requests"].get("rejected", 0)
    rows = [
        ("ended by", summary["reason"]),
        ("ticks", stats["ticks"]),
        ("overruns / missed ticks", f"{stats['overruns']} / {stats['missed_ticks']}"),
        (
            "lateness p50/p99/max (ms)",
            "/".join(f"{1e3 * jitter[k]:.2f}" for k in ("p50", "p99", "max")),
        ),
        ("chunks accepted / rejected", f"{stats['chunks_accepted']} / {rejected}"),
        ("overdue actions dropped", stats["dropped_actions"]),
        (
            "hold ticks (command / sensor)",
            f"{stats['command_hold_ticks']} / {stats['sensor_hold_ticks']}",
        ),
        ("write errors", stats["write_errors"]),
        ("exit", f"{summary['exit'].get('behaviour')} ({summary['exit'].get('path')})"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
