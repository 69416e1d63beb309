"""Evaluate a training run's checkpoints in simulation and plot their success.

Every checkpoint of a run (``<run>/checkpoints/step-*``) is loaded with ``robopolicy.load_policy``
and rolled out by ``sim.evaluate_policy`` on the same episode seeds, so the checkpoints are
compared on the same episodes. The figure has two panels: the success rate of each checkpoint
with its 95% Wilson interval, and each checkpoint's running success rate over the episodes.

    python examples/1_train_policy.py                  # the run to evaluate
    python examples/3_evaluate_and_plot.py             # 50 episodes per checkpoint
    python examples/3_evaluate_and_plot.py --episodes 2 --envs 2

The figure goes to ``--plot`` (PNG, drawn without a display).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

import robopolicy
import sim


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("out/train"), help="a training run")
    parser.add_argument("--task", default="arm-push")
    parser.add_argument("--episodes", type=int, default=50, help="episodes per checkpoint")
    parser.add_argument("--seed", type=int, default=100_000, help="first episode seed")
    parser.add_argument("--envs", type=int, default=8, help="environments in parallel")
    parser.add_argument("--plot", type=Path, default=Path("out/eval/success.png"))
    args = parser.parse_args()
    checkpoints = sorted((args.run / "checkpoints").glob("step-*"))
    if not checkpoints:
        parser.error(f"no checkpoints in {args.run}: run examples/1_train_policy.py first")

    steps, results = [], []
    for checkpoint in checkpoints:
        policy = robopolicy.load_policy(checkpoint)
        figures = sim.evaluate_policy(
            policy, args.task, episodes=args.episodes, seed=args.seed, num_envs=args.envs
        )
        steps.append(int(checkpoint.name.removeprefix("step-")))
        results.append(figures)
        low, high = figures["success_rate_ci95"]
        print(
            f"{checkpoint.name}: success rate {figures['success_rate']:.2f} "
            f"(95% CI {low:.2f}-{high:.2f}), mean max score {figures['mean_max_score']:.3f}"
        )

    matplotlib.use("Agg")  # no display needed
    fig = Figure(figsize=(10, 3.5), dpi=100)
    by_step, by_episode = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    rates = np.array([f["success_rate"] for f in results])
    intervals = np.array([f["success_rate_ci95"] for f in results])
    errors = np.maximum(0.0, [rates - intervals[:, 0], intervals[:, 1] - rates])
    by_step.errorbar(steps, rates, yerr=errors, fmt="o-", capsize=4)
    by_step.set(xlabel="training step", ylabel="success rate", ylim=(0, 1))
    by_step.set_title(f"{args.task}: {args.episodes} episodes per checkpoint", fontsize=9)
    episodes = np.arange(1, args.episodes + 1)
    for step, figures in zip(steps, results, strict=True):
        successes = [e["success"] for e in figures["per_episode"]]
        by_episode.plot(episodes, np.cumsum(successes) / episodes, label=f"step {step}")
    by_episode.set(xlabel="episode", ylabel="success rate so far", ylim=(0, 1))
    by_episode.set_title("episode by episode (same seeds)", fontsize=9)
    by_episode.legend(fontsize=8)
    for ax in (by_step, by_episode):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot)
    print(f"figure: {args.plot}")


if __name__ == "__main__":
    main()
