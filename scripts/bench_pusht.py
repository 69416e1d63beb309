"""Env steps per second of Push-T (``make_task("pusht")``, gym-pusht) in one process.

Rows: state observations; state plus the 96x96 ``image.top`` camera; and, for rollout videos,
state plus a 384x384 :meth:`render` frame every step. Actions are uniform random targets over the
512x512 workspace (seeded); an episode that ends is reset, and the reset counts in the time.
``cpu_us_per_step`` is this process's CPU time per step. A table goes to stdout, or one JSON
document with ``--json``; progress goes to stderr. Needs the ``pusht`` extra.

    python scripts/bench_pusht.py [--seconds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from importlib.metadata import version
from typing import Any

import numpy as np

from sim.registry import TaskError, make_task

ROWS = [  # (label, make_task overrides, render a video frame every step)
    ("state", {}, False),
    ("state + image.top 96x96", {"cameras": ("top",)}, False),
    ("state + render 384x384", {}, True),
]


def measure(overrides: dict[str, Any], render: bool, seconds: float) -> tuple[float, float]:
    """``(env steps/s, CPU µs per step)`` for about ``seconds`` after a short warm-up."""
    env = make_task("pusht", **overrides)
    actions = np.random.default_rng(0).uniform(0, 512, (1024, 2)).astype(np.float32)
    env.reset(seed=0)
    steps, cpu0, start = 0, time.process_time(), time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or steps < 10:
        _, _, terminated, truncated, _ = env.step(actions[steps % len(actions)])
        if render:
            env.render()
        steps += 1
        if terminated or truncated:
            env.reset()
    cpu = time.process_time() - cpu0
    env.close()
    return steps / elapsed, cpu / steps * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per row")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args(argv)
    try:
        make_task("pusht").close()
    except TaskError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    rows: list[dict[str, Any]] = []
    for label, overrides, render in ROWS:
        rate, cpu_us = measure(overrides, render, args.seconds)
        rows.append(dict(mode=label, steps_per_s=round(rate), cpu_us_per_step=round(cpu_us, 1)))
        print(f"{label:26s} {rate:8.0f} steps/s {cpu_us:8.1f} CPU µs/step", file=sys.stderr)

    report = dict(
        task="pusht",
        gym_pusht=version("gym-pusht"),
        pymunk=version("pymunk"),
        cpu_count=os.cpu_count(),
        load_average=[round(x, 2) for x in os.getloadavg()],
        seconds=args.seconds,
        rows=rows,
    )
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"pusht: gym-pusht {report['gym_pusht']}, pymunk {report['pymunk']}, ", end="")
    print(f"{os.cpu_count()} cores, load average {load}; one env, one process")
    print(f"{'mode':26s} {'steps/s':>8s} {'CPU µs/step':>11s}")
    for row in rows:
        print(f"{row['mode']:26s} {row['steps_per_s']:8d} {row['cpu_us_per_step']:11.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
