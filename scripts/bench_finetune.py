"""Benchmark RL fine-tuning: PPO, DPPO, FPO and DSRL from the same cloned policies and budget.

    python scripts/bench_finetune.py [--tasks arm-push,hopper] [--algos ppo,dppo,fpo,dsrl]
                                     [--out out/bench_finetune] [--threads N] [--smoke] [--quiet]
                                     [--json]
    .venv-rs/bin/python scripts/bench_finetune.py --tasks robosuite-lift   # robosuite's venv

The table in BENCHMARKS.md: both commands with ``--threads 2`` on an idle 2-core machine.

Per task, once: demonstrations, then behaviour cloning of the policy kinds the chosen
algorithms start from. Then per algorithm, one ``robopolicy finetune`` run (the registered entry
point, :mod:`robopolicy.rl.registry`) from that checkpoint, with the task's env-step budget,
evaluated before and after on the same episodes (seeds 100000 …):

- ``dppo`` and ``dsrl`` start from the diffusion checkpoint (DSRL steers it, frozen), ``fpo`` from
  the flow checkpoint (trained on the same demonstrations), ``ppo`` clones a Gaussian MLP on the
  same demonstrations (its own BC, the classic baseline) and fine-tunes that.
- ``arm-push``: 200 imperfect scripted demonstrations, the ``arm-push`` preset (10k BC steps);
  80,000 env steps per algorithm (the budget of the DPPO and FPO fine-tuning tests); success over
  50 episodes.
- ``robosuite-lift``: 30 imperfect scripted demonstrations, 400 BC steps for the diffusion
  policy and 250 for the flow policy, which learns faster (calibrated on 40 episodes: diffusion
  400 steps 62%, flow 400 steps 98%; 1,000 steps or 100 demonstrations give 100%); DPPO's
  robomimic window (To 1, Tp 4, Ta 4; 20 diffusion steps, the last 10 fine-tuned); 20,000 env
  steps per algorithm (the simulator runs ~120 steps/s per core); success over 50 episodes, an
  episode ending at success.
  Needs robosuite (its own venv, ``.venv-rs``); skipped with a message elsewhere.
- ``hopper`` (Hopper-v5): 200 episodes of ``robopolicy medium --task hopper``; DPPO's Hopper
  settings (To 1, Tp 4, Ta 4, 512³ MLP, 20 diffusion steps, the last 10 fine-tuned; 40 envs ×
  500 decisions = 80,000 env steps per iteration, also for PPO and FPO); 230,000 env steps per
  algorithm (three on-policy iterations ran 238.7k: a chunk cut by an episode's end executes
  fewer than 4 actions, so a 240k budget started a fourth); return over 10 episodes.

Sized for an hour on 2 idle cores: with ``--threads 2`` on an idle 2-core machine (2026-12-04)
the whole table took 43 min from an empty ``--out`` (arm-push 8.5, Hopper 16, Lift 18.5; data
and cloning included). DSRL is the slowest per env step on the MuJoCo tasks, its updates
dominate (BENCHMARKS.md). A row's ``seconds`` is its run's wall-clock, its evaluations included.
``--smoke`` runs every stage with tiny sizes (a few hundred env steps per row) into
``<out>/smoke`` to check the script, never the figures.

Resumable: data, BC runs and RL runs continue where they stopped, and a row whose result file
(``<out>/<profile>/<task>/<algo>.json``) matches its settings is not run again. Curves: each run
directory's ``scalars.jsonl``, ``curves.png`` and TensorBoard, and ``<task>/curves.png`` with
every algorithm's training and evaluation metric against env steps. Prints the table, or one
JSON document with ``--json`` (progress on stderr).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench_finetune_tasks import ALGOS, TASKS, TaskBench, smoke  # beside this script

from robopolicy.atomic import atomic_write_json

log = logging.getLogger("bench_finetune")
STARTS_FROM = {"ppo": "diffusion", "dppo": "diffusion", "fpo": "flow", "dsrl": "diffusion"}
"""The BC checkpoint each algorithm gets (PPO reads only its demonstrations, from the card)."""
EVAL_SEED = 100_000


# -- stages ---------------------------------------------------------------------------------------


def prepare_data(bench: TaskBench, root: Path, progress: bool) -> dict[str, Any]:
    """The task's demonstrations in ``root`` (created or resumed); a report with ``path``."""
    if bench.demos == "scripted":
        from sim.collect import CollectConfig, collect_demos

        path = root / "demos.zarr"
        config = CollectConfig(bench.task, path, episodes=bench.episodes, seed=0)
        return {"path": str(path), **collect_demos(config, progress=progress).as_dict()}
    from apps.medium_dataset import MediumConfig, medium

    path = root / "medium.zarr"
    config = MediumConfig(
        task=bench.task,
        out=path,
        budget_steps=bench.medium_budget,
        episodes=bench.episodes,
        overrides=bench.medium_overrides,
    )
    return {"path": str(path), **medium(config, progress=progress)}


def train_bc(bench: TaskBench, kind: str, data: str, root: Path, threads: int) -> dict[str, Any]:
    """Behaviour-clone ``kind`` on ``data`` into ``root/bc-<kind>`` (resumed when there)."""
    from robopolicy.config import apply_overrides
    from robopolicy.train.presets import get_preset
    from robopolicy.train.trainer import Trainer

    config = get_preset("arm-push", policy=kind, data=data)
    config = apply_overrides(config, [f"num_threads={threads}", *bench.bc[kind]])
    card = {"task": bench.task, "command": "scripts/bench_finetune.py"}
    result = Trainer(config, card=card).fit(root / f"bc-{kind}", resume=True)
    checkpoint = Path(result.latest).resolve()
    return {"checkpoint": str(checkpoint), "step": result.step, "seconds": result.seconds}


def row_settings(bench: TaskBench, algo: str, threads: int) -> list[str]:
    """The ``key=value`` config of one row: budget, the shared evaluation, the task's settings."""
    return [
        f"torch_threads={threads}",
        f"total_env_steps={bench.env_steps}",
        f"eval_episodes={bench.eval_episodes}",
        f"eval_envs={bench.eval_envs}",
        f"eval_seed={EVAL_SEED}",
        *bench.algos[algo],
    ]


def run_row(
    bench: TaskBench, algo: str, checkpoint: str, root: Path, threads: int, progress: bool
) -> dict[str, Any]:
    """Fine-tune ``checkpoint`` with ``algo`` into ``root/<algo>`` (resumed when there)."""
    from robopolicy.rl.registry import finetune
    from sim.rollout import SimRollouts

    settings = row_settings(bench, algo, threads)
    rollouts = SimRollouts(bench.task, task_kwargs=dict(bench.task_kwargs))
    card = {"command": "scripts/bench_finetune.py"}
    out = root / algo
    report = finetune(
        algo,
        checkpoint,
        rollouts=rollouts,
        out=out,
        overrides=settings,
        card=card,
        progress=progress,
    )
    before, after = report["eval_before"], report["eval_after"]
    return {
        "task": bench.task,
        "algo": algo,
        "policy": "gaussian" if algo == "ppo" else STARTS_FROM[algo],
        "metric": bench.metric,
        "before": before[bench.metric],
        "after": after[bench.metric],
        "env_steps": report["env_steps"],
        "seconds": report["seconds"],
        "eval_episodes": bench.eval_episodes,
        "eval_before": before,
        "eval_after": after,
        "bc_checkpoint": checkpoint,
        "checkpoint": report["checkpoint"],
        "curves": str(out / "curves.png"),
        "settings": settings,
    }


def plot_task(root: Path, bench: TaskBench, algos: list[str]) -> Path:
    """``root/curves.png``: the training episodes' and the evaluations' metric of every
    algorithm against env steps."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from robopolicy.runlog import read_scalars

    train_key = "train/success_rate" if bench.metric == "success_rate" else "train/episode_return"
    keys = (train_key, f"eval/{bench.metric}")
    fig = Figure(figsize=(11, 3.4), dpi=100)
    axes = [fig.add_subplot(1, 2, i + 1) for i in range(2)]
    for algo in algos:
        rows = read_scalars(root / algo / "scalars.jsonl")
        for ax, key in zip(axes, keys, strict=True):
            points = [(r["step"], r[key]) for r in rows if key in r]
            if points:
                ax.plot(*zip(*points, strict=True), "o-" if "eval" in key else "-", label=algo)
    for ax, key in zip(axes, keys, strict=True):
        ax.set_title(f"{bench.task}: {key}", fontsize=9, loc="left")
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    path = root / "curves.png"
    fig.savefig(path)
    return path


def bench_task(
    bench: TaskBench, algos: list[str], root: Path, threads: int, progress: bool
) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """Every stage of one task: (preparation report, rows, failed algorithms)."""
    root.mkdir(parents=True, exist_ok=True)
    log.info("%s: demonstrations (%d episodes, %s)", bench.task, bench.episodes, bench.demos)
    data = prepare_data(bench, root, progress)
    prepared: dict[str, Any] = {"data": data, "bc": {}}
    for kind in sorted({STARTS_FROM[a] for a in algos}):
        log.info("%s: behaviour cloning (%s)", bench.task, kind)
        prepared["bc"][kind] = train_bc(bench, kind, data["path"], root, threads)
    rows, failed = [], []
    for algo in algos:
        path = root / f"{algo}.json"
        if path.exists():
            row = json.loads(path.read_text(encoding="utf-8"))
            if row["settings"] == row_settings(bench, algo, threads):
                log.info("%s %s: done before", bench.task, algo)
                rows.append(row)
                continue
        log.info("%s %s: %d env steps", bench.task, algo, bench.env_steps)
        checkpoint = prepared["bc"][STARTS_FROM[algo]]["checkpoint"]
        try:
            row = run_row(bench, algo, checkpoint, root, threads, progress)
        except Exception:  # one broken algorithm must not cost the other rows of an hour's run
            log.error("%s %s failed:\n%s", bench.task, algo, traceback.format_exc())
            failed.append(algo)
            continue
        atomic_write_json(path, row)
        rows.append(row)
    if rows:
        prepared["curves"] = str(plot_task(root, bench, [r["algo"] for r in rows]))
    return prepared, rows, failed


# -- the command line ---------------------------------------------------------------------------


def _names(text: str, known: tuple[str, ...] | list[str], what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise SystemExit(f"unknown {what} {unknown or text!r}; choose from {', '.join(known)}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated task names")
    parser.add_argument("--algos", default=",".join(ALGOS), help="comma-separated algorithms")
    parser.add_argument("--out", default="out/bench_finetune", help="where everything goes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each run")
    parser.add_argument("--smoke", action="store_true", help="tiny budgets: checks the script")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    tasks = _names(args.tasks, list(TASKS), "task")
    algos = _names(args.algos, ALGOS, "algorithm")
    profile = "smoke" if args.smoke else "full"
    started = time.perf_counter()
    document: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
        "profile": profile,
        "threads": args.threads,
        "tasks": {},
        "skipped": {},
        "failed": {},
        "rows": [],
    }
    for name in tasks:
        bench = smoke(TASKS[name]) if args.smoke else TASKS[name]
        if bench.needs and importlib.util.find_spec(bench.needs) is None:
            reason = (
                f"{bench.needs} is not installed in this Python ({sys.executable}); run "
                f".venv-rs/bin/python scripts/bench_finetune.py --tasks {name}"
            )
            log.warning("%s: skipped: %s", name, reason)
            document["skipped"][name] = reason
            continue
        root = Path(args.out) / profile / name
        prepared, rows, failed = bench_task(bench, algos, root, args.threads, not args.quiet)
        document["tasks"][name] = {
            "env_steps": bench.env_steps,
            "eval_episodes": bench.eval_episodes,
            **prepared,
        }
        document["rows"] += rows
        if failed:
            document["failed"][name] = failed
    document["seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        json.dump(document, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_table(document)
    return 1 if document["failed"] else 0


def print_table(document: dict[str, Any]) -> None:
    """The rows of ``document`` as a plain-text table."""
    head = f"{'task':<15} {'algo':<5} {'from':<9} {'metric':<12} {'before':>8} {'after':>8}"
    print(head + f" {'env steps':>10} {'seconds':>8}  curves")
    for row in document["rows"]:
        digits = 2 if row["metric"] == "success_rate" else 1
        print(
            f"{row['task']:<15} {row['algo']:<5} {row['policy']:<9} {row['metric']:<12} "
            f"{row['before']:>8.{digits}f} {row['after']:>8.{digits}f} {row['env_steps']:>10} "
            f"{row['seconds']:>8.0f}  {row['curves']}"
        )
    for name, reason in document["skipped"].items():
        print(f"{name}: skipped ({reason})")
    for name, failed in document["failed"].items():
        print(f"{name}: failed: {', '.join(failed)} (tracebacks above)")
    print(
        f"profile {document['profile']}, {document['threads']} torch thread(s) per run; "
        f"{document['seconds']} s in all; {document['machine']}"
    )


if __name__ == "__main__":
    sys.exit(main())
