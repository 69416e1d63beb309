"""Fine-tune a policy from Python: an RL algorithm, by name, from a behaviour-cloned checkpoint.

What ``robopolicy finetune CKPT --algo ALGO --task arm-push`` does, as one library call:
``robopolicy.finetune`` builds the algorithm's config (its defaults, then ``key=value``
overrides) and runs it on the task's simulated rollouts (``sim.SimRollouts``), writing a run
directory with checkpoints of the usual format and curves. The algorithm evaluates the policy
before and after on the same seeds.

The default is DSRL (SAC over the frozen policy's initial noise: either policy kind) with the
settings the quickstart uses on ``arm-push``; ``--algo fpo`` (flow) or ``--algo dppo``
(diffusion) run with their own defaults, and any config field is a trailing ``key=value``.

    python examples/1_train_policy.py                  # the checkpoint to start from
    python examples/2_finetune_policy.py               # 24000 env steps of DSRL
    python examples/2_finetune_policy.py --env-steps 160 --eval-episodes 2 num_envs=2 \\
        warmup_decisions=16 batch_size=16 eval_every=80 checkpoint_every=80

Running it again with the same ``--out`` resumes the run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import robopolicy
import sim
from robopolicy.rl.dsrl_config import ARM_PUSH

TASK = "arm-push"
DSRL_ON_ARM_PUSH = [*ARM_PUSH, "eval_every=4000", "checkpoint_every=4000"]
"""DSRL's settings for arm-push (why each: robopolicy/rl/dsrl.py)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("out/train/checkpoints/latest"))
    parser.add_argument("--algo", default="dsrl", help="dsrl (default), fpo, dppo")
    parser.add_argument("--out", type=Path, default=Path("out/finetune"), help="the RL run")
    parser.add_argument("--env-steps", type=int, default=24_000, help="environment steps")
    parser.add_argument("--eval-episodes", type=int, default=50, help="episodes per evaluation")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config fields")
    args = parser.parse_args()
    if not args.checkpoint.exists():
        parser.error(f"no checkpoint at {args.checkpoint}: run examples/1_train_policy.py first")

    settings = DSRL_ON_ARM_PUSH if args.algo == "dsrl" else []
    overrides = [
        *settings,
        f"total_env_steps={args.env_steps}",
        f"eval_episodes={args.eval_episodes}",
        *args.overrides,
    ]
    rollouts = sim.SimRollouts(TASK)  # the task's simulated envs, in worker processes
    report = robopolicy.finetune(
        args.algo, args.checkpoint, rollouts=rollouts, out=args.out, overrides=overrides
    )

    before, after = report["eval_before"], report["eval_after"]
    print(f"{args.algo}: {report['env_steps']} env steps in {report['seconds']:.0f} s")
    print(f"success rate {before['success_rate']:.2f} -> {after['success_rate']:.2f}")
    print(f"checkpoint {report['checkpoint']} (curves: {args.out / 'curves.png'})")


if __name__ == "__main__":
    main()
