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
graphs, with ``--device cuda``), served by ``robopolicy serve --backend``.
``--device`` is where the policy runs, in-process and in the server. Then requests
per second with 1, 4 and 16 concurrent clients (threads, one connection each) at
:data:`THROUGHPUT` steps, without and with batching (``--max-batch 16``), and ``health``
latency while a client keeps inference busy. A table goes to stdout, or one JSON document with
``--json``; progress to stderr.

``--transport`` instead compares the round trip of our server and client with an openpi-style
websocket loop (:func:`serve_openpi_style`: ``websockets`` + msgpack with numpy arrays as maps,
inference on the event loop), both serving a zero-compute policy of the same shapes, in
alternating rounds of ``--requests`` sequential batch-1 requests, each server a subprocess; it
reports p50/p99 and the CPU each side spent per request. ``--hostile`` runs the attacks of
:mod:`robopolicy.serve.hostile` against ``robopolicy serve`` (the MLP) with a valid client timed
throughout, and reports its latency and the server's RSS before and after each attack.

    python scripts/bench_serve.py [--policies mlp unet] [--backends policy onnx] [--json]
    python scripts/bench_serve.py --device cuda --backends policy torch cuda-graph   # a GPU
    python scripts/bench_serve.py --transport [--requests 2000 --rounds 6]
    python scripts/bench_serve.py --hostile
"""

from __future__ import annotations

import argparse
import functools
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
from robopolicy.inference.serving import Engine
from robopolicy.models.mlp import MLPDenoiserConfig
from robopolicy.models.unet1d import UNet1DConfig
from robopolicy.policies import Policy, save_policy
from robopolicy.policies.diffusion import DiffusionConfig, DiffusionPolicy
from robopolicy.policies.flow import FlowConfig, FlowPolicy
from robopolicy.serve import PolicyClient
from robopolicy.serve.commands import ServerProcess

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
    """``sample(obs, steps=k)`` in-process: the engine on ``backend`` (``policy``: its own loop)."""
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


# ---------------------------------------------------------------- transport: ours vs openpi-style


class ZeroEngine(Engine):
    """A policy that computes nothing (Push-T low-dim shapes): a round trip is all transport."""

    def metadata(self) -> dict[str, Any]:
        obs = {"state": {"shape": [WINDOW["n_obs_steps"], *SHAPES["state"]], "dtype": "float32"}}
        shape = {**WINDOW, "action_dim": SHAPES["action"][0], "max_steps": 1}
        return {"protocol": 1, "name": "zero", "policy_type": "zero", **shape, "obs": obs}

    def run(self, obs: dict[str, np.ndarray], noise: Any, steps: Any) -> np.ndarray:
        shape = (len(obs["state"]), WINDOW["horizon"], *SHAPES["action"])
        return np.zeros(shape, np.float32)


def np_default(obj: Any) -> Any:
    """openpi's msgpack-numpy packing as we read it: an array is a map of bytes, dtype, shape."""
    if isinstance(obj, np.ndarray | np.generic) and obj.dtype.kind in "VOc":
        raise ValueError(f"unsupported dtype {obj.dtype}")
    if isinstance(obj, np.ndarray):
        return {b"__ndarray__": True, b"data": obj.tobytes(), b"dtype": obj.dtype.str,
                b"shape": obj.shape}  # fmt: skip
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    return obj


def np_hook(obj: dict) -> Any:
    if b"__ndarray__" in obj:
        return np.ndarray(buffer=obj[b"data"], dtype=np.dtype(obj[b"dtype"]), shape=obj[b"shape"])
    if b"__npgeneric__" in obj:
        return np.dtype(obj[b"dtype"]).type(obj[b"data"])
    return obj


def serve_openpi_style(engine: ZeroEngine, ready: Callable[[int], None]) -> None:
    """openpi's websocket policy server loop as we read it: ``websockets``' asyncio server
    (compression off, no size limit); on connect the metadata, then per message: unpack, infer
    on the event loop (timed into ``server_timing``), pack, send."""
    import asyncio

    import msgpack
    import websockets.asyncio.server

    async def handler(ws: Any) -> None:
        packer = msgpack.Packer(default=np_default)
        await ws.send(packer.pack(engine.metadata()))
        while True:
            try:
                obs = msgpack.unpackb(await ws.recv(), object_hook=np_hook)
            except websockets.ConnectionClosed:
                return
            start = time.monotonic()
            reply = {"actions": engine.run(obs, None, None)}
            reply["server_timing"] = {"infer_ms": 1e3 * (time.monotonic() - start)}
            await ws.send(packer.pack(reply))

    async def main() -> None:
        serve = websockets.asyncio.server.serve
        async with serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as server:
            ready(server.sockets[0].getsockname()[1])
            await server.serve_forever()

    asyncio.run(main())


def openpi_style_client(port: int) -> Callable[[dict[str, np.ndarray]], Any]:
    """openpi's client as we read it: a ``websockets`` sync connection, the metadata read."""
    import msgpack
    import websockets.sync.client

    ws = websockets.sync.client.connect(f"ws://127.0.0.1:{port}", compression=None, max_size=None)
    ws.recv()
    packer = msgpack.Packer(default=np_default)

    def infer(obs: dict[str, np.ndarray]) -> Any:
        ws.send(packer.pack(obs))
        return msgpack.unpackb(ws.recv(), object_hook=np_hook)

    return infer


def serve_zero(kind: str) -> None:
    """``--serve-zero KIND``: serve :class:`ZeroEngine` and print the port (a subprocess)."""
    from robopolicy.serve.config import ServerConfig
    from robopolicy.serve.server import PolicyServer

    ready = functools.partial(print, flush=True)
    if kind == "openpi":
        serve_openpi_style(ZeroEngine(), ready)
    else:
        PolicyServer(ZeroEngine(), ServerConfig(port=0)).run(lambda host, port: ready(port))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def transport(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Rounds of ``args.requests`` sequential requests, ours and openpi-style alternating."""
    import subprocess

    obs = {"state": np.random.default_rng(1).normal(size=(1, 2, 20)).astype(np.float32)}
    rows = []
    for round_ in range(args.rounds):
        for kind in ("ours", "openpi-style"):
            command = [sys.executable, __file__, "--serve-zero", kind.split("-")[0]]
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
            try:
                port = int(proc.stdout.readline())  # type: ignore[union-attr]
                if kind == "ours":
                    call = functools.partial(PolicyClient(port=port).infer, obs, timeout_s=5)
                else:
                    call = functools.partial(openpi_style_client(port), obs)
                for _ in range(200):
                    call()
                server_cpu, client_cpu = cpu_seconds(proc.pid), time.process_time()
                times = timed(call, args.requests, budget_s=1e9)
                server_cpu = cpu_seconds(proc.pid) - server_cpu
                client_cpu = time.process_time() - client_cpu
            finally:
                proc.terminate()
                proc.wait()
            row = {"path": "transport", "transport": kind, "round": round_, **stats(times)}
            row["server_cpu_us"] = 1e6 * server_cpu / len(times)
            row["client_cpu_us"] = 1e6 * client_cpu / len(times)
            rows.append(row)
            print(f"  round {round_} {kind}: p50 {row['p50_ms'] * 1e3:.0f} us", file=sys.stderr)
    return rows


def print_transport(rows: list[dict[str, Any]]) -> None:
    print(f"{'transport':13} {'p50 us':>7} {'p99 us':>7} {'server CPU us':>13} "
          f"{'client CPU us':>13}  p50 per round (us)")  # fmt: skip
    for kind in ("ours", "openpi-style"):
        mine = [r for r in rows if r.get("transport") == kind]
        keys = [k for k in mine[0] if k.endswith(("_ms", "_us"))]
        med = {k: float(np.median([r[k] for r in mine])) for k in keys}
        rounds = " ".join(f"{r['p50_ms'] * 1e3:.0f}" for r in mine)
        print(f"{kind:13} {med['p50_ms'] * 1e3:>7.0f} {med['p99_ms'] * 1e3:>7.0f} "
              f"{med['server_cpu_us']:>13.0f} {med['client_cpu_us']:>13.0f}  {rounds}")  # fmt: skip


ATTACKS = {  # name: (function of robopolicy.serve.hostile, its keyword arguments)
    "slow-loris: 80 sockets > 64 slots, 3 s": ("slow_loris", {}),
    "slow-loris: 20 earned slots, 3 s": ("slow_loris", {"sockets": 20, "earned": True}),
    "partial bodies: 12 x 64 MiB, 80% sent": ("partial_bodies", {}),
    "partial bodies: 8 x 64 MiB, 4 at once": ("partial_bodies", {"frames": 8, "parallel": 4}),
    "object-count bombs: 10 x 4.2 MB": ("object_bombs", {"frames": 10}),
    "unread replies: 4 clients, 3 s": ("unread_replies", {"rcvbuf": 8192}),
}


def hostile(args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    """``--hostile``: every attack of :data:`ATTACKS` against ``robopolicy serve`` (the MLP,
    DDIM 8 steps) with a valid client timed throughout; the server's RSS before and after."""
    from robopolicy.serve import hostile as h

    checkpoint = save_policy(build("mlp"), workdir / "mlp")
    obs = {"state": np.random.default_rng(1).normal(size=(1, 2, 20)).astype(np.float32)}
    options = {"threads": args.threads, "sampler": "ddim", "steps": 8}
    rows = []
    with ServerProcess(checkpoint, **options) as server:
        host, port, pid = server.host, server.port, server.proc.pid
        attacks = {"none (baseline, 2 s)": lambda: {"attack": "none"}}
        for name, (function, kwargs) in ATTACKS.items():
            attacks[name] = functools.partial(getattr(h, function), host, port, **kwargs)
        for name, attack in attacks.items():
            result = h.measure(host, port, pid, attack, obs, min_seconds=1 + name.startswith("n"))
            rows.append({"path": "hostile", **result, "attack": name})
            print(f"  {name}: {result['valid']}", file=sys.stderr)
        with PolicyClient(host, port) as client:
            rows.append({"path": "hostile-stats", **client.health()["stats"]})
    return rows


def print_hostile(rows: list[dict[str, Any]]) -> None:
    print(f"{'attack':40} {'valid requests':>14} {'failed':>6} {'p50 ms':>7} {'max ms':>7} "
          f"{'RSS MB before -> after':>23}")  # fmt: skip
    for r in rows:
        if r["path"] == "hostile":
            v, before, after = r["valid"], r["rss_before"] / 1e6, r["rss_after"] / 1e6
            print(f"{r['attack']:40} {v['requests']:>14} {v['failures']:>6} {v['p50_ms']:>7.1f} "
                  f"{v['max_ms']:>7.1f} {before:>13.0f} -> {after:<6.0f}")  # fmt: skip
    stats = next((r for r in rows if r["path"] == "hostile-stats"), {})
    print("server counters:", {k: v for k, v in stats.items() if k != "path"})


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
    parser.add_argument("--transport", action="store_true", help="ours against openpi-style")
    parser.add_argument("--requests", type=int, default=2000, help="per --transport round")
    parser.add_argument("--rounds", type=int, default=6, help="--transport rounds")
    parser.add_argument("--hostile", action="store_true", help="attacks, a valid client timed")
    parser.add_argument("--serve-zero", choices=["ours", "openpi"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_zero:
        serve_zero(args.serve_zero)
        return 0
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as workdir:
        if args.transport:
            rows += transport(args)
        elif args.hostile:
            rows += hostile(args, Path(workdir))
        else:
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
    elif args.transport:
        print_transport(rows)
        print(f"({', '.join(f'{k}={v}' for k, v in setup.items())})")
    elif args.hostile:
        print_hostile(rows)
        print(f"({', '.join(f'{k}={v}' for k, v in setup.items())})")
    else:
        print_table(rows, setup)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
