"""``robopolicy finetune`` and ``robopolicy medium``: RL on the simulated tasks.

``finetune`` dispatches ``--algo`` through :mod:`robopolicy.rl.registry` (each algorithm module
registers itself), builds the algorithm's config from its defaults and the ``key=value``
arguments, and hands it the checkpoint, a :class:`sim.rollout.SimRollouts` of ``--task`` and the
run directory. ``medium`` makes a D4RL-style dataset (:mod:`sim.medium`).
"""

from __future__ import annotations

import argparse

from robopolicy.cli import arg, command, print_json

_OVERRIDES = arg(
    "overrides",
    nargs="*",
    metavar="KEY=VALUE",
    help="config overrides anywhere after the subcommand, e.g. "
    "total_env_steps=200000 clip_coef=0.01 value.hidden_dims=[256,256]",
)


@command(
    "finetune",
    help="fine-tune a policy checkpoint with RL in simulation (resumable: run it again)",
    args=[
        arg("checkpoint", metavar="CKPT", help="policy checkpoint to start from, or 'scratch'"),
        arg(
            "--algo",
            required=True,
            help="RL algorithm registered in robopolicy.rl, e.g. ppo (an unknown name lists them)",
        ),
        arg("--task", required=True, help="task name (see `robopolicy tasks`)"),
        arg("--out", required=True, help="run directory (created, or resumed)"),
        arg("--quiet", action="store_true", help="no progress bar"),
        arg("--json", action="store_true", help="print one JSON document on stdout"),
        _OVERRIDES,
    ],
)
def finetune_command(args: argparse.Namespace) -> int:
    from robopolicy.config import ConfigError, apply_overrides
    from robopolicy.errors import RobopolicyError
    from robopolicy.rl.registry import get_algorithm
    from sim.registry import task_spec
    from sim.rollout import SimRollouts

    task_spec(args.task)  # a bad name fails before any work
    algorithm = get_algorithm(args.algo)
    try:
        config = apply_overrides(algorithm.config(), args.overrides)
    except (ConfigError, ValueError) as exc:
        raise RobopolicyError(f"--algo {args.algo}: {exc}") from exc
    checkpoint = None if args.checkpoint == "scratch" else args.checkpoint
    card = {"task": args.task, "command": args.command_line}
    report = algorithm.run(
        config,
        checkpoint=checkpoint,
        rollouts=SimRollouts(args.task),
        out=args.out,
        card=card,
        progress=not args.quiet,
    )
    if args.json:
        print_json(report)
        return 0
    before, after = report["eval_before"], report["eval_after"]
    print(
        f"{args.algo} on {args.task}: return {before.get('return', 0):.1f} -> "
        f"{after.get('return', 0):.1f}, success {before.get('success_rate', 0):.2f} -> "
        f"{after.get('success_rate', 0):.2f} in {report['env_steps']} env steps "
        f"({report['seconds']:.0f} s); checkpoint {report['checkpoint']}"
    )
    return 0


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
        _OVERRIDES,
    ],
)
def medium_command(args: argparse.Namespace) -> int:
    from robopolicy.errors import RobopolicyError
    from sim.medium import MediumConfig, medium

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
