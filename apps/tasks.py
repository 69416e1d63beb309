"""``robopolicy tasks``: the registered simulation tasks."""

from __future__ import annotations

import argparse

from robopolicy.cli import arg, command, print_json


@command(
    "tasks",
    help="list the registered simulation tasks",
    args=[arg("--json", action="store_true", help="print one JSON document on stdout")],
)
def tasks(args: argparse.Namespace) -> int:
    from sim.registry import load_tasks

    described = [spec.describe() for spec in sorted(load_tasks().values(), key=lambda s: s.name)]
    if args.json:
        print_json(described)
        return 0
    width = max((len(d["name"]) for d in described), default=4)
    for d in described:
        extra = f"  [needs .[{d['extra']}]]" if d["extra"] else ""
        print(
            f"{d['name']:<{width}}  {d['family']:<10} {d['max_episode_steps']:>5} steps  "
            f"{d['description']}{extra}"
        )
    return 0
