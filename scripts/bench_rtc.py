"""Chunk-boundary jerk of ``robopolicy control`` with and without real-time chunking, under
injected inference delay.

The policy is the tiny joint-space diffusion policy whose chunks a sample does not determine
(:mod:`hardware.testing.phase_policy`: circles of a random phase around the arm's home pose;
trained here on one thread, about 20 s, unless ``--checkpoint`` names one). For each delay in
``--delays`` (ms) the real ``robopolicy serve --backend torch --sampler ddim --steps 10
--delay-ms D`` serves it, and ``robopolicy control --robot sim`` (SimArm, 100 Hz) runs against
it for ``--seconds`` with ``rtc=off``, then with ``rtc=on``, logging every tick. From each tick
log (:mod:`hardware.testing.chunk_jerk`): the change of commanded velocity (rad/s from one tick
to the next, the plan's target before the safety filter) at chunk boundaries — the largest,
and the median of each boundary's largest — against the level within chunks (largest, p99);
then the chunks accepted, the requests that carried a prefix, ticks the filter clipped and
ticks held. A table goes to stdout, or one JSON document with ``--json``; progress to stderr.

    python scripts/bench_rtc.py [--delays 0 100 300] [--seconds 20] [--checkpoint DIR] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from hardware.daemon.log import read_ticks
from hardware.daemon.status import Mode
from hardware.testing.chunk_jerk import chunk_jerk
from hardware.testing.phase_policy import FPS, train_phase_policy
from hardware.testing.processes import DaemonProcess, ServerProcess, policy_server

SERVE = ("--backend", "torch", "--sampler", "ddim", "--steps", "10", "--fps", f"{FPS:g}")


def run_daemon(server: ServerProcess, rtc: str, seconds: float, tmp: Path) -> dict[str, Any]:
    """One run of ``robopolicy control --robot sim`` against ``server``: its jerk and counts."""
    log = tmp / f"ticks_{server.port}_{rtc}.zarr"
    daemon = DaemonProcess(
        [
            *("--robot", "sim", "--json", "--server", f"{server.host}:{server.port}"),
            *("--rate", "100", "--duration", f"{seconds:g}", "--out", str(log)),
            *("--estop-latch", str(tmp / "estop.json"), f"rtc={rtc}"),
        ]
    )
    code = daemon.wait(seconds + 120)
    if code != 0:
        raise RuntimeError(f"robopolicy control exited {code}: {daemon.stderr()[-2000:]}")
    summary = json.loads(daemon.stdout())
    ticks = read_ticks(log)
    running = ticks["mode"] == Mode.RUN
    jerk = chunk_jerk(
        ticks["write_time"], ticks["commanded"], ticks["chunk"], 1 / FPS, running=running
    )
    stats, requests = summary["stats"], summary["requests"]
    return {
        "rtc": rtc,
        **dataclasses.asdict(jerk),
        "chunks": stats["chunks_accepted"],
        "prefix_requests": requests.get("prefix_requests", 0),
        "rejected": stats["chunks_rejected"] + requests.get("rejected", 0),
        "clipped_ticks": stats["clipped_ticks"],
        "hold_ticks": stats["command_hold_ticks"],
        "ended_by": summary["reason"],
    }


def table(results: list[dict[str, Any]], header: dict[str, Any]) -> str:
    lines = [
        f"chunk-boundary jerk: robopolicy control --robot sim at 100 Hz, {header['seconds']:g} s "
        f"per run, against robopolicy serve {' '.join(SERVE)}; {header['cpus']} CPUs, load "
        f"average {header['load']} before, {header['load_after']} after",
        "change of commanded velocity, rad/s per tick",
        f"{'delay':>6} {'rtc':>4} {'bound max':>10} {'bound med':>10} {'within max':>11} "
        f"{'within p99':>11} {'bounds':>7} {'prefixed':>9} {'clipped':>8} {'held':>5}",
    ]
    for r in results:
        lines.append(
            f"{r['delay_ms']:>4g}ms {r['rtc']:>4} {r['boundary_max']:>10.3f} "
            f"{r['boundary_median']:>10.3f} {r['within_max']:>11.3f} {r['within_p99']:>11.3f} "
            f"{r['boundaries']:>7} {r['prefix_requests']:>9} {r['clipped_ticks']:>8} "
            f"{r['hold_ticks']:>5}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delays", type=float, nargs="+", default=[0.0, 100.0, 300.0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--checkpoint", default=None, help="a trained phase policy to serve")
    parser.add_argument("--train-steps", type=int, default=3000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    header = {
        "seconds": args.seconds,
        "cpus": os.cpu_count(),
        "load": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint
        if checkpoint is None:
            print(f"training the phase policy, {args.train_steps} steps", file=sys.stderr)
            checkpoint = train_phase_policy(Path(tmp) / "phase", steps=args.train_steps)
        for delay in args.delays:
            server = policy_server(checkpoint, *SERVE, "--delay-ms", f"{delay:g}")
            try:
                for rtc in ("off", "on"):
                    print(f"delay {delay:g} ms, rtc={rtc}, {args.seconds:g} s", file=sys.stderr)
                    run = run_daemon(server, rtc, args.seconds, Path(tmp))
                    results.append({"delay_ms": delay, **run})
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
