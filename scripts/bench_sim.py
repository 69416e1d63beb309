"""Benchmark the built-in tasks: env steps/s and scripted-expert success rates.

    python scripts/bench_sim.py [--steps 3000] [--episodes 50] [--tasks arm-push,...] [--json]

Steps/s: one low-dim env (no cameras), uniformly random actions, the process pinned to one CPU
core; auto-reset on episode end is counted in the time. Reported both per wall-clock second
and per CPU second (the latter is steadier on a busy machine). Success: the ``scripted`` expert
at the ``clean`` and ``imperfect`` presets on seeds 0..episodes-1, as ``robopolicy collect`` runs
it. Takes well under two minutes on one core.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

from sim.collect import rollout
from sim.experts import QUALITIES, make_expert
from sim.registry import load_tasks, make_task


def steps_per_second(task: str, steps: int) -> dict[str, float]:
    env = make_task(task)
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(steps)]
    env.reset(seed=0)
    for action in actions[:100]:  # warm up
        env.step(action)
    wall, cpu = time.perf_counter(), time.process_time()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    env.close()
    return {"steps_per_s_wall": steps / wall, "steps_per_s_cpu": steps / cpu}


def expert_success(task: str, quality: str, episodes: int) -> dict[str, float]:
    env = make_task(task)
    expert = make_expert(task, env, quality=quality)
    results = [rollout(env, expert, seed) for seed in range(episodes)]
    env.close()
    return {
        "success_rate": float(np.mean([success for _, success, _ in results])),
        "mean_score": float(np.mean([score for _, _, score in results])),
        "mean_length": float(np.mean([len(frames["action"]) for frames, _, _ in results])),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000, help="env steps timed per task")
    parser.add_argument("--episodes", type=int, default=50, help="expert episodes per quality")
    parser.add_argument("--tasks", default=None, help="comma-separated tasks (default: builtin)")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args(argv)
    if args.tasks:
        tasks = args.tasks.split(",")
    else:
        tasks = sorted(n for n, spec in load_tasks().items() if spec.family == "builtin")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    started = time.perf_counter()
    rows = []
    for task in tasks:
        row = {"task": task, **steps_per_second(task, args.steps)}
        for quality in QUALITIES:
            result = expert_success(task, quality, args.episodes)
            row.update({f"{quality}_{key}": value for key, value in result.items()})
        rows.append(row)
        print(f"done {task}", file=sys.stderr)
    document = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
        "steps_timed": args.steps,
        "episodes": args.episodes,
        "seconds": round(time.perf_counter() - started, 1),
        "tasks": rows,
    }
    if args.json:
        json.dump(document, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print(f"{'task':<16} {'steps/s wall':>12} {'steps/s cpu':>12}   ", end="")
    print("  ".join(f"{q:>9} succ (len)" for q in QUALITIES))
    for row in rows:
        rates = "  ".join(
            f"{row[f'{q}_success_rate']:>14.0%} ({row[f'{q}_mean_length']:4.1f})" for q in QUALITIES
        )
        print(
            f"{row['task']:<16} {row['steps_per_s_wall']:>12.0f} {row['steps_per_s_cpu']:>12.0f}"
            f"   {rates}"
        )
    print(f"({args.episodes} seeded episodes per quality; {document['seconds']} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
