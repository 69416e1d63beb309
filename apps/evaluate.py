"""``robopolicy eval``: roll a checkpoint out in the simulated task's parallel envs. It samples
with the policy's own loop or the inference engine (``--sampler --steps --backend --warm-start
--device``, :mod:`apps.eval_sampling`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from apps.eval_sampling import DEVICES, SAMPLING_FIGURES
from apps.figures import describe
from robopolicy.cli import arg, command, print_json
from robopolicy.errors import RobopolicyError


@command(
    "eval",
    help="roll a checkpoint out in parallel envs: success rate with its 95% Wilson interval, "
    "mean score, mean max score (Push-T: mean_max_coverage), videos of the first episodes; "
    "the policy's own sampler, or the inference engine's (--backend, --warm-start); the JSON "
    "names sampler, steps, backend, warm_start and device",
    args=[
        arg("checkpoint", metavar="CKPT", help="policy checkpoint directory"),
        arg("--task", default=None, help="task (default: the one on the checkpoint's card)"),
        arg("--episodes", type=int, default=50, help="episodes (default 50)"),
        arg("--seed", type=int, default=100_000, help="episode i uses seed SEED+i (100000)"),
        arg("--num-envs", type=int, default=8, help="parallel envs (default 8)"),
        arg(
            "--sampler",
            default=None,
            help="ddpm, ddim, dpmpp for diffusion; euler, "
            "midpoint for flow (default: the policy's)",
        ),
        arg("--steps", type=int, default=None, metavar="K", help="denoising steps (the policy's)"),
        arg(
            "--backend",
            default="policy",
            help="policy (default): the policy's own sample(), as robopolicy serve; torch, "
            "onnx (pip install robopolicy[onnx]), cuda-graph or auto (the fastest): the "
            "inference engine (robopolicy.inference)",
        ),
        arg(
            "--warm-start",
            type=int,
            default=None,
            metavar="M",
            help="warm steps (engine backends, M <= K): start each chunk from the previous "
            "one, shifted by Ta and re-noised to step K-M, and run only the last M of the K "
            "steps; an env's first chunk of an episode starts from noise (default: none)",
        ),
        arg(
            "--device",
            choices=DEVICES,
            default="auto",
            help="where the policy runs: auto (default; cuda when present), cpu or cuda",
        ),
        arg("--videos", type=int, default=2, help="mp4s of the first episodes (default 2)"),
        arg("--out", default=None, help="where eval.json and videos go (default ./eval-<ckpt>)"),
        arg("--json", action="store_true", help="print one JSON document on stdout"),
    ],
)
def eval_command(args: argparse.Namespace) -> int:
    from apps.eval_sampling import SamplingConfig, load_sampling
    from robopolicy.atomic import atomic_write_json
    from robopolicy.policies import read_card
    from sim.evaluate import evaluate_policy

    checkpoint = Path(args.checkpoint)
    task = args.task or read_card(checkpoint).get("task")
    if not task:
        raise RobopolicyError(f"{checkpoint}: its card names no task; give --task")
    config = SamplingConfig(args.sampler, args.steps, args.backend, args.warm_start, args.device)
    sampling = load_sampling(checkpoint, config, seed=args.seed)
    out = Path(args.out or f"eval-{checkpoint.resolve().name}")
    figures = evaluate_policy(
        sampling.policy,
        task,
        episodes=args.episodes,
        seed=args.seed,
        num_envs=args.num_envs,
        steps=args.steps,
        videos=args.videos,
        video_dir=out / "videos",
    )
    figures["checkpoint"] = str(checkpoint.resolve())
    figures |= sampling.figures()
    if args.videos or args.out:
        atomic_write_json(out / "eval.json", figures)
    if args.json:
        print_json(figures)
        return 0
    print(describe(figures))
    choice = ", ".join(f"{key} {figures[key]}" for key in SAMPLING_FIGURES)
    print(f"sampling: {choice}")
    for video in figures["videos"]:
        print(f"video: {video}")
    return 0
