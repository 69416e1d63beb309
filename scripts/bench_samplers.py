"""Success rate versus denoising steps on a task: samplers, warm start and distilled students.

For a diffusion and/or a flow checkpoint (e.g. the ``arm-push`` preset's, as ``robopolicy
quickstart`` trains them) it evaluates every variant of :data:`VARIANTS` on the same seeds with
``sim.evaluate.evaluate_policy`` (receding horizon, Ta of every chunk): the policy's own sampling
loop as the baseline (``policy``: DDPM 100 steps, or the flow policy's Euler steps), our samplers
at fewer steps through :class:`~robopolicy.inference.engine.InferenceEngine`, RTI-style warm
start (:class:`~robopolicy.inference.warm_start.WarmStart`: k-step grid, m warm steps) and the
distilled students given with ``--students`` (checkpoints from ``robopolicy distill``). Columns:
success rate with its 95% Wilson interval, mean max score, network evaluations per chunk (warm
start: after the first chunk of an episode), and the median in-process latency of one batch-1
chunk on the engine's backend (``--threads``). ``--variants`` runs chosen variants instead of
:data:`VARIANTS` (to split a long run). A table goes to stdout, or one JSON document with
``--json``; progress to stderr.

    python scripts/bench_samplers.py --diffusion D --flow F --students S1 S2 [--episodes 50]
    python scripts/bench_samplers.py --diffusion D --variants diffusion:warm:ddim:10:4
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robopolicy.inference.engine import EngineConfig, InferenceEngine
from robopolicy.inference.warm_start import WarmStart, WarmStartConfig
from robopolicy.policies import load_policy
from robopolicy.sampling.samplers import SAMPLERS

VARIANTS: dict[str, list[tuple[str, str | None, int, int]]] = {
    # (how, sampler, k, m): "policy" = the policy's own loop, "engine", "warm" (m warm steps)
    "diffusion": [
        ("policy", "ddpm", 100, 0),
        ("engine", "ddim", 16, 0),
        ("engine", "ddim", 8, 0),
        ("engine", "ddim", 4, 0),
        ("engine", "ddim", 2, 0),
        ("engine", "dpmpp", 8, 0),
        ("engine", "dpmpp", 4, 0),
        ("engine", "dpmpp", 2, 0),
        ("engine", "dpmpp", 1, 0),
        ("warm", "ddim", 10, 2),
        ("warm", "dpmpp", 8, 2),
    ],
    "flow": [
        ("policy", "euler", 10, 0),
        ("engine", "euler", 4, 0),
        ("engine", "euler", 2, 0),
        ("engine", "euler", 1, 0),
        ("engine", "midpoint", 2, 0),
        ("warm", "euler", 10, 2),
        ("warm", "euler", 10, 1),
    ],
}


def build(checkpoint: Path, how: str, sampler: str | None, k: int, m: int, backend: str) -> Any:
    """The object to evaluate: a policy, an engine, or an engine wrapped in warm start."""
    if how == "policy":
        policy = load_policy(checkpoint)
        policy.set_sampler(sampler, steps=k)
        return policy
    engine = InferenceEngine(load_policy(checkpoint), EngineConfig(sampler, k, backend=backend))
    if how == "warm":
        return WarmStart(engine, WarmStartConfig(warm_steps=m))
    return engine


def latency_ms(target: Any, obs: dict[str, torch.Tensor], repeats: int) -> float:
    """Median milliseconds of one batch-1 chunk (warm start: warm chunks)."""
    times = []
    with torch.inference_mode():
        for i in range(repeats + 3):
            start = time.perf_counter()
            target.sample(obs)
            if i >= 3:
                times.append(1e3 * (time.perf_counter() - start))
    return float(np.median(times))


def evaluate(target: Any, args: argparse.Namespace) -> dict[str, Any]:
    from sim.evaluate import evaluate_policy

    figures = evaluate_policy(
        target, args.task, episodes=args.episodes, seed=args.seed, num_envs=args.num_envs,
        progress=False,
    )  # fmt: skip
    keep = ("success_rate", "success_rate_ci95", "mean_max_score", "eval_s")
    return {key: figures[key] for key in keep}


def parse_variant(spec: str) -> tuple[str, str, str, int, int]:
    """``KIND:HOW:SAMPLER:K[:M]`` (e.g. ``diffusion:warm:ddim:10:2``) -> (kind, how, ...)."""
    parts = spec.split(":")
    if len(parts) not in (4, 5) or parts[1] not in ("policy", "engine", "warm"):
        raise argparse.ArgumentTypeError("want KIND:HOW:SAMPLER:K[:M], HOW policy|engine|warm")
    kind, how, sampler, k, m = (*parts, "0")[:5]
    return kind, how, sampler, int(k), int(m)


def bench(kind: str, checkpoint: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    if args.variants is None:
        variants = list(VARIANTS[kind])
    else:
        variants = [(how, s, k, m) for kd, how, s, k, m in args.variants if kd == kind]
    variants += [("student", str(path), 0, 0) for path in args.students if _kind(path) == kind]
    for how, sampler, k, m in variants:
        if how == "student":
            student = Path(sampler or "")
            target: Any = InferenceEngine(load_policy(student), EngineConfig(backend=args.backend))
            sampler, k, name = target.spec.name, target.steps, f"distilled ({student.name})"
        else:
            target = build(checkpoint, how, sampler, k, m, args.backend)
            name = {"policy": "policy's own loop", "engine": "engine", "warm": f"warm m={m}"}[how]
        c = target.config
        gen = torch.Generator().manual_seed(0)  # a random observation
        obs = {k: torch.randn(1, c.n_obs_steps, *c.shapes[k], generator=gen) for k in c.obs_keys}
        evals = (m if how == "warm" else k) * SAMPLERS[sampler].evals_per_step
        row = {"policy": kind, "variant": name, "sampler": sampler, "steps": k, "evals": evals}
        row["latency_ms"] = latency_ms(target, obs, args.repeats)
        row |= evaluate(target, args)
        rows.append(row)
        print(f"  {json.dumps(row)}", file=sys.stderr, flush=True)
    return rows


def _kind(path: str | Path) -> str:
    document = json.loads((Path(path) / "config.json").read_text())
    return document["policy"]["type"]


def print_table(rows: list[dict[str, Any]], setup: dict[str, Any]) -> None:
    print(f"{'policy':9} {'variant':28} {'sampler':8} {'k':>4} {'evals':>5} {'ms':>7} "
          f"{'success':>8} {'95% CI':>13} {'max score':>9}")  # fmt: skip
    for r in rows:
        low, high = r["success_rate_ci95"]
        print(
            f"{r['policy']:9} {r['variant'][:28]:28} {r['sampler']:8} {r['steps']:>4} "
            f"{r['evals']:>5} {r['latency_ms']:>7.2f} {r['success_rate']:>8.0%} "
            f"{f'{low:.0%}-{high:.0%}':>13} {r['mean_max_score']:>9.3f}"
        )
    print(f"({', '.join(f'{k}={v}' for k, v in setup.items())})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--diffusion", type=Path, default=None, help="diffusion checkpoint")
    parser.add_argument("--flow", type=Path, default=None, help="flow checkpoint")
    parser.add_argument("--students", nargs="*", default=[], help="distilled checkpoints")
    parser.add_argument(
        "--variants",
        nargs="*",
        type=parse_variant,
        default=None,
        metavar="KIND:HOW:SAMPLER:K[:M]",
        help="instead of VARIANTS, e.g. diffusion:engine:dpmpp:4 flow:warm:euler:10:2 "
        "(HOW: policy = its own loop, engine, warm = M warm steps); none: students only",
    )
    parser.add_argument("--task", default="arm-push")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=100_000)
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--backend", default="auto", help="engine backend (auto, torch, onnx)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the policy")
    parser.add_argument("--repeats", type=int, default=50, help="timed chunks per latency")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    rows: list[dict[str, Any]] = []
    for kind, checkpoint in (("diffusion", args.diffusion), ("flow", args.flow)):
        if checkpoint is not None:
            rows += bench(kind, checkpoint, args)
    setup = {
        "task": args.task, "episodes": args.episodes, "seed": args.seed, "threads": args.threads,
        "backend": args.backend, "torch": torch.__version__, "cpus": os.cpu_count(),
        "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2),
    }  # fmt: skip
    if args.json:
        print(json.dumps({"setup": setup, "rows": rows}, indent=2))
    else:
        print_table(rows, setup)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
