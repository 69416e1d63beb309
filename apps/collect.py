"""``robopolicy collect``: a scripted expert's episodes into an episode store
(:mod:`sim.collect`)."""

from __future__ import annotations

import argparse

from robopolicy.cli import arg, command, print_json


def _cameras(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


@command(
    "collect",
    help="roll out a scripted expert and write its episodes to an episode store (resumable)",
    args=[
        arg("--task", required=True, help="task name (see `robopolicy tasks`)"),
        arg("--expert", default="scripted", help="expert name (default: scripted)"),
        arg("--episodes", type=int, required=True, help="episodes the store should hold"),
        arg("--seed", type=int, default=0, help="episode i uses seed SEED+i (default 0)"),
        arg("--out", required=True, help="episode store to create, or to resume"),
        arg(
            "--quality",
            default="imperfect",
            help="expert quality preset: clean (>= 95%% success) or imperfect "
            "(50-80%%, the default: imperfect data is the point)",
        ),
        arg(
            "--cameras",
            type=_cameras,
            default=(),
            help="comma-separated cameras to record as image.<camera>, e.g. front,wrist",
        ),
        arg("--only-success", action="store_true", help="keep only successful episodes"),
        arg("--json", action="store_true", help="print one JSON document on stdout"),
    ],
)
def collect_command(args: argparse.Namespace) -> int:
    from sim.collect import CollectConfig, collect_demos
    from sim.experts import expert_config

    expert_config(args.task, args.quality, args.expert)  # a bad name fails before any work
    try:
        config = CollectConfig(
            task=args.task,
            out=args.out,
            episodes=args.episodes,
            seed=args.seed,
            expert=args.expert,
            quality=args.quality,
            cameras=args.cameras,
            only_success=args.only_success,
        )
    except ValueError as exc:
        from robopolicy.errors import RobopolicyError

        raise RobopolicyError(str(exc)) from exc
    report = collect_demos(config).as_dict()
    if args.json:
        print_json(report)
        return 0
    rate = report["success_rate"]
    shown = "-" if rate is None else f"{rate:.1%}"
    print(
        f"{report['out']}: {report['episodes']} episodes, {report['frames']} frames "
        f"({report['new_episodes']} new in {report['seconds']:.1f} s); "
        f"expert success {report['successes']}/{report['attempts']} ({shown})"
    )
    return 0
