"""Benchmark the robosuite tasks: env steps/s and scripted-expert success rates.

    python scripts/bench_robosuite.py [--steps 1000] [--episodes 50] [--images] [--json]

Steps/s: one low-dim env per task (no cameras), uniformly random actions, the process pinned to
one CPU core, per wall-clock second and per CPU second (steadier on a busy machine); a seeded
reset (robosuite rebuilds the model) is timed on its own. ``--images`` adds steps/s with
robomimic's two 84x84 cameras (needs offscreen GL: ``MUJOCO_GL=egl`` or ``osmesa``). Success:
the ``scripted`` expert of Lift and Can at the ``clean`` and ``imperfect`` presets on seeds
0..episodes-1, run as ``robopolicy collect`` runs it (until the expert is done or the 400-step
horizon), with the seconds each setting took. Needs the ``robosuite`` extra.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any

import numpy as np

from sim.collect import rollout
from sim.experts import QUALITIES, load_experts, make_expert
from sim.registry import load_tasks, make_task

CAMERAS = ("agentview", "robot0_eye_in_hand")


def steps_per_second(task: str, steps: int, cameras: tuple[str, ...] = ()) -> dict[str, float]:
    """Random-action stepping speed of one env of ``task`` and the time of a seeded reset."""
    env = make_task(task, cameras=cameras)
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(steps)]
    env.reset(seed=0)
    for action in actions[:20]:  # warm up (numba compiles robosuite's controller on first use)
        env.step(action)
    wall, cpu = time.perf_counter(), time.process_time()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    resets = 3
    reset_wall = time.perf_counter()
    for seed in range(resets):
        env.reset(seed=seed)
    reset_wall = (time.perf_counter() - reset_wall) / resets
    env.close()
    return {"steps_per_s_wall": steps / wall, "steps_per_s_cpu": steps / cpu, "reset_s": reset_wall}


def expert_success(task: str, quality: str, episodes: int) -> dict[str, float]:
    """Success rate, mean episode length and seconds of ``episodes`` seeded expert rollouts."""
    started = time.perf_counter()
    env = make_task(task)
    expert = make_expert(task, env, quality=quality)
    results = [rollout(env, expert, seed) for seed in range(episodes)]
    env.close()
    return {
        "success_rate": float(np.mean([success for _, success, _ in results])),
        "mean_length": float(np.mean([len(frames["action"]) for frames, _, _ in results])),
        "seconds": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="env steps timed per task")
    parser.add_argument("--episodes", type=int, default=50, help="expert episodes per quality")
    parser.add_argument("--images", action="store_true", help="also time image mode")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args(argv)
    tasks = sorted(n for n, spec in load_tasks().items() if spec.family == "robosuite")
    experts = {task for task, _ in load_experts()}
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for task in tasks:
        row: dict[str, Any] = {"task": task, **steps_per_second(task, args.steps)}
        if args.images:
            speed = steps_per_second(task, max(args.steps // 10, 20), CAMERAS)
            row["image_steps_per_s_wall"] = speed["steps_per_s_wall"]
        for quality in QUALITIES if task in experts and args.episodes > 0 else ():
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
    print_table(document, args.images)
    return 0


def print_table(document: dict[str, Any], images: bool) -> None:
    """The rows of ``document`` as a plain-text table."""
    head = f"{'task':<17} {'steps/s wall':>12} {'steps/s cpu':>11} {'reset s':>7}"
    head += f" {'image st/s':>10}" if images else ""
    print(head + "".join(f"   {q + ' succ (len, s)':>27}" for q in QUALITIES))
    for row in document["tasks"]:
        line = f"{row['task']:<17} {row['steps_per_s_wall']:>12.0f} {row['steps_per_s_cpu']:>11.0f}"
        line += f" {row['reset_s']:>7.2f}"
        line += f" {row['image_steps_per_s_wall']:>10.1f}" if images else ""
        for q in QUALITIES:
            if f"{q}_success_rate" in row:
                cell = f"{row[f'{q}_success_rate']:.0%} ({row[f'{q}_mean_length']:.0f}, "
                cell += f"{row[f'{q}_seconds']:.0f})"
            else:
                cell = "-"
            line += f"   {cell:>27}"
        print(line)
    print(f"({document['episodes']} seeded episodes per quality; {document['seconds']} s in all)")


if __name__ == "__main__":
    sys.exit(main())
