"""Control-loop jitter of ``robopolicy control`` at 100 and 500 Hz, with a policy server beside it.

For each rate the real command runs in its own process — ``robopolicy control --robot sim``
driving :class:`~hardware.sim_arm.SimArm`, logging every tick — for ``--seconds`` against one
policy server that runs throughout: by default the real ``robopolicy serve`` on the stored
diffusion fixture (an end-effector policy, so the arm's IK runs in the daemon's requester
thread), or with ``--server fake`` the torch-free wave policy. From the tick log it reports the
tick lateness (how late each tick started: p50, p99, max), the work per tick (read, filter,
write, log), ticks that overran their period and ticks skipped, and the chunks accepted.
With ``--realtime-priority N`` each rate runs again with the loop under ``SCHED_FIFO`` (the
``realtime_priority`` setting). A table goes to stdout, or one JSON document with ``--json``;
progress to stderr.

    python scripts/bench_control.py [--rates 100 500] [--seconds 25] [--server real|fake]
        [--realtime-priority 50] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from hardware.daemon.log import read_ticks
from hardware.sim_arm import SimArm
from hardware.testing.processes import DaemonProcess, ServerProcess, fake_server, policy_server

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "policies" / "fixtures" / "diffusion_mlp"


def start_server(kind: str) -> ServerProcess:
    if kind == "real":
        return policy_server(FIXTURE, "--fps", "10")
    return fake_server(np.append(SimArm().arm.home, 0.5))


def run_rate(
    server: ServerProcess, rate: float, seconds: float, tmp: Path, priority: int | None
) -> dict[str, Any]:
    log = tmp / f"ticks_{rate:g}_{priority}.zarr"
    extra = [] if priority is None else [f"realtime_priority={priority}"]
    daemon = DaemonProcess(
        [
            "--robot",
            "sim",
            "--json",
            "--server",
            f"{server.host}:{server.port}",
            "--rate",
            f"{rate:g}",
            "--duration",
            f"{seconds:g}",
            "--out",
            str(log),
            "--estop-latch",
            str(tmp / "estop.json"),
            *extra,
        ]
    )
    code = daemon.wait(seconds + 120)
    if code != 0:
        raise RuntimeError(f"robopolicy control exited {code}: {daemon.stderr()[-2000:]}")
    summary = json.loads(daemon.stdout())
    ticks = read_ticks(log)
    running = ticks["mode"] != 4  # leave out the exit behaviour's rows
    late, work = 1e3 * ticks["lateness"][running], 1e3 * ticks["work"][running]
    stats = summary["stats"]
    return {
        "rate_hz": rate,
        "realtime_priority": priority,
        "seconds": seconds,
        "ticks": int(running.sum()),
        "lateness_ms": {q: float(np.percentile(late, p)) for q, p in (("p50", 50), ("p99", 99))}
        | {"max": float(late.max())},
        "work_ms": {"p50": float(np.percentile(work, 50)), "p99": float(np.percentile(work, 99))},
        "overruns": stats["overruns"],
        "missed_ticks": stats["missed_ticks"],
        "chunks_accepted": stats["chunks_accepted"],
        "chunks_rejected": stats["chunks_rejected"] + summary["requests"].get("rejected", 0),
        "ended_by": summary["reason"],
    }


def table(results: list[dict[str, Any]], header: dict[str, Any]) -> str:
    lines = [
        f"control-loop jitter: robopolicy control --robot sim, {header['server']} policy server "
        f"beside it, {header['cpus']} CPUs, load average {header['load']}",
        f"{'rate':>6} {'sched':>6} {'ticks':>6} {'late p50':>9} {'late p99':>9} {'late max':>9} "
        f"{'work p50':>9} {'work p99':>9} {'overruns':>9} {'missed':>7} {'chunks':>7}",
    ]
    for r in results:
        late, work = r["lateness_ms"], r["work_ms"]
        sched = "normal" if r["realtime_priority"] is None else f"fifo{r['realtime_priority']}"
        lines.append(
            f"{r['rate_hz']:>4g}Hz {sched:>6} {r['ticks']:>6} {late['p50']:>7.3f}ms "
            f"{late['p99']:>7.3f}ms {late['max']:>7.2f}ms "
            f"{work['p50']:>7.3f}ms {work['p99']:>7.3f}ms "
            f"{r['overruns']:>9} {r['missed_ticks']:>7} {r['chunks_accepted']:>7}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[100.0, 500.0])
    parser.add_argument("--seconds", type=float, default=25.0)
    parser.add_argument("--server", choices=("real", "fake"), default="real")
    parser.add_argument(
        "--realtime-priority",
        type=int,
        nargs="*",
        default=None,
        help="also run with the loop under SCHED_FIFO at these priorities (needs CAP_SYS_NICE)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    header = {
        "server": args.server,
        "cpus": os.cpu_count(),
        "load": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(args.server)
        try:
            for priority in [None, *(args.realtime_priority or [])]:
                for rate in args.rates:
                    print(f"{rate:g} Hz, priority {priority}, {args.seconds:g} s", file=sys.stderr)
                    results.append(run_rate(server, rate, args.seconds, Path(tmp), priority))
        finally:
            server.stop()
    header["load_after"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    if args.json:
        json.dump({**header, "results": results}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(table(results, header))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
