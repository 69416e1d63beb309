"""``robopolicy finetune``: RL on the simulated tasks.

It runs ``--algo`` by name (:func:`robopolicy.rl.registry.finetune`: the algorithm's config
from its defaults and the ``key=value`` arguments) on the checkpoint, a
:class:`sim.rollout.SimRollouts` of ``--task`` and the run directory.
"""

from __future__ import annotations

import argparse

from robopolicy.cli import arg, command, print_json


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
        arg(
            "overrides",
            nargs="*",
            metavar="KEY=VALUE",
            help="config overrides anywhere after the subcommand, e.g. "
            "total_env_steps=200000 clip_coef=0.01 value.hidden_dims=[256,256]",
        ),
    ],
)
def finetune_command(args: argparse.Namespace) -> int:
    from robopolicy.rl.registry import finetune
    from sim.registry import task_spec
    from sim.rollout import SimRollouts

    task_spec(args.task)  # a bad name fails before any work
    report = finetune(
        args.algo,
        None if args.checkpoint == "scratch" else args.checkpoint,
        rollouts=SimRollouts(args.task),
        out=args.out,
        overrides=args.overrides,
        card={"command": args.command_line},
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
