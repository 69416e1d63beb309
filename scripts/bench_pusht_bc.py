"""Push-T behaviour cloning on the real human data within a CPU budget, both policy kinds.

Observations are Diffusion Policy's low-dim ones: the block's 9 keypoints (``data/keypoint``)
and the agent position (``state[:, :2]``, which the preset derives from the replay buffer as
distributed). Each kind (``flow``, ``diffusion``) trains with the ``pusht`` preset for ``--steps``
optimizer steps (default: the preset's) on ``--threads`` threads (no rollouts during
training), then its final EMA checkpoint is evaluated ``--repeats`` times on ``--episodes`` seeded
episodes from seed 100000 (Diffusion Policy's test seeds) with ``robopolicy eval``'s code: the
environments repeat, the policy's sampling noise does not, and one 100-episode figure of a good
policy spreads by about +-0.03. Reports per kind: steps, training wall and CPU seconds, mean max
coverage (Diffusion Policy's Push-T score) and success rate averaged over the repeats, and each
repeat's figures with the success rate's 95% interval. Running it again resumes unfinished
training (the seconds then count this invocation only) and reuses finished runs. ``KEY=VALUE``
arguments override fields of the preset (e.g. ``optim.weight_decay=0.01``) for every kind.

    python scripts/bench_pusht_bc.py --out out/bench-pusht [--kinds flow,diffusion]
        [--steps N] [--threads 1] [--episodes 100] [--repeats 3] [--data PATH] [--json]
        [KEY=VALUE ...]

Needs the ``pusht`` extra and ``../shared/data/pusht/pusht_cchi_v7_replay.zarr`` (or ``--data``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "pusht" / "pusht_cchi_v7_replay.zarr"
EVAL_SEED = 100_000


def preset(kind: str, data: Path, overrides: list[str]) -> Any:
    """The ``pusht`` preset's config for ``kind`` with ``overrides``."""
    from robopolicy.config import apply_overrides
    from robopolicy.train.presets import get_preset

    return apply_overrides(get_preset("pusht", policy=kind, data=str(data)), overrides)


def train(
    kind: str, data: Path, run: Path, steps: int, threads: int, overrides: list[str]
) -> dict[str, float]:
    """Train ``kind`` with the ``pusht`` preset and ``overrides`` (resuming ``run``); wall and
    CPU seconds."""
    from robopolicy.train.trainer import Trainer

    config = preset(kind, data, overrides)
    config.max_steps = steps
    config.cadence.eval_every = 0
    config.num_threads = threads
    wall, cpu = time.perf_counter(), time.process_time()
    result = Trainer(config, card={"task": "pusht"}).fit(run, resume=(run / "checkpoints").is_dir())
    return {
        "step": result.step,
        "train_wall_s": round(time.perf_counter() - wall, 1),
        "train_cpu_s": round(time.process_time() - cpu, 1),
        "checkpoint": str(result.latest),
    }


def evaluate(checkpoint: str, episodes: int, repeats: int) -> dict[str, Any]:
    """Mean max coverage and success rate over ``repeats`` evaluations, and each one's."""
    from robopolicy.policies import load_policy
    from sim.evaluate import evaluate_policy

    policy = load_policy(checkpoint)
    keys = ("mean_max_coverage", "success_rate", "success_rate_ci95", "mean_score", "eval_s")
    runs = []
    for _ in range(repeats):
        figures = evaluate_policy(policy, "pusht", episodes=episodes, seed=EVAL_SEED)
        runs.append({key: figures[key] for key in keys if key in figures})
    mean = {key: float(np.mean([r[key] for r in runs])) for key in keys[:2]}
    return {**mean, "repeats": runs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for runs and results")
    parser.add_argument("--kinds", default="flow,diffusion", help="policy kinds, comma-separated")
    parser.add_argument("--steps", type=int, default=None, help="steps per kind (the preset's)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per training")
    parser.add_argument("--episodes", type=int, default=100, help="evaluation episodes")
    parser.add_argument("--repeats", type=int, default=3, help="evaluations of each checkpoint")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Push-T replay zarr")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="preset overrides")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"{args.data}: no Push-T data (give --data)")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    rows = []
    for kind in args.kinds.split(","):
        run = args.out / kind
        done = args.out / f"{kind}.json"
        steps = args.steps or preset(kind, args.data, args.overrides).max_steps
        if done.is_file() and json.loads(done.read_text())["step"] >= steps:
            rows.append(json.loads(done.read_text()))
            continue
        row = {"kind": kind, **train(kind, args.data, run, steps, args.threads, args.overrides)}
        row.update(evaluate(row["checkpoint"], args.episodes, args.repeats))
        done.write_text(json.dumps(row, indent=2))
        rows.append(row)
    report = {
        "threads": args.threads,
        "overrides": args.overrides,
        "episodes": args.episodes,
        "repeats": args.repeats,
        "eval_seed": EVAL_SEED,
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "rows": rows,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{'kind':10} {'steps':>7} {'train s':>8} {'cpu s':>8} {'max cov':>8} {'success':>8}")
    for row in rows:
        print(
            f"{row['kind']:10} {row['step']:7d} {row['train_wall_s']:8.0f}"
            f" {row['train_cpu_s']:8.0f} {row['mean_max_coverage']:8.3f} {row['success_rate']:8.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
