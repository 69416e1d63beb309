"""What ``robopolicy eval`` samples: the policy itself, or the inference engine, from the pieces
``robopolicy serve`` builds its engine from (:func:`robopolicy.inference.serving.load_engine`:
``resolve_device``, ``Policy.set_sampler``, the sampler and backend registries), optionally
warm-started; built step by step so that an error names the flag at fault.

    sampling = load_sampling("ckpt", SamplingConfig("dpmpp", 8, backend="onnx", warm_start=2))
    evaluate_policy(sampling.policy, "arm-push", episodes=50)
    sampling.figures()  # {"sampler": "dpmpp", "steps": 8, "backend": "onnx", "warm_start": 2, ...}

``sampling.policy`` has the policy's interface (``sample(obs, *, noise=None, steps=None) ->
(B, Tp, Da)``, ``reset(done)``, ``config``): a :class:`~robopolicy.policies.base.Policy`, an
:class:`~robopolicy.inference.engine.InferenceEngine`, or a
:class:`~robopolicy.inference.warm_start.WarmStart` around one, whose per-env state
:func:`sim.evaluate.evaluate_policy` resets as each env's episode ends. A choice the checkpoint
cannot run is a :class:`~robopolicy.errors.RobopolicyError` naming the command's flag.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from robopolicy.errors import RobopolicyError

DEVICES = ("auto", "cpu", "cuda")
SAMPLING_FIGURES = ("sampler", "steps", "backend", "warm_start", "device", "net_evals")
"""What :meth:`Sampling.figures` reports."""


@dataclasses.dataclass
class SamplingConfig:
    """How ``robopolicy eval`` samples its checkpoint; each field is the flag of its name."""

    sampler: str | None = None
    """A registered sampler of the policy's family: diffusion ``ddpm``, ``ddim``, ``dpmpp``;
    flow ``euler``, ``midpoint``. None: the policy's own."""
    steps: int | None = None
    """K, denoising steps per chunk; None: the policy's own."""
    backend: str = "policy"
    """``policy``: the policy's own ``sample`` (as ``robopolicy serve``'s default); ``torch``,
    ``onnx``, ``cuda-graph`` or ``auto`` (the fastest): the inference engine."""
    warm_start: int | None = None
    """M: each chunk after an episode's first starts from the previous chunk, shifted by Ta and
    re-noised to step K - M of the K-step grid, and runs only its last M steps (engine backends;
    :mod:`robopolicy.inference.warm_start`). None: every chunk from noise."""
    device: str = "auto"
    """Where the policy runs: ``cpu``, ``cuda`` or ``auto`` (``cuda`` when torch sees a GPU;
    the ``onnx`` backend runs on the CPU)."""

    def __post_init__(self) -> None:
        if self.steps is not None and self.steps < 1:
            raise RobopolicyError(f"--steps must be >= 1, got {self.steps}")
        if self.device not in DEVICES:
            raise RobopolicyError(f"--device must be one of {DEVICES}, got {self.device!r}")
        if self.warm_start is None:
            return
        if self.backend == "policy":
            raise RobopolicyError(
                "--warm-start runs on the inference engine: add --backend torch (or onnx, auto)"
            )
        from robopolicy.inference.warm_start import WarmStartConfig

        with flag("--warm-start"):
            WarmStartConfig(warm_steps=self.warm_start, steps=self.steps)


@dataclasses.dataclass
class Sampling:
    """What evaluation calls, and the choices behind it (module docstring)."""

    policy: Any
    """The policy, the engine, or warm start around the engine."""
    choice: dict[str, Any]
    """``sampler``, ``steps``, ``backend`` (``auto`` resolved), ``warm_start``, ``device``."""
    engine: Any = None
    """The :class:`~robopolicy.inference.engine.InferenceEngine`, on an engine backend."""

    def figures(self) -> dict[str, Any]:
        """The choices, and ``net_evals``: network evaluations so far (None for ``policy``)."""
        return self.choice | {"net_evals": None if self.engine is None else self.engine.net_evals}


@contextlib.contextmanager
def flag(name: str) -> Iterator[None]:
    """Report a ValueError raised inside as a RobopolicyError about command-line flag ``name``."""
    try:
        yield
    except ValueError as exc:
        raise RobopolicyError(f"{name}: {exc}") from None


def load_sampling(checkpoint: str | Path, config: SamplingConfig, *, seed: int = 0) -> Sampling:
    """Load ``checkpoint`` to sample as ``config`` says; ``seed`` seeds the engine's noise."""
    from robopolicy.inference.serving import resolve_device
    from robopolicy.policies import load_policy

    with flag(f"--device {config.device}"):
        device = resolve_device(config.device, config.backend)
    policy = load_policy(checkpoint, device=device)
    if config.backend == "policy":
        return _own_sampling(policy, config, device)
    from robopolicy.inference.engine import EngineConfig, InferenceEngine
    from robopolicy.inference.warm_start import WarmStart, WarmStartConfig
    from robopolicy.policies.base import DenoisingPolicy
    from robopolicy.sampling.samplers import get_sampler

    backend_flag = f"--backend {config.backend}"
    with flag(backend_flag):  # a policy without a sampler (steered, Gaussian), an unknown name
        if not isinstance(policy, DenoisingPolicy):
            raise ValueError(f"a {policy.type_name} policy has no sampler to run on an engine")
        process = policy.process
        engine_config = EngineConfig(
            sampler=config.sampler, steps=config.steps, backend=config.backend, seed=seed
        )
    with flag("--sampler"):
        spec = get_sampler(config.sampler or policy.config.sampler, process.family)
    with flag("--steps"):
        spec.grid(process, config.steps or policy.config.steps)
    with flag(backend_flag):  # e.g. onnx not installed, cuda-graph without a GPU
        engine = InferenceEngine(policy, engine_config, name=Path(checkpoint).name)
    sampler: Any = engine
    if config.warm_start is not None:
        with flag("--warm-start"):
            sampler = WarmStart(engine, WarmStartConfig(warm_steps=config.warm_start))
    choice = {"sampler": spec.name, "steps": engine.steps, "backend": engine.backend}
    return Sampling(sampler, choice | {"warm_start": config.warm_start, "device": device}, engine)


def _own_sampling(policy: Any, config: SamplingConfig, device: str) -> Sampling:
    """The policy's own ``sample`` with ``config``'s sampler and steps (``set_sampler``, as
    ``robopolicy serve --backend policy``). A policy without a sampler (steered) takes
    ``--steps`` per call from the evaluation."""
    from robopolicy.policies.base import DenoisingPolicy

    with flag("--sampler"):
        policy.set_sampler(config.sampler)
    sampled = isinstance(policy, DenoisingPolicy)
    if sampled:
        with flag("--steps"):
            policy.set_sampler(steps=config.steps)
    c = policy.config
    steps = config.steps or (c.steps if sampled else None)
    choice = {"sampler": c.sampler if sampled else None, "steps": steps, "backend": "policy"}
    return Sampling(policy, choice | {"warm_start": None, "device": device})
