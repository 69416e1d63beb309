"""Two checkouts side by side: serving latency and a DPPO iteration, this one against ``--base``.

    python scripts/bench_compare.py --base ../base [--rounds 2] [--json]

A change that only moves code must not make it slower; this measures that on a noisy machine by
alternating the two checkouts (base, this, base, this, ...) in one run and reporting ratios
(this / base) of the medians over rounds. Each checkout runs with its own virtualenv,
``<checkout>/.venv/bin/python`` (``pip install torch==2.13.0 && pip install -e '.[dev]'``), and
its own ``scripts/bench_serve.py`` and ``robopolicy`` command, so each measures its own code.

- **Serving**: ``bench_serve.py --json --policies mlp`` (DPPO's residual MLP, backends
  ``policy`` and ``onnx``): p50 of one batch-1 sample in-process and through ``robopolicy serve``
  per sampler and step count, and requests per second at 1/4/16 clients.
- **DPPO**: one demonstration store and one small diffusion checkpoint on ``arm-push``, made by
  the base checkout (so it is also a check that this checkout loads the base's checkpoints),
  then per round ``robopolicy finetune CKPT --algo dppo`` for ``--iterations`` iterations
  (8 envs × 50 decisions); the figure is the median ``time/iteration_s`` of its
  ``scalars.jsonl``, the first iteration left out (warm-up).

Progress goes to stderr, the table (or one JSON document) to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
DPPO = ["num_envs=8", "n_steps=50", "update_epochs=2"]
DPPO += ["eval_every=0", "eval_episodes=1", "eval_envs=1", "checkpoint_every=0", "torch_threads=1"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, type=Path, help="the checkout to compare with")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (default 2)")
    parser.add_argument("--iterations", type=int, default=4, help="DPPO iterations per run")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args(argv)
    trees = {"base": args.base.resolve(), "this": HERE}
    for name, tree in trees.items():
        if not (tree / ".venv/bin/python").exists():
            parser.error(f"{name} checkout {tree} has no .venv (see the module docstring)")
    serve: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    dppo: dict[str, list[float]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory() as work:
        checkpoint = make_checkpoint(trees["base"], Path(work))
        for round_ in range(args.rounds):
            for name, tree in trees.items():
                log(f"round {round_ + 1}/{args.rounds}: {name} ({tree})")
                serve[name].append(serve_figures(tree))
                out = Path(work) / f"dppo-{name}-{round_}"
                dppo[name].append(dppo_iteration(tree, checkpoint, out, args.iterations))
    rows = [
        {"figure": key, "base": median(serve["base"], key), "this": median(serve["this"], key)}
        for key in sorted(serve["base"][0])
        if key in serve["this"][0]
    ]
    rows.append(
        {
            "figure": "dppo iteration s",
            "base": statistics.median(dppo["base"]),
            "this": statistics.median(dppo["this"]),
        }
    )
    for row in rows:
        row["ratio"] = row["this"] / row["base"]
    setup = {"rounds": args.rounds, "cpus": os.cpu_count(), "load": round(os.getloadavg()[0], 2)}
    if args.json:
        print(json.dumps({"setup": setup, "rows": rows}, indent=2))
    else:
        print(f"{'figure':<48} {'base':>10} {'this':>10} {'this/base':>10}")
        for row in rows:
            figures = f"{row['base']:>10.3f} {row['this']:>10.3f} {row['ratio']:>10.2f}"
            print(f"{row['figure']:<48} {figures}")
        print(f"({', '.join(f'{k}={v}' for k, v in setup.items())})")
    return 0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(tree: Path, *command: str, cwd: Path | None = None) -> str:
    """``command`` under ``tree``'s virtualenv, from ``cwd`` (default ``tree``); its stdout."""
    env = os.environ | {"PYTHONPATH": str(tree), "MPLBACKEND": "Agg"}
    done = subprocess.run(
        [str(tree / ".venv/bin/python"), *command],
        cwd=cwd or tree,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    return done.stdout


def robopolicy(tree: Path, *args: str) -> str:
    return run(tree, "-m", "robopolicy", *args)


def make_checkpoint(tree: Path, work: Path) -> Path:
    """20 scripted arm-push episodes and 300 steps of behaviour cloning (diffusion)."""
    log("demonstrations and a diffusion checkpoint (base checkout)")
    data, out = work / "push.zarr", work / "bc"
    robopolicy(tree, "collect", "--task", "arm-push", "--episodes", "20", "--seed", "0",
               "--out", str(data), "--quality", "clean")  # fmt: skip
    robopolicy(tree, "train", "--task", "arm-push", "--data", str(data), "--out", str(out),
               "--policy", "diffusion", "--no-eval", "max_steps=300")  # fmt: skip
    return out / "checkpoints" / "latest"


def serve_figures(tree: Path) -> dict[str, float]:
    """``bench_serve.py``'s p50 latencies (ms) and throughputs (requests/s), keyed by row."""
    document = json.loads(run(tree, "scripts/bench_serve.py", "--json", "--policies", "mlp"))
    figures = {}
    for row in document["rows"]:
        where = f"{row['backend']} {row['sampler']}"
        if row["path"] in ("in-process", "server"):
            figures[f"{where} k={row['steps']} {row['path']} p50 ms"] = row["p50_ms"]
        elif row["path"] == "throughput":
            name = f"{where} {row['clients']} clients batch {row['max_batch']} req/s"
            figures[name] = row["req_per_s"]
    return figures


def dppo_iteration(tree: Path, checkpoint: Path, out: Path, iterations: int) -> float:
    """Median seconds per DPPO iteration (the first left out) of a fresh run."""
    steps = iterations * 8 * 50 * 8  # N·T·Ta: every iteration runs its N·T decisions
    robopolicy(tree, "finetune", str(checkpoint), "--algo", "dppo", "--task", "arm-push",
               "--out", str(out), "--quiet", f"total_env_steps={steps}", *DPPO)  # fmt: skip
    rows = [json.loads(line) for line in (out / "scalars.jsonl").read_text().splitlines()]
    times = [r["time/iteration_s"] for r in rows if "time/iteration_s" in r]
    if len(times) < 2:
        raise RuntimeError(f"{out}: {len(times)} iterations logged, need 2 or more")
    return statistics.median(times[1:])


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs if key in r)


if __name__ == "__main__":
    raise SystemExit(main())
