"""``robopolicy medium``: a D4RL-style "medium" dataset of a locomotion task
(:mod:`apps.medium_dataset`)."""

from __future__ import annotations

import argparse

from robopolicy.cli import arg, command, print_json


@command(
    "medium",
    help="train a Gaussian PPO policy for a fixed budget, then record its stochastic rollouts "
    "(a D4RL-style 'medium' dataset; resumable)",
    args=[
        arg("--task", required=True, help="hopper, walker2d or halfcheetah"),
        arg("--out", required=True, help="episode store to create, or to resume"),
        arg("--budget-steps", type=int, default=None, help="PPO env steps (default: per task)"),
        arg("--episodes", type=int, default=200, help="episodes to record (default 200)"),
        arg("--seed", type=int, default=0, help="training seed; episode i uses seed SEED+i"),
        arg("--num-envs", type=int, default=8, help="envs collecting during training (default 8)"),
        arg("--train-dir", default=None, help="where the expert trains (default OUT.expert)"),
        arg("--quiet", action="store_true", help="no progress bars"),
        arg("--json", action="store_true", help="print one JSON document on stdout"),
        arg(
            "overrides",
            nargs="*",
            metavar="KEY=VALUE",
            help="PPO config overrides anywhere after the subcommand, e.g. clip_coef=0.01 "
            "value.hidden_dims=[256,256]",
        ),
    ],
)
def medium_command(args: argparse.Namespace) -> int:
    from apps.medium_dataset import MediumConfig, medium
    from robopolicy.errors import RobopolicyError

    try:
        config = MediumConfig(
            task=args.task,
            out=args.out,
            budget_steps=args.budget_steps,
            episodes=args.episodes,
            seed=args.seed,
            num_envs=args.num_envs,
            train_dir=args.train_dir,
            overrides=tuple(args.overrides),
        )
    except ValueError as exc:
        raise RobopolicyError(str(exc)) from exc
    report = medium(config, progress=not args.quiet)
    if args.json:
        print_json(report)
        return 0
    print(
        f"{report['out']}: {report['episodes']} episodes, {report['frames']} frames; return "
        f"{report['return_mean']:.1f} ± {report['return_std']:.1f} (normalized score "
        f"{report['score_mean']:.1f}); expert trained {report['expert_env_steps']} env steps"
    )
    return 0
