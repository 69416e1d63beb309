"""``robopolicy train``: behaviour cloning on an episode store, with evaluation rollouts in the
simulated task. Heavy modules (torch, the trainer) load when the command runs, so listing
commands and presets stays quick."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from robopolicy.cli import arg, command, print_json
from robopolicy.errors import RobopolicyError
from robopolicy.train.presets import PRESETS, default_preset


def _preset_list() -> str:
    return ", ".join(f"{p.name} [task {p.task}]" for p in PRESETS.values())


@command(
    "train",
    help="behaviour cloning (flow matching or diffusion) on an episode store, resumable; "
    "every config field is overridable as KEY=VALUE (e.g. optim.lr=3e-4 max_steps=500). "
    f"Presets: {_preset_list()}",
    args=[
        arg("--task", required=True, help="task the data comes from (evaluation rollouts)"),
        arg("--data", required=True, help="episode store (zarr) to train on"),
        arg("--out", required=True, help="run directory (checkpoints, curves, logs)"),
        arg(
            "--preset",
            default=None,
            help=f"named preset (default: the one made for --task): {_preset_list()}",
        ),
        arg("--policy", choices=["flow", "diffusion"], default="flow", help="default flow"),
        arg("--resume", action="store_true", help="continue the run in --out"),
        arg(
            "--num-envs",
            type=int,
            default=None,
            help="parallel envs of evaluation rollouts (default: the config's eval_envs, 8)",
        ),
        arg("--no-eval", action="store_true", help="no evaluation rollouts"),
        arg("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides"),
        arg("--json", action="store_true", help="print one JSON document on stdout"),
    ],
)
def train_command(args: argparse.Namespace) -> int:
    from sim.registry import task_spec

    task_spec(args.task)  # a bad name fails before any work
    config = build_train_config(args.task, args.data, args.preset, args.policy, args.overrides)
    evaluate = None
    if not args.no_eval:
        from sim.evaluate import training_evaluator

        evaluate = training_evaluator(args.task, config, num_envs=args.num_envs)
    card = {"task": args.task, "command": args.command_line}
    from robopolicy.train.trainer import Trainer

    result = Trainer(config, evaluate=evaluate, card=card).fit(args.out, resume=args.resume)
    summary = {
        "out": str(result.out_dir),
        "step": result.step,
        "latest": str(result.latest) if result.latest else None,
        "best": str(result.best) if result.best else None,
        "metrics": result.metrics,
        "seconds": round(result.seconds, 1),
    }
    if args.json:
        print_json(summary)
    else:
        shown = ", ".join(f"{k} {v:.4g}" for k, v in sorted(result.metrics.items()))
        print(f"{summary['out']}: step {result.step} in {summary['seconds']} s; {shown}")
        print(f"latest: {summary['latest']}\nbest:   {summary['best']}")
    return 0


def build_train_config(
    task: str, data: str, preset: str | None, policy: str, overrides: list[str]
) -> Any:
    """The TrainConfig of a ``robopolicy train`` command line."""
    from robopolicy.config import apply_overrides
    from robopolicy.train.presets import get_preset

    name = preset or default_preset(task)
    if name is None:
        raise RobopolicyError(f"no preset for task {task!r}; pick one of {_preset_list()}")
    config = get_preset(name, policy=policy, data=str(Path(data).resolve()))
    return apply_overrides(config, overrides)
