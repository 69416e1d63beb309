"""Train a policy from Python: scripted demonstrations, a training preset, evaluation.

What ``robopolicy collect``, ``robopolicy train`` and ``robopolicy eval`` do, as library calls on
the built-in ``arm-push`` task (a 6-joint arm pushes a cube onto a target):

1. an imperfect scripted expert fills an episode store (or ``--data`` names one of yours);
2. the task's preset gives the training config, a few fields changed as ``key=value``;
3. the trainer fits a flow-matching (or diffusion) policy, checkpointing as it goes, and
   evaluates the final weights in simulation through the callback ``sim`` builds for it.

    python examples/1_train_policy.py                 # 200 demos, the preset's 10000 steps
    python examples/1_train_policy.py --demos 6 --steps 24 --width 32 --eval-episodes 2

Running it again with the same ``--out`` resumes both the collection and the training. The
checkpoint it leaves (``out/train/checkpoints/latest``) is what the other examples start from.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import robopolicy
import sim

TASK = "arm-push"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/train"), help="the training run")
    parser.add_argument("--data", type=Path, help="an arm-push episode store (default: collect)")
    parser.add_argument("--demos", type=int, default=200, help="scripted demonstrations")
    parser.add_argument("--policy", choices=["flow", "diffusion"], default="flow")
    parser.add_argument("--steps", type=int, help="optimizer steps (default: the preset's)")
    parser.add_argument("--width", type=int, help="denoiser width (default: the preset's 256)")
    parser.add_argument("--eval-episodes", type=int, default=50, help="evaluation episodes")
    args = parser.parse_args()

    # 1. Demonstrations: episode i is the expert's rollout of seed i (imperfect on purpose).
    data = args.data
    if data is None:
        data = Path("out/demos/arm-push.zarr")
        config = sim.CollectConfig(TASK, data, episodes=args.demos, quality="imperfect")
        demos = sim.collect_demos(config)
        print(f"demonstrations: {demos.episodes} episodes, {demos.frames} frames in {data}")

    # 2. The preset for the task, trained on that store; any field changes as key=value.
    train = robopolicy.get_preset(TASK, policy=args.policy, data=str(data.resolve()))
    overrides = [f"eval_episodes={args.eval_episodes}"]
    if args.steps:
        overrides += [f"max_steps={args.steps}", f"checkpoint_every={max(1, args.steps // 2)}"]
        overrides += [f"schedule.warmup_steps={max(1, args.steps // 5)}", "val_every=1"]
    if args.width:
        overrides.append(f"policy.denoiser.hidden_dims=[{args.width},{args.width},{args.width}]")
    train = robopolicy.apply_overrides(train, overrides)

    # 3. Train; the callback rolls the policy out in simulation when the cadence says (here at
    #    the end), and the best checkpoint is picked by its success rate.
    evaluate = sim.training_evaluator(TASK, train)
    trainer = robopolicy.Trainer(train, evaluate=evaluate, card={"task": TASK})
    result = trainer.fit(args.out, resume=True)

    figures = result.metrics
    print(f"trained {result.step} steps: checkpoint {result.latest}")
    print(
        f"success rate {figures['eval/success_rate']:.2f} "
        f"(95% CI {figures['eval/success_ci95_low']:.2f}-{figures['eval/success_ci95_high']:.2f}) "
        f"over {args.eval_episodes} episodes"
    )


if __name__ == "__main__":
    main()
