"""The engine ``robopolicy serve`` serves, and that command as a subprocess.

- :func:`load_engine`: what ``robopolicy serve CKPT --backend B --sampler S --steps K`` serves.
  ``backend="policy"`` (the command's default) keeps the server's own engine
  (:class:`~robopolicy.serve.engine.PolicyEngine`: the policy's ``sample``, bit-for-bit what an
  in-process call returns; samplers ddpm/ddim/euler/midpoint through ``set_sampler``). Any other
  backend (``auto``, ``torch``, ``onnx``, ``cuda-graph``) serves an
  :class:`~robopolicy.inference.engine.InferenceEngine`: any registered sampler (``dpmpp``
  too), on the exported graph or CUDA graphs. ``device`` is where the policy runs
  (:func:`resolve_device`): ``cuda`` for ``cuda-graph`` (the default there), ``cpu`` otherwise.
  ``robopolicy eval`` builds its policy or engine the same way (:mod:`sim.eval_sampling`).
- :class:`ServerProcess` runs ``robopolicy serve CKPT --port 0 ...`` in a subprocess and reads
  the address it prints (benchmarks, the quickstart's serving stage, tests).
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

# `robopolicy serve` through the real command line; importing the command module first
# registers it even where the installed entry points predate it.
LAUNCH = (
    "import sys, robopolicy.serve.commands; from robopolicy.cli import main; "
    "sys.exit(main(sys.argv[1:]))"
)


def load_engine(
    checkpoint: str | Path,
    *,
    backend: str = "policy",
    sampler: str | None = None,
    steps: int | None = None,
    threads: int | None = None,
    fps: float | None = None,
    device: str | None = None,
) -> Any:
    """The server's engine for ``checkpoint`` (module docstring); a ValueError names a bad
    sampler, step count, backend or device."""
    device = resolve_device(device, backend)
    if backend == "policy":
        from robopolicy.policies.base import choose_sampler
        from robopolicy.serve.engine import PolicyEngine

        engine = PolicyEngine.from_checkpoint(checkpoint, threads=threads, fps=fps, device=device)
        choose_sampler(engine.policy, sampler, steps)
        return engine
    from robopolicy.inference.engine import load_for_inference

    return load_for_inference(
        checkpoint, sampler, steps, backend=backend, threads=threads, fps=fps, device=device
    )


def resolve_device(device: str | None, backend: str) -> str:
    """Where ``backend`` runs the policy: ``device`` itself (``cpu``, ``cuda``, ``cuda:1``);
    ``auto``: ``cuda`` when torch sees a GPU, unless the backend runs on the CPU (``onnx``);
    None: ``cuda`` for ``cuda-graph``, else ``cpu``. A ValueError for CUDA without a GPU."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() and backend != "onnx" else "cpu"
    device = device or ("cuda" if backend == "cuda-graph" else "cpu")
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: this machine has no CUDA GPU (torch sees none)")
    return device


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
