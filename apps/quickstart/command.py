"""``robopolicy quickstart``: the main job's command line (the stages are
:mod:`apps.quickstart.pipeline`'s)."""

from __future__ import annotations

import argparse
from pathlib import Path

from apps.figures import describe
from robopolicy.cli import arg, command, print_json


@command(
    "quickstart",
    help="the main job on the built-in arm-push task: collect imperfect scripted demos, train "
    "a flow-matching and a diffusion policy, evaluate both, fine-tune the better one with RL "
    "(DSRL), serve the best policy, write report.md, curves and videos (resumable: run it again "
    "with the same --out)",
    args=[
        arg("--out", default="quickstart", help="output directory (default ./quickstart)"),
        arg("--json", action="store_true", help="print one JSON document on stdout"),
        arg("--tiny", action="store_true", help=argparse.SUPPRESS),
    ],
)
def quickstart_command(args: argparse.Namespace) -> int:
    from apps.quickstart.pipeline import QuickstartConfig, quickstart

    config = QuickstartConfig.tiny() if args.tiny else QuickstartConfig()
    result = quickstart(Path(args.out), config)
    if args.json:
        print_json(result)
        return 0
    print(f"report: {result['report']}")
    for kind, figures in result["policies"].items():
        print(f"{kind}: {describe(figures)}")
    tuned = result["finetuned"]
    print(f"{tuned['name']} ({tuned['env_steps']} env steps of DSRL): {describe(tuned)}")
    print(
        f"fine-tuning: success {result['bc_success']:.1%} -> {result['finetuned_success']:.1%} "
        f"on the same episodes; serving {result['served_policy']}"
    )
    serving = result["serving"]
    print(
        f"served {serving['policy']} ({serving['sampler']}, {serving['steps']} steps, "
        f"{serving['backend']}): p50 {serving['p50_ms']:.2f} ms, p99 {serving['p99_ms']:.2f} ms"
    )
    print(
        f"experts on the same seeds: imperfect {result['expert']['imperfect']:.1%}, "
        f"clean {result['expert']['clean']:.1%}; total {result['seconds']:.0f} s"
    )
    return 0
