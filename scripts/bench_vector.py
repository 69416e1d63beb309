"""Env steps per second of the vector env (:mod:`sim.vector`), random actions.

Rows: in-process with 1 and 8 envs; worker processes with 1, 2 and 8 envs (``num_workers``
defaults to one per core, envs split between them); 8 envs with one worker each; and 8 envs in
workers behind the action-chunk wrapper (Ta = 8 of Tp = 16). Each row is timed for ``--seconds``
after a short warm-up; ``cpu_us_per_step`` is the CPU time (this process and the workers) per env
step, which shows the overhead even when other work loads the machine; ``startup_s`` is the time
to start the workers and make the envs. The task
is ``arm-push`` when registered, else gymnasium's ``Pendulum-v1`` under the task contract (with a
note). A table goes to stdout, or one JSON document with ``--json``; progress goes to stderr.

    python scripts/bench_vector.py [--task arm-push] [--seconds 2] [--json]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from sim.chunking import ActionChunkEnv, ChunkConfig
from sim.registry import TaskError, TaskMeta, task_spec
from sim.vector import TaskFactory, VectorEnv, VectorEnvConfig

ROWS = [  # (label, num_envs, VectorEnvConfig overrides, chunked)
    ("in-process", 1, dict(in_process=True), False),
    ("in-process", 8, dict(in_process=True), False),
    ("workers", 1, dict(in_process=False), False),
    ("workers", 2, dict(in_process=False), False),
    ("workers", 8, dict(in_process=False), False),
    ("workers, 1 env each", 8, dict(in_process=False, num_workers=8), False),
    ("workers + chunks Ta=8", 8, dict(in_process=False), True),
]


class PendulumTask(gym.Wrapper):
    """``Pendulum-v1`` under the task contract (``state``, ``timestamp``, ``is_success``,
    ``score``): the fallback when no built-in task is registered."""

    def __init__(self) -> None:
        super().__init__(gym.make("Pendulum-v1"))
        self.observation_space = gym.spaces.Dict(
            state=gym.spaces.Box(-np.inf, np.inf, (3,), np.float32),
            timestamp=gym.spaces.Box(0.0, np.inf, (), np.float64),
        )
        self.task_meta = TaskMeta(("cos", "sin", "omega"), ("torque",), "N m", fps=20.0)
        self._t = 0

    def _obs(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        return {"state": obs.astype(np.float32), "timestamp": np.float64(self._t / 20.0)}

    def reset(self, **kwargs: Any) -> tuple[dict, dict]:
        obs, info = self.env.reset(**kwargs)
        self._t = 0
        return self._obs(obs), info

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._t += 1
        info = {**info, "is_success": False, "score": float(reward)}
        return self._obs(obs), reward, terminated, truncated, info


def measure(factory: Callable[[], Any], n: int, overrides: dict, chunked: bool, seconds: float):
    """``(env steps/s, startup seconds, CPU µs per env step)`` of one row (CPU time counts this
    process and the workers, so it shows the overhead whatever else loads the machine)."""
    start = time.perf_counter()
    venv = VectorEnv(factory, VectorEnvConfig(num_envs=n, seed=0, **overrides))
    with venv:
        startup = time.perf_counter() - start
        space = venv.single_action_space
        rng = np.random.default_rng(0)
        shape = (n, 16, *space.shape) if chunked else (n, *space.shape)
        batches = [rng.uniform(space.low, space.high, shape).astype(space.dtype) for _ in range(8)]
        env = ActionChunkEnv(venv, ChunkConfig(2, 8)) if chunked else venv
        env.reset(seed=0)
        step = env.step_chunk if chunked else venv.step
        for k in range(10):
            step(batches[k % 8])
        steps, k, cpu0, t0 = 0, 0, cpu_seconds(venv.worker_pids), time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < seconds:
            out = step(batches[k % 8])
            steps += int(out.n_steps.sum()) if chunked else n
            k += 1
        cpu = cpu_seconds(venv.worker_pids) - cpu0
    return steps / elapsed, startup, cpu / steps * 1e6


def cpu_seconds(worker_pids: list[int]) -> float:
    """CPU time of this process and of the workers (from /proc: Linux only)."""
    total = time.process_time()
    for pid in worker_pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="arm-push", help="registered task name")
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per row")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args(argv)

    note, task = None, args.task
    try:
        task_spec(task)
        factory: Callable[[], Any] = TaskFactory(task)
    except TaskError:
        note = f"task {task!r} is not registered: measured gymnasium's Pendulum-v1 instead"
        print(f"note: {note}", file=sys.stderr)
        task, factory = "Pendulum-v1", functools.partial(PendulumTask)

    rows: list[dict[str, Any]] = []
    for label, n, overrides, chunked in ROWS:
        rate, startup, cpu_us = measure(factory, n, overrides, chunked, args.seconds)
        workers = (
            0
            if overrides.get("in_process")
            else overrides.get("num_workers") or min(n, os.cpu_count() or 1)
        )
        row = dict(mode=label, num_envs=n, num_workers=workers, steps_per_s=round(rate))
        rows.append(row | dict(cpu_us_per_step=round(cpu_us, 1), startup_s=round(startup, 2)))
        print(f"{label:24s} N={n}: {rate:9.0f} steps/s {cpu_us:7.1f} CPU µs/step", file=sys.stderr)

    report = dict(task=task, note=note, cpu_count=os.cpu_count(), seconds=args.seconds, rows=rows)
    report["load_average"] = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"task {task} ({os.cpu_count()} cores, load average {load})"
        + (f"  [{note}]" if note else "")
    )
    print(f"{'mode':24s} {'envs':>4s} {'workers':>7s} {'steps/s':>9s} {'CPU µs/step':>11s}", end="")
    print(f" {'startup s':>9s}")
    for r in rows:
        print(
            f"{r['mode']:24s} {r['num_envs']:4d} {r['num_workers']:7d} {r['steps_per_s']:9d} "
            f"{r['cpu_us_per_step']:11.1f} {r['startup_s']:9.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
