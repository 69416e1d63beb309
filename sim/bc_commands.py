"""``robopolicy train``, ``robopolicy eval`` and ``robopolicy quickstart``: behaviour cloning
on the simulated tasks. ``eval`` samples with the policy's own loop or the inference engine
(``--sampler --steps --backend --warm-start --device``, :mod:`sim.eval_sampling`). Heavy modules
(torch, the trainer) load when a command runs, so listing commands and presets stays quick."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from robopolicy.cli import arg, command, print_json
from robopolicy.config import did_you_mean
from robopolicy.errors import RobopolicyError
from robopolicy.train.presets import PRESETS, default_preset
from sim.eval_sampling import DEVICES, SAMPLING_FIGURES

log = logging.getLogger(__name__)
EVAL_FIGURES = (
    "success_rate",
    "mean_score",
    "mean_max_score",
    "mean_max_coverage",
    "mean_return",
    "success_ci95_low",
)
"""The figures of :func:`sim.evaluate.evaluate_policy` a ``best_metric`` may name (higher is
better; ``mean_max_coverage`` on Push-T only)."""


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
    evaluate = None if args.no_eval else rollout_callback(args.task, config, args.num_envs)
    if evaluate is not None and config.best_metric not in EVAL_FIGURES:
        raise RobopolicyError(
            f"best_metric: evaluations report no {config.best_metric!r}"
            f"{did_you_mean(config.best_metric, EVAL_FIGURES)}"
        )
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


def rollout_callback(task: str, config: Any, num_envs: int | None, **kwargs: Any) -> Any:
    """``evaluate(policy) -> figures`` for the trainer: ``eval_episodes`` rollouts from seed
    ``eval_seed`` in ``num_envs`` envs (None: ``eval_envs``) as ``config.cadence`` says; extra
    keyword arguments go to :func:`evaluate_policy`."""
    cadence = config.cadence

    def evaluate(policy: Any) -> dict[str, float]:
        from sim.evaluate import evaluate_policy

        figures = evaluate_policy(
            policy,
            task,
            episodes=cadence.eval_episodes,
            seed=cadence.eval_seed,
            num_envs=num_envs or cadence.eval_envs,
            **kwargs,
        )
        return scalar_figures(figures)

    return evaluate


def scalar_figures(figures: dict[str, Any]) -> dict[str, float]:
    """The numbers of an evaluation report (the interval as two entries)."""
    out = {k: float(v) for k, v in figures.items() if _number(v) and k not in ("seed", "num_envs")}
    low, high = figures["success_rate_ci95"]
    return out | {"success_ci95_low": low, "success_ci95_high": high}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@command(
    "eval",
    help="roll a checkpoint out in parallel envs: success rate with its 95% Wilson interval, "
    "mean score, mean max score (Push-T: mean_max_coverage), videos of the first episodes; "
    "the policy's own sampler, or the inference engine's (--backend, --warm-start); the JSON "
    "names sampler, steps, backend, warm_start and device",
    args=[
        arg("checkpoint", metavar="CKPT", help="policy checkpoint directory"),
        arg("--task", default=None, help="task (default: the one on the checkpoint's card)"),
        arg("--episodes", type=int, default=50, help="episodes (default 50)"),
        arg("--seed", type=int, default=100_000, help="episode i uses seed SEED+i (100000)"),
        arg("--num-envs", type=int, default=8, help="parallel envs (default 8)"),
        arg(
            "--sampler",
            default=None,
            help="ddpm, ddim, dpmpp (dpmpp: engine backends only) for diffusion; euler, "
            "midpoint for flow (default: the policy's)",
        ),
        arg("--steps", type=int, default=None, metavar="K", help="denoising steps (the policy's)"),
        arg(
            "--backend",
            default="policy",
            help="policy (default): the policy's own sample(), as robopolicy serve; torch, "
            "onnx (pip install robopolicy[onnx]), cuda-graph or auto (the fastest): the "
            "inference engine (robopolicy.inference)",
        ),
        arg(
            "--warm-start",
            type=int,
            default=None,
            metavar="M",
            help="warm steps (engine backends, M <= K): start each chunk from the previous "
            "one, shifted by Ta and re-noised to step K-M, and run only the last M of the K "
            "steps; an env's first chunk of an episode starts from noise (default: none)",
        ),
        arg(
            "--device",
            choices=DEVICES,
            default="auto",
            help="where the policy runs: auto (default; cuda when present), cpu or cuda",
        ),
        arg("--videos", type=int, default=2, help="mp4s of the first episodes (default 2)"),
        arg("--out", default=None, help="where eval.json and videos go (default ./eval-<ckpt>)"),
        arg("--json", action="store_true", help="print one JSON document on stdout"),
    ],
)
def eval_command(args: argparse.Namespace) -> int:
    from robopolicy.atomic import atomic_write_json
    from robopolicy.policies import read_card
    from sim.eval_sampling import SamplingConfig, load_sampling
    from sim.evaluate import evaluate_policy

    checkpoint = Path(args.checkpoint)
    task = args.task or read_card(checkpoint).get("task")
    if not task:
        raise RobopolicyError(f"{checkpoint}: its card names no task; give --task")
    config = SamplingConfig(args.sampler, args.steps, args.backend, args.warm_start, args.device)
    sampling = load_sampling(checkpoint, config, seed=args.seed)
    out = Path(args.out or f"eval-{checkpoint.resolve().name}")
    figures = evaluate_policy(
        sampling.policy,
        task,
        episodes=args.episodes,
        seed=args.seed,
        num_envs=args.num_envs,
        steps=args.steps,
        videos=args.videos,
        video_dir=out / "videos",
    )
    figures["checkpoint"] = str(checkpoint.resolve())
    figures |= sampling.figures()
    if args.videos or args.out:
        atomic_write_json(out / "eval.json", figures)
    if args.json:
        print_json(figures)
        return 0
    print(describe(figures))
    choice = ", ".join(f"{key} {figures[key]}" for key in SAMPLING_FIGURES)
    print(f"sampling: {choice}")
    for video in figures["videos"]:
        print(f"video: {video}")
    return 0


def describe(figures: dict[str, Any]) -> str:
    """One line of an evaluation's figures."""
    low, high = figures["success_rate_ci95"]
    text = (
        f"{figures['task']}: success {figures['successes']}/{figures['episodes']} = "
        f"{figures['success_rate']:.1%} (95% CI {low:.1%}-{high:.1%}), mean score "
        f"{figures['mean_score']:.3f}, mean max score {figures['mean_max_score']:.3f}"
    )
    if "mean_max_coverage" in figures:
        text += f", mean max coverage {figures['mean_max_coverage']:.3f}"
    return text + f", mean length {figures['mean_length']:.1f} ({figures['eval_s']:.1f} s)"


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
    from sim.quickstart import QuickstartConfig, quickstart

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
