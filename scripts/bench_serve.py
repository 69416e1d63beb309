"""Latency and throughput of a policy in-process and through ``robopolicy serve`` on loopback.

Policies are built here, untrained (latency does not depend on the weights), low-dim Push-T
sized: state (20,), action (2,), To=2, Tp=16, Ta=8, 100 train timesteps. ``mlp`` is DPPO's
residual MLP (512, 512, 512); ``unet`` Diffusion Policy's UNet-1D at (64, 128, 256) (4.6M
parameters); ``flow-mlp`` the MLP as a flow policy. For each backend of ``--backends`` and
each sampler and step count of :data:`SAMPLERS` it reports p50/p99 latency of one batch-1 sample
in-process and through the server (``PolicyClient.infer`` round trip; the server is a
subprocess, and ``forward`` is its own median inference time, so the difference is the
server's overhead), both on ``--threads`` threads and never at the same time. Backend
``policy`` is the policy's own loop (``policy.sample`` under ``inference_mode``; ``robopolicy
serve``): with DDPM over all 100 steps it is the plain many-step baseline. The others are
:class:`robopolicy.inference.engine.InferenceEngine` backends (``onnx``: the exported denoiser
in ONNX Runtime; ``torch``: eager with the engine's loop; ``cuda-graph``: captured CUDA
graphs, with ``--device cuda``), served by ``robopolicy serve --backend``; only they have
``dpmpp``. ``--device`` is where the policy runs, in-process and in the server. Then requests
per second with 1, 4 and 16 concurrent clients (threads, one connection each) at
:data:`THROUGHPUT` steps, without and with batching (``--max-batch 16``), and ``health``
latency while a client keeps inference busy. A table goes to stdout, or one JSON document with
``--json``; progress to stderr.

    python scripts/bench_serve.py [--policies mlp unet] [--backends policy onnx] [--json]
    python scripts/bench_serve.py --device cuda --backends policy torch cuda-graph   # a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robopolicy.data.normalize import Normalizer
from robopolicy.inference.engine import EngineConfig, InferenceEngine
from robopolicy.inference.serving import ServerProcess
from robopolicy.models.mlp import MLPDenoiserConfig
from robopolicy.models.unet1d import UNet1DConfig
from robopolicy.policies import Policy, save_policy
from robopolicy.policies.diffusion import DiffusionConfig, DiffusionPolicy
from robopolicy.policies.flow import FlowConfig, FlowPolicy
from robopolicy.serve import PolicyClient

WINDOW = dict(n_obs_steps=2, horizon=16, n_action_steps=8)
SHAPES = {"state": (20,), "action": (2,)}
POLICIES: dict[str, tuple[type, type, Any]] = {
    "mlp": (DiffusionPolicy, DiffusionConfig, MLPDenoiserConfig(hidden_dims=(512,) * 3)),
    "unet": (DiffusionPolicy, DiffusionConfig, UNet1DConfig(down_dims=(64, 128, 256))),
    "flow-mlp": (FlowPolicy, FlowConfig, MLPDenoiserConfig(hidden_dims=(512,) * 3)),
}
SAMPLERS = {  # policy class -> (sampler, step counts); the first entry is the baseline
    DiffusionPolicy: [("ddpm", (100,)), ("ddim", (16, 8, 4, 1)), ("dpmpp", (8, 4, 2))],
    FlowPolicy: [("euler", (100, 16, 8, 4, 1)), ("midpoint", (4,))],
}
OWN_SAMPLERS = ("ddpm", "ddim", "euler", "midpoint")  # what the policy backend can run
THROUGHPUT = {DiffusionPolicy: ("ddim", 8), FlowPolicy: ("euler", 8)}
CLIENTS = (1, 4, 16)


def build(name: str) -> Policy:
    cls, config_cls, denoiser = POLICIES[name]
    extra = {"num_train_timesteps": 100} if config_cls is DiffusionConfig else {}
    config = config_cls(shapes=SHAPES, denoiser=denoiser, **WINDOW, **extra)
    rng = np.random.default_rng(0)
    arrays = {k: rng.normal(size=(1000, *s)).astype(np.float32) for k, s in SHAPES.items()}
    torch.manual_seed(0)
    return cls(config, Normalizer.fit(arrays, config.normalizer_modes())).eval()


def timed(call: Callable[[], Any], repeats: int, budget_s: float) -> list[float]:
    """Milliseconds of ``call()``: ``repeats`` timed calls (at least 5 within ``budget_s``)."""
    for _ in range(3):
        call()
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < repeats and (len(times) < 5 or time.perf_counter() < deadline):
        start = time.perf_counter()
        call()
        times.append(1e3 * (time.perf_counter() - start))
    return times


def stats(times: list[float]) -> dict[str, float]:
    return {
        "p50_ms": float(np.percentile(times, 50)),
        "p99_ms": float(np.percentile(times, 99)),
        "n": len(times),
    }


def throughput(port: int, clients: int, obs: dict[str, np.ndarray], seconds: float) -> dict:
    """Requests per second and latency with ``clients`` threads asking back to back."""
    times: list[list[float]] = [[] for _ in range(clients)]
    stop = threading.Event()

    def ask(mine: list[float]) -> None:
        with PolicyClient(port=port) as client:
            client.infer(obs, timeout_s=30)
            while not stop.is_set():
                start = time.perf_counter()
                client.infer(obs, timeout_s=30)
                mine.append(1e3 * (time.perf_counter() - start))

    threads = [threading.Thread(target=ask, args=(t,)) for t in times]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # connected and warm
    counted = sum(len(t) for t in times)
    start = time.perf_counter()
    time.sleep(seconds)
    done, elapsed = sum(len(t) for t in times) - counted, time.perf_counter() - start
    stop.set()
    for thread in threads:
        thread.join()
    return {"req_per_s": done / elapsed, **stats([x for t in times for x in t])}


def health_under_load(port: int, obs: dict[str, np.ndarray], repeats: int) -> dict:
    """Latency of ``health`` while another client keeps the inference thread busy."""
    stop = threading.Event()

    def busy() -> None:
        with PolicyClient(port=port) as client:
            while not stop.is_set():
                client.infer(obs, timeout_s=30)

    thread = threading.Thread(target=busy)
    thread.start()
    time.sleep(0.2)
    with PolicyClient(port=port) as client:
        times = timed(lambda: client.health(timeout_s=5), repeats, budget_s=5.0)
    stop.set()
    thread.join()
    return stats(times)


def bench(name: str, args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    policy = build(name)
    params = sum(p.numel() for p in policy.parameters())
    checkpoint = save_policy(policy, workdir / name)
    policy = policy.to(args.device)
    obs_np = {"state": np.random.default_rng(1).normal(size=(1, 2, 20)).astype(np.float32)}
    obs = {k: torch.from_numpy(v).to(args.device) for k, v in obs_np.items()}
    rows: list[dict[str, Any]] = []
    for backend in args.backends:
        for sampler, step_counts in SAMPLERS[type(policy)]:
            if backend == "policy" and sampler not in OWN_SAMPLERS:
                continue
            base = {"policy": name, "params": params, "backend": backend, "sampler": sampler}
            sample = local_sampler(policy, backend, sampler, args.threads)
            for steps in step_counts:
                with torch.inference_mode():  # .cpu(): the actions in hand, GPU work done
                    local = timed(
                        lambda f=sample, k=steps: f(obs, steps=k).cpu(), args.repeats, args.budget
                    )
                rows.append({**base, "steps": steps, "path": "in-process", **stats(local)})
            torch.set_num_threads(args.threads)
            print(f"  {name} {backend} {sampler}: in-process done", file=sys.stderr)
            options = {"backend": backend, "threads": args.threads, "sampler": sampler}
            options["device"] = args.device
            with ServerProcess(checkpoint, **options) as server:
                client = PolicyClient(port=server.port)
                for steps in step_counts:
                    forward: list[float] = []

                    def ask(c: PolicyClient = client, k: int = steps, out: list = forward) -> None:
                        reply = c.infer(obs_np, steps=k, timeout_s=60)
                        out.append(reply[1]["timing"]["inference_ms"])

                    remote = timed(ask, args.repeats, args.budget)
                    inner = {"server_forward_ms": float(np.median(forward))}
                    rows.append(
                        {**base, "steps": steps, "path": "server", **stats(remote), **inner}
                    )
                client.close()
            print(f"  {name} {backend} {sampler}: server done", file=sys.stderr)
        sampler, steps = THROUGHPUT[type(policy)]
        for max_batch in (1, 16):
            options = {"backend": backend, "threads": args.threads, "sampler": sampler}
            options |= {"steps": steps, "max_batch": max_batch, "device": args.device}
            with ServerProcess(checkpoint, **options) as server:
                for clients in CLIENTS:
                    figures = throughput(server.port, clients, obs_np, args.seconds)
                    row = {"policy": name, "backend": backend, "sampler": sampler, "steps": steps}
                    row |= {"clients": clients, "path": "throughput", "max_batch": max_batch}
                    rows.append({**row, **figures})
                if max_batch == 1:
                    health = health_under_load(server.port, obs_np, args.repeats)
                    row = {"policy": name, "backend": backend, "path": "health", "sampler": sampler}
                    rows.append({**row, **health})
            print(f"  {name} {backend} throughput max_batch {max_batch} done", file=sys.stderr)
    return rows


def local_sampler(policy: Policy, backend: str, sampler: str, threads: int) -> Any:
    """``sample(obs, steps=k)`` in-process: the policy's own loop, or an inference engine."""
    if backend == "policy":
        policy.set_sampler(sampler)
        return policy.sample
    return InferenceEngine(policy, EngineConfig(sampler, backend=backend, threads=threads)).sample


def print_table(rows: list[dict[str, Any]], setup: dict[str, Any]) -> None:
    print(f"{'policy':9} {'params':>7} {'backend':7} {'sampler':9} {'k':>4} {'path':10} "
          f"{'p50 ms':>8} {'p99 ms':>8} {'forward':>8}")  # fmt: skip
    for r in rows:
        if r["path"] in ("in-process", "server"):
            params = f"{r['params'] / 1e6:.2f}M"
            forward = f"{r['server_forward_ms']:8.2f}" if "server_forward_ms" in r else ""
            print(
                f"{r['policy']:9} {params:>7} {r['backend']:7} {r['sampler']:9} {r['steps']:>4} "
                f"{r['path']:10} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {forward}"
            )
    print(f"\n{'policy':9} {'backend':7} {'sampler':9} {'k':>4} {'batch':>5} {'clients':>7} "
          f"{'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")  # fmt: skip
    for r in rows:
        if r["path"] == "throughput":
            print(
                f"{r['policy']:9} {r['backend']:7} {r['sampler']:9} {r['steps']:>4} "
                f"{r['max_batch']:>5} {r['clients']:>7} {r['req_per_s']:>8.1f} "
                f"{r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f}"
            )
    for r in rows:
        if r["path"] == "health":
            print(
                f"health while {r['policy']} ({r['backend']}) infers back to back: "
                f"p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms"
            )
    print(f"({', '.join(f'{k}={v}' for k, v in setup.items())})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policies", nargs="+", default=["mlp", "unet"], choices=POLICIES)
    parser.add_argument("--threads", type=int, default=2, help="torch threads, both sides")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (cuda-graph needs cuda)")
    parser.add_argument(
        "--backends",
        nargs="+",
        default=["policy", "onnx"],
        choices=["policy", "torch", "onnx", "cuda-graph"],
        help="policy: the policy's own loop and robopolicy serve; else the inference engine",
    )
    parser.add_argument("--repeats", type=int, default=100, help="timed calls per latency row")
    parser.add_argument("--budget", type=float, default=4.0, help="seconds per latency row")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per throughput row")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.policies:
            rows += bench(name, args, Path(workdir))
    load = os.getloadavg()[0]  # other work on the machine skews every figure
    setup = {"torch": torch.__version__, "threads": args.threads, "batch": 1, **WINDOW}
    setup |= {
        "cpus": os.cpu_count(),
        "load_before": round(load_before, 2),
        "load_after": round(load, 2),
    }
    setup |= {"state_dim": 20, "action_dim": 2, "repeats": args.repeats}
    if args.json:
        print(json.dumps({"setup": setup, "rows": rows}, indent=2))
    else:
        print_table(rows, setup)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
