"""``robopolicy serve CKPT``: serve a policy checkpoint (``robopolicy/serve/protocol.md``).

Once listening it prints one JSON line on stdout, ``{"event": "listening", "host": ...,
"port": ..., "pid": ...}``, so scripts and the control daemon can find a ``--port 0`` server;
logs go to stderr. SIGINT or SIGTERM stops it cleanly (exit 0). ``--delay-ms`` wraps the
engine in a :class:`SlowEngine` (fault injection: a slow policy). :class:`ServerProcess` runs
the command in a subprocess and reads the address it prints (benchmarks, the quickstart's
serving stage, tests).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from robopolicy.cli import arg, command
from robopolicy.errors import RobopolicyError
from robopolicy.inference.serving import Engine, load_engine

TOKEN_ENV = "ROBOPOLICY_SERVE_TOKEN"
# `robopolicy serve` through the real command line; importing this module first registers the
# command even where the installed entry points predate it.
LAUNCH = (
    "import sys, robopolicy.serve.commands; from robopolicy.cli import main; "
    "sys.exit(main(sys.argv[1:]))"
)


class SlowEngine(Engine):
    """Wraps an engine and sleeps ``delay_s`` before each run: a slow policy, for tests and
    ``--delay-ms``."""

    def __init__(self, inner: Engine, delay_s: float) -> None:
        self.inner, self.delay_s = inner, delay_s

    def metadata(self) -> dict[str, Any]:
        return self.inner.metadata()

    @property
    def inpaint(self) -> bool:
        return self.inner.inpaint

    def run(
        self, obs: dict[str, np.ndarray], noise: np.ndarray | None, steps: int | None
    ) -> np.ndarray:
        time.sleep(self.delay_s)
        return self.inner.run(obs, noise, steps)

    def run_with_prefix(
        self,
        obs: dict[str, np.ndarray],
        noise: np.ndarray | None,
        steps: int | None,
        prefix: np.ndarray,
        frozen: int | None,
    ) -> np.ndarray:
        time.sleep(self.delay_s)
        return self.inner.run_with_prefix(obs, noise, steps, prefix, frozen)


@command(
    "serve",
    help="serve a policy checkpoint over TCP (msgpack frames; see robopolicy/serve/protocol.md)",
    args=(
        arg("checkpoint", help="policy checkpoint directory"),
        arg("--host", default="127.0.0.1", help="bind address (non-loopback needs a token)"),
        arg("--port", type=int, default=8765, help="TCP port; 0 picks a free one"),
        arg(
            "--token-file",
            default=None,
            help=f"file whose first line is the shared token (or set ${TOKEN_ENV})",
        ),
        arg(
            "--token",
            default=None,
            help=f"shared token; avoid: any user sees it in ps (use ${TOKEN_ENV} or --token-file)",
        ),
        arg("--threads", type=int, default=None, help="torch threads for inference"),
        arg("--max-batch", type=int, default=1, help="samples stacked per forward pass"),
        arg("--batch-wait-ms", type=float, default=0.0, help="extra wait for requests to stack"),
        arg(
            "--backend",
            default="policy",
            help="policy: the policy's own sample(); auto, torch, onnx or cuda-graph: the "
            "inference engine (robopolicy.inference), auto picking the fastest",
        ),
        arg(
            "--device",
            default=None,
            help="cpu, cuda or auto (cuda when present; default: cuda for cuda-graph, else cpu)",
        ),
        arg("--sampler", default=None, help="ddpm, ddim, dpmpp; euler, midpoint"),
        arg("--steps", type=int, default=None, help="denoising steps per sample"),
        arg("--fps", type=float, default=None, help="control rate, where the checkpoint has none"),
        arg("--delay-ms", type=float, default=0.0, help="fault injection: sleep per inference"),
    ),
)
def serve(args: argparse.Namespace) -> int:
    from robopolicy.serve.config import ServerConfig, read_token
    from robopolicy.serve.server import PolicyServer

    try:
        token = read_token(args.token, args.token_file, os.environ.get(TOKEN_ENV))
        config = ServerConfig(
            host=args.host,
            port=args.port,
            token=token,
            max_batch=args.max_batch,
            batch_wait_ms=args.batch_wait_ms,
        )
    except ValueError as exc:
        raise RobopolicyError(str(exc)) from None
    if args.delay_ms < 0:
        raise RobopolicyError("--delay-ms must be >= 0")

    def build() -> Engine:  # on the server's inference thread, where it will run
        engine = load_engine(
            args.checkpoint,
            backend=args.backend,
            sampler=args.sampler,
            steps=args.steps,
            threads=args.threads,
            fps=args.fps,
            device=args.device,
        )
        return SlowEngine(engine, args.delay_ms / 1e3) if args.delay_ms > 0 else engine

    try:
        server = PolicyServer(build, config)
    except ValueError as exc:
        raise RobopolicyError(str(exc)) from None

    def ready(host: str, port: int) -> None:
        event = {"event": "listening", "host": host, "port": port, "pid": os.getpid()}
        print(json.dumps(event), flush=True)

    try:
        server.run(ready)
    except OSError as exc:
        raise RobopolicyError(f"cannot serve on {args.host}:{args.port}: {exc}") from None
    print("policy server stopped", file=sys.stderr)
    return 0


class ServerProcess:
    """``robopolicy serve CHECKPOINT --port 0 [--flag value ...]`` in a subprocess; stopped on
    exit. ``options`` become flags (``max_batch=16`` -> ``--max-batch 16``; None is left out)."""

    def __init__(self, checkpoint: str | Path, *, timeout: float = 180.0, **options: Any) -> None:
        flags = [str(checkpoint), "--port", "0"]
        for key, value in options.items():
            if value is not None:
                flags += [f"--{key.replace('_', '-')}", str(value)]
        command = [sys.executable, "-c", LAUNCH, "serve", *flags]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready and self.proc.stdout else ""
        if not line:
            self.stop()
            raise RuntimeError(f"the server for {checkpoint} did not start (see its stderr)")
        event = json.loads(line)
        self.host, self.port = event["host"], event["port"]

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, then kill if it hangs."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
