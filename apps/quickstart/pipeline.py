"""The main job, ``robopolicy quickstart``: demonstrations to a fine-tuned, served policy on
``arm-push``.

Stages, each resumable (run it again with the same ``--out`` and it continues where it stopped):

1. collect imperfect scripted demonstrations (``<out>/demos.zarr``, :mod:`sim.collect`);
2. measure the scripted expert, imperfect and clean, on the evaluation seeds (the reference
   the cloned policies are read against);
3. for each policy type (flow matching, diffusion): train with the ``arm-push`` preset into
   ``<out>/<type>/`` (checkpoints, curves), then evaluate its final EMA weights on the same seeds
   with videos of the first episodes (``<out>/<type>/eval.json``, ``<out>/<type>/videos/``);
4. fine-tune the best of them with DSRL for ``finetune_env_steps`` env steps and evaluate it on
   the same seeds (:mod:`apps.quickstart.finetune`, ``<out>/<type>-dsrl/``);
5. serve the better of the fine-tuned and the best cloned policy (the fine-tuned one only when it
   succeeds more often on the same evaluation episodes) with ``robopolicy serve`` on loopback
   and measure the latency of batch-1 requests through the client (:mod:`apps.quickstart.serve`,
   ``<out>/serving.json``);
6. write ``<out>/report.md``, ``<out>/curves.png`` and ``<out>/quickstart.json``.

Progress goes to stderr throughout (a line per stage, tqdm bars inside stages).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from robopolicy.atomic import atomic_write_json

log = logging.getLogger(__name__)
TASK = "arm-push"


@dataclasses.dataclass(frozen=True)
class QuickstartConfig:
    """Sizes of one quickstart run."""

    demos: int = 200
    """Imperfect scripted demonstrations to collect."""
    policies: tuple[str, ...] = ("flow", "diffusion")
    """Policy types to train, in order."""
    overrides: tuple[str, ...] = ()
    """Overrides applied to the ``arm-push`` preset of every policy."""
    eval_episodes: int = 50
    """Evaluation episodes per policy (seeds ``eval_seed ..``), and for the experts."""
    eval_seed: int = 100_000
    """First evaluation seed (the demonstrations use seeds 0 ..)."""
    num_envs: int = 8
    """Parallel envs of the evaluations."""
    videos: int = 2
    """Videos of the first evaluation episodes, per policy."""
    render_size: tuple[int, int] | None = None
    """(height, width) of the videos (None: the task's default, 240x320)."""
    serve_requests: int = 200
    """Timed ``infer`` requests to the served policy (the latency figures)."""
    finetune_env_steps: int = 24_000
    """Environment steps of DSRL fine-tuning of the best cloned policy, warm-up included."""
    finetune_overrides: tuple[str, ...] = ()
    """Overrides of the DSRL config, after :data:`apps.quickstart.finetune.SETTINGS`."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "policies", tuple(self.policies))
        if not self.policies or not set(self.policies) <= {"flow", "diffusion"}:
            raise ValueError(f"policies must be flow and/or diffusion, got {self.policies}")
        for name in ("demos", "eval_episodes", "num_envs", "serve_requests", "finetune_env_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.videos < 0 or self.eval_seed < 0:
            raise ValueError("videos and eval_seed must be >= 0")

    @classmethod
    def tiny(cls) -> QuickstartConfig:
        """A seconds-long run of every stage, for tests."""
        steps = ("max_steps=24", "checkpoint_every=12", "val_every=1", "batch_size=32")
        small = ("policy.denoiser.hidden_dims=[32,32,32]", "schedule.warmup_steps=4")
        dsrl = ("num_envs=2", "warmup_decisions=16", "batch_size=16", "utd_ratio=1", "steps=2")
        dsrl += ("actor.hidden_dims=[16,16]", "critic_hidden_dims=[16,16]", "log_every=40")
        dsrl += ("eval_every=80", "checkpoint_every=80")
        return cls(
            demos=6,
            overrides=steps + small,
            eval_episodes=2,
            num_envs=2,
            videos=1,
            render_size=(48, 64),
            serve_requests=20,
            finetune_env_steps=160,
            finetune_overrides=dsrl,
        )


def quickstart(out: Path, config: QuickstartConfig = QuickstartConfig()) -> dict[str, Any]:
    """Run every stage into ``out``; return the figures (also in ``quickstart.json``)."""
    from sim.collect import CollectConfig, collect_demos

    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    stages = 2 + len(config.policies) + 3
    _stage(1, stages, f"collecting {config.demos} imperfect scripted demonstrations")
    demos = collect_demos(CollectConfig(TASK, out / "demos.zarr", episodes=config.demos, seed=0))
    _stage(2, stages, f"scripted expert on the {config.eval_episodes} evaluation seeds")
    expert = {q: _expert_success(q, config) for q in ("imperfect", "clean")}
    policies: dict[str, dict[str, Any]] = {}
    for i, kind in enumerate(config.policies):
        _stage(3 + i, stages, f"{kind} policy: train, then evaluate")
        policies[kind] = _train_and_evaluate(out, kind, config)
    best = max(policies, key=lambda k: policies[k]["success_rate"])
    _stage(stages - 2, stages, f"fine-tuning {best}: {config.finetune_env_steps} env steps of DSRL")
    from apps.quickstart.finetune import finetune_stage

    finetuned = finetune_stage(out, best, policies[best], config)
    better = finetuned["success_rate"] > policies[best]["success_rate"]
    served = finetuned["name"] if better else best
    _stage(stages - 1, stages, f"serving the {served} policy on loopback: latency")
    from apps.quickstart.serve import serve_stage

    chosen = {"served_policy": served, "policies": {**policies, finetuned["name"]: finetuned}}
    serving = serve_stage(out, chosen, requests=config.serve_requests)
    _stage(stages, stages, "report")
    evaluations = [*policies.values(), finetuned]
    skipped = next((f["videos_skipped"] for f in evaluations if f.get("videos_skipped")), None)
    result = {
        "task": TASK,
        "bc_success": policies[best]["success_rate"],
        "bc_policy": best,
        **{f"{k}_success": f["success_rate"] for k, f in policies.items()},
        "finetuned_success": finetuned["success_rate"],
        "finetuned_policy": finetuned["name"],
        "served_policy": served,
        "policies": policies,
        "finetuned": finetuned,
        "serving": serving,
        "videos_skipped": skipped,
        "expert": expert,
        "demos": demos.as_dict(),
        "report": str(out / "report.md"),
        "curves": str(_plot(out, policies, finetuned, expert)),
        "seconds": round(time.perf_counter() - started, 1),
    }
    from apps.quickstart.report import write_report

    write_report(out / "report.md", result, config)
    atomic_write_json(out / "quickstart.json", result)
    return result


def _stage(i: int, n: int, text: str) -> None:
    log.info("[%d/%d] %s", i, n, text)


def _expert_success(quality: str, config: QuickstartConfig) -> float:
    """Success rate of the scripted expert of ``quality`` on the evaluation seeds."""
    from sim.collect import rollout
    from sim.experts import make_expert
    from sim.registry import make_task

    env = make_task(TASK)
    expert = make_expert(TASK, env, quality=quality)
    seeds = range(config.eval_seed, config.eval_seed + config.eval_episodes)
    try:
        return float(np.mean([rollout(env, expert, s)[1] for s in seeds]))
    finally:
        env.close()


def _train_and_evaluate(out: Path, kind: str, config: QuickstartConfig) -> dict[str, Any]:
    """Train ``kind`` (resuming), evaluating the final weights through the trainer's callback
    (so the checkpoint's card carries the figures); reuse ``eval.json`` of a finished run."""
    from robopolicy.config import apply_overrides
    from robopolicy.policies import load_policy
    from robopolicy.train.presets import get_preset
    from robopolicy.train.trainer import Trainer
    from sim.evaluate import evaluate_policy, scalar_figures

    run = out / kind
    train = get_preset(TASK, policy=kind, data=str((out / "demos.zarr").resolve()))
    train = apply_overrides(train, [f"eval_episodes={config.eval_episodes}", *config.overrides])
    captured: dict[str, Any] = {}

    def evaluate(policy: Any) -> dict[str, float]:
        figures = evaluate_policy(
            policy,
            TASK,
            episodes=config.eval_episodes,
            seed=config.eval_seed,
            num_envs=config.num_envs,
            videos=config.videos,
            video_dir=run / "videos",
            task_kwargs={"render_size": config.render_size} if config.render_size else None,
        )
        figures.pop("per_episode")
        captured.update(figures)
        return scalar_figures(figures)

    card = {"task": TASK, "command": f"robopolicy quickstart --out {out}"}
    result = Trainer(train, evaluate=evaluate, card=card).fit(run, resume=True)
    report = run / "eval.json"
    if not captured and report.exists():  # finished before: its figures are on disk
        figures = json.loads(report.read_text(encoding="utf-8"))
        if figures.get("step") == result.step:
            log.info("%s: trained and evaluated already (step %d)", kind, result.step)
            return figures
    if not captured:  # finished, but killed before eval.json was written
        evaluate(load_policy(result.latest))
    train_s = max(0.0, result.seconds - (captured["eval_s"] if captured else 0.0))
    figures = captured | {"step": result.step, "checkpoint": str(result.latest), "train_s": train_s}
    atomic_write_json(report, figures)
    return figures


def _plot(
    out: Path,
    policies: dict[str, dict[str, Any]],
    finetuned: dict[str, Any],
    expert: dict[str, float],
) -> Path:
    """``curves.png``: training and validation loss of every policy, the fine-tuning curve
    (success against env steps) and the success rates."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from robopolicy.runlog import read_scalars
    from sim.evaluate import wilson_interval

    fig = Figure(figsize=(17, 3.2), dpi=100)
    axes = [fig.add_subplot(1, 4, i + 1) for i in range(4)]
    for kind in policies:
        rows = read_scalars(out / kind / "scalars.jsonl")
        for ax, key in zip(axes, ("train/loss", "val/loss"), strict=False):
            points = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
            if points:
                ax.plot(*zip(*points, strict=True), label=kind)
    for ax, title in zip(axes, ("training loss", "validation loss"), strict=False):
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    rows = read_scalars(Path(finetuned["run"]) / "scalars.jsonl")
    points = [(r["step"], r["eval/success_rate"]) for r in rows if "eval/success_rate" in r]
    curve = axes[2]
    if points:
        curve.plot(*zip(*points, strict=True), "o-", color="C2", label=finetuned["name"])
    bc = policies[finetuned["base_policy"]]["success_rate"]
    curve.axhline(bc, color="0.5", linestyle="--", label=f"{finetuned['base_policy']} (BC)")
    curve.set_ylim(0, 1)
    curve.set_title("DSRL fine-tuning: success (DSRL's evaluations)", fontsize=9, loc="left")
    curve.set_xlabel("env steps")
    curve.grid(alpha=0.3)
    curve.legend(fontsize=8)
    names = [*policies, finetuned["name"], "expert (imperfect)", "expert (clean)"]
    rates = [f["success_rate"] for f in policies.values()] + [finetuned["success_rate"]]
    rates += [expert["imperfect"], expert["clean"]]
    n = next(iter(policies.values()))["episodes"]
    intervals = [wilson_interval(round(r * n), n) for r in rates]
    errors = [[r - lo for r, (lo, _) in zip(rates, intervals, strict=True)]]
    errors.append([hi - r for r, (_, hi) in zip(rates, intervals, strict=True)])
    colors = [f"C{i}" for i in range(len(policies))] + ["C2", "0.6", "0.8"]
    bars = axes[3]
    bars.bar(names, rates, yerr=errors, capsize=4, color=colors)
    bars.set_ylim(0, 1)
    bars.set_title("success rate (95% Wilson interval)", fontsize=9, loc="left")
    bars.tick_params(axis="x", labelsize=7, labelrotation=15)
    bars.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    path = out / "curves.png"
    fig.savefig(path)
    return path
