"""What ``robopolicy serve`` serves: the engine protocol and the engine of a checkpoint. Imports
no torch (torch-free engines implement the protocol too).

- :class:`Engine`: what the policy server (:mod:`robopolicy.serve.server`) needs from an
  engine; :class:`~robopolicy.inference.engine.InferenceEngine` is the real one, and torch-free
  fakes (tests, ``hardware.testing.policy_server``) subclass it for the defaults of its optional
  inpainting.
- :func:`load_engine`: what ``robopolicy serve CKPT --backend B --sampler S --steps K`` serves,
  an :class:`~robopolicy.inference.engine.InferenceEngine`. ``backend="policy"`` (the command's
  default) runs the policy's own ``sample``, bit for bit what an in-process call returns (its
  sampler and steps chosen through ``Policy.set_sampler``); ``auto``, ``torch``,
  ``onnx`` or ``cuda-graph`` run any registered sampler (``dpmpp`` too) on the exported graph or
  CUDA graphs, and inpaint. ``device`` is where the policy runs (:func:`resolve_device`):
  ``cuda`` for ``cuda-graph`` (the default there), ``cpu`` otherwise.

The server (:mod:`robopolicy.serve`) depends on this package, never the reverse.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np


class Engine(Protocol):
    """A policy behind the server. The server calls it from its one inference thread with arrays
    it has checked against :meth:`metadata` (and stacked, when it batches requests), so an engine
    only converts, samples and converts back. Prefix inpainting is optional: an engine that
    subclasses this protocol without overriding :attr:`inpaint` and :meth:`run_with_prefix`
    declares none, and the server refuses a ``prefix`` (``robopolicy/serve/protocol.md``)."""

    def metadata(self) -> dict[str, Any]:
        """The policy and how it samples: ``name``, ``policy_type``, ``n_obs_steps``, ``horizon``,
        ``n_action_steps``, ``action_dim``, ``obs`` (key -> ``shape``, ``dtype``), ``fps``,
        ``interface`` (the checkpoint's, :class:`~robopolicy.policies.interface.Interface` as
        JSON), ``sampler``, ``steps``, ``max_steps`` (and ``backend``); the server's
        ``metadata`` reply adds the protocol version and :attr:`inpaint`."""
        ...

    def run(
        self, obs: dict[str, np.ndarray], noise: np.ndarray | None, steps: int | None
    ) -> np.ndarray:
        """(B, Tp, Da) float32 raw-unit actions for checked ``obs`` (each (B, To, ...)); given
        ``noise`` (B, Tp, Da), deterministic; ``steps`` overrides the steps per sample."""
        ...

    @property
    def inpaint(self) -> bool:
        """Whether :meth:`run_with_prefix` works (real-time chunking)."""
        return False

    def run_with_prefix(
        self,
        obs: dict[str, np.ndarray],
        noise: np.ndarray | None,
        steps: int | None,
        prefix: np.ndarray,
        frozen: int | None,
    ) -> np.ndarray:
        """As :meth:`run`, the chunk beginning with ``prefix`` (B, L, Da) raw units, its first
        ``frozen`` actions committed; only where :attr:`inpaint`."""
        raise NotImplementedError(f"{type(self).__name__} does not inpaint")


def load_engine(
    checkpoint: str | Path,
    *,
    backend: str = "policy",
    sampler: str | None = None,
    steps: int | None = None,
    threads: int | None = None,
    fps: float | None = None,
    device: str | None = None,
) -> Engine:
    """The server's engine for ``checkpoint`` (module docstring); a ValueError names a bad
    sampler, step count, backend or device."""
    from robopolicy.inference.engine import load_for_inference

    device = resolve_device(device, backend)
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
