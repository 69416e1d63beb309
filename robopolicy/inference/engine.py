"""The inference engine: a policy behind ``metadata()`` and ``run(...)``, sampled by its own loop
or by a chosen sampler on a fast denoiser backend.

Shapes (``docs/DESIGN.md``): B batch, To observation steps, Tp predicted steps, Da action
size, Dc conditioning size, k sampler steps.

:class:`InferenceEngine` is what ``robopolicy serve`` serves (the
:class:`~robopolicy.inference.serving.Engine` protocol: ``metadata()``, ``run(obs, noise,
steps) -> np.ndarray`` and, for real-time chunking, ``inpaint`` and ``run_with_prefix``) and
behaves as a policy where one is expected (``sample(obs, *, noise=None, steps=None) -> (B, Tp,
Da)`` raw-unit torch tensor, ``reset()``, ``config``; so ``sim.evaluate.evaluate_policy`` runs
it). Its backend (``EngineConfig.backend``) says how a chunk is sampled:

- ``policy``: the policy's own ``sample``, bit for bit what an in-process call returns, with the
  sampler and steps chosen through ``Policy.set_sampler``. The only backend of a policy without
  a sampler (Gaussian, steered); it does not inpaint.
- ``torch``, ``onnx``, ``cuda-graph`` (:mod:`robopolicy.inference.backends`) or ``auto``: any
  registered sampler of the policy's family (:mod:`robopolicy.sampling.samplers`, ``dpmpp``
  too) over the denoiser of a :class:`~robopolicy.policies.base.DenoisingPolicy`. The
  observation is checked and encoded once in eager torch (``torch.inference_mode``), then the
  sampler loop calls the backend's denoiser k times: torch tensors for the torch and CUDA-graph
  backends, numpy arrays for ONNX Runtime. Given ``noise`` a stochastic sampler runs its
  deterministic twin (``ddpm`` -> ``ddim``; ``ddim`` with eta > 0 -> eta 0), so sampling from
  given noise is deterministic, as DESIGN asks. ``auto`` picks CUDA graphs on a GPU; on the CPU
  it times the exported ONNX graph against eager torch at batch 1 and keeps the graph only where
  it is measurably faster (``EngineConfig.auto_margin``).

    engine = load_for_inference("ckpt", sampler="dpmpp", steps=8)   # backend auto
    actions = engine.sample({"state": state})                       # (B, Tp, Da)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from robopolicy.config import to_dict
from robopolicy.inference.backends import POLICY, RESERVED, Net, choose_backend, get_backend
from robopolicy.policies.base import DenoisingPolicy, EtaConfig, Policy
from robopolicy.policies.interface import Interface
from robopolicy.sampling.processes import DiffusionProcess, Process
from robopolicy.sampling.samplers import Array, Hook, SamplerSpec, get_sampler

MAX_FLOW_STEPS = 1000
"""``max_steps`` (the most steps a request may ask for) without a diffusion schedule."""


@dataclasses.dataclass
class EngineConfig:
    """How an :class:`InferenceEngine` samples."""

    sampler: str | None = None
    """A registered sampler of the policy's family (``ddpm``, ``ddim``, ``dpmpp``; ``euler``,
    ``midpoint``); None: the policy's configured one."""
    steps: int | None = None
    """k, steps per sample; None: the policy's configured count."""
    backend: str = "auto"
    """How a chunk is sampled: ``policy`` (the policy's own ``sample``), a registered denoiser
    backend (``torch``, ``onnx``, ``cuda-graph``) or ``auto`` (module docstring)."""
    threads: int | None = None
    """Threads for the CPU backends: torch's intra-op threads (process-wide) when given, and
    ONNX Runtime's pool (default: the cores this process may use)."""
    eta: float | None = None
    """DDIM's noise scale for samples without given noise (0 deterministic, 1 DDPM's
    variance); None: the policy config's ``eta`` where it has one. Only ``ddim`` takes it."""
    seed: int | None = None
    """Seed of the noise of samples without given noise (the same noise on every denoiser
    backend); None: unseeded."""
    auto_margin: float = 0.9
    """``auto`` keeps the ONNX graph when its median call takes < this times eager's."""

    def __post_init__(self) -> None:
        if self.backend not in RESERVED:
            get_backend(self.backend)  # a ValueError names the known ones
        if self.backend == POLICY and (self.eta is not None or self.seed is not None):
            raise ValueError("backend 'policy' samples with the policy's own eta and noise")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.eta is not None and not 0 <= self.eta < math.inf:
            raise ValueError(f"eta must be a finite number >= 0, got {self.eta}")
        if not 0 < self.auto_margin <= 1:
            raise ValueError(f"auto_margin must be in (0, 1], got {self.auto_margin}")


class InferenceEngine:
    """A policy sampled by its own loop or by a registered sampler on a denoiser backend (module
    docstring)."""

    training = False

    def __init__(
        self,
        policy: Policy,
        config: EngineConfig | None = None,
        *,
        fps: float | None = None,
        name: str = "",
    ) -> None:
        self.engine_config = config = config or EngineConfig()
        self.policy = policy.eval()
        self.interface = _with_fps(policy.interface, fps)
        """The policy's interface, with ``fps`` where the policy's does not record one."""
        self.fps, self.name = self.interface.fps, name
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        self.device = policy.device
        self.process: Process | None = None
        """The noise process of a denoising policy (None: a policy without a sampler)."""
        self.spec: SamplerSpec | None = None
        """The registered sampler a denoiser backend runs (None on backend ``policy``)."""
        self.steps: int | None = None
        """k, steps per sample (None: a policy without a sampler)."""
        self.options: dict[str, float] = {}
        """The sampler's options (``eta`` for ``ddim``)."""
        self.net: Net | None = None
        """The denoiser backend (None on backend ``policy``)."""
        self.backend = config.backend
        if config.backend == POLICY:
            self._use_own_loop(config)
        else:
            self._use_sampler(config)
        self._generator = torch.Generator(self.device)
        if config.seed is None:
            self._generator.seed()  # a fresh seed: torch's default one is fixed
        else:
            self._generator.manual_seed(config.seed)

    def _use_own_loop(self, config: EngineConfig) -> None:
        """Backend ``policy``: the policy's ``sample``, with the sampler and steps chosen."""
        self.policy.set_sampler(config.sampler, steps=config.steps)
        if isinstance(self.policy, DenoisingPolicy):
            self.process, self.steps = self.policy.process, self.policy.config.steps

    def _use_sampler(self, config: EngineConfig) -> None:
        """A denoiser backend: the chosen sampler and steps, checked, over the chosen network."""
        policy = self.policy
        if not isinstance(policy, DenoisingPolicy):
            raise ValueError(
                f"backend {config.backend!r} runs a sampler over a denoiser, which a "
                f"{policy.type_name} policy has not (backend 'policy' runs its own sample)"
            )
        c, self.process = policy.config, policy.process
        self.spec = get_sampler(config.sampler or c.sampler, self.process.family)
        self.steps = config.steps or c.steps
        self.spec.grid(self.process, self.steps)  # validates steps
        if config.eta is not None and "eta" not in self.spec.options:
            raise ValueError(f"sampler {self.spec.name!r} takes no eta (ddim does)")
        if "eta" in self.spec.options:
            own = c.eta if isinstance(c, EtaConfig) else 0.0
            self.options = {"eta": own if config.eta is None else config.eta}
        self.net, self.backend = choose_backend(
            policy, config.backend, threads=config.threads, margin=config.auto_margin
        )

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        config: EngineConfig | None = None,
        *,
        device: str = "cpu",
        fps: float | None = None,
    ) -> InferenceEngine:
        """Load checkpoint ``path``; ``fps`` where its interface records none."""
        from robopolicy.policies.checkpoint import load_policy

        return cls(load_policy(path, device=device), config, fps=fps, name=Path(path).name)

    # ------------------------------------------------------------------ building blocks

    @property
    def config(self) -> Any:
        """The policy's config (To, Tp, Ta, shapes...), as a policy's ``config``."""
        return self.policy.config

    @property
    def sampler(self) -> str | None:
        """The sampler a chunk runs; None for a policy without one (Gaussian, steered)."""
        if self.spec is not None:
            return self.spec.name
        return self.policy.config.sampler if isinstance(self.policy, DenoisingPolicy) else None

    @property
    def net_evals(self) -> int | None:
        """Network evaluations so far; None on backend ``policy`` (its loop is not counted)."""
        return None if self.net is None else self.net.calls

    def encode(self, obs: Mapping[str, Any]) -> Array:
        """(B, Dc) conditioning of raw-unit ``obs`` (torch tensors or numpy arrays), checked
        against the config, in the backend's array type."""
        tensors = {k: torch.as_tensor(v).to(self.device) for k, v in obs.items()}
        with torch.inference_mode():
            return self.to_backend(self.policy.encode(tensors).float())

    def to_backend(self, x: Tensor) -> Array:
        return x.cpu().numpy() if self._numpy else x

    def to_torch(self, x: Array) -> Tensor:
        return torch.from_numpy(np.asarray(x)) if self._numpy else x

    @property
    def _numpy(self) -> bool:
        """Whether the backend's arrays are numpy's (ONNX Runtime), not torch tensors."""
        return self.net is not None and self.net.xp == "numpy"

    def randn(self, shape: tuple[int, ...]) -> Array:
        """Standard-normal noise of ``shape`` in the backend's array type, drawn by the engine's
        torch generator: one seed gives the same noise on every backend."""
        return self.to_backend(torch.randn(shape, generator=self._generator, device=self.device))

    def levels(self, steps: int | None = None, *, deterministic: bool = False) -> list[float]:
        """The grid of noise levels a k-step sample walks (k + 1 levels, noisiest first)."""
        return self._spec(deterministic).grid(self.process, steps or self.steps)

    def denoise(
        self,
        cond: Array,
        x: Array,
        *,
        steps: int | None = None,
        start: int = 0,
        hook: Hook | None = None,
        deterministic: bool = False,
    ) -> Array:
        """Run steps ``start..k-1`` of the k-step grid from ``x`` (B, Tp, Da, normalized) at
        level ``levels(k)[start]`` to the clean chunk; ``start > 0`` is a warm start."""
        options = {} if deterministic else self.options

        def draw() -> Array:
            return self.randn(tuple(x.shape))

        with torch.inference_mode():
            return self._spec(deterministic).denoise(
                self.process,
                self.net,
                x,
                cond,
                steps or self.steps,
                start=start,
                draw=draw,
                hook=hook,
                **options,
            )

    def _spec(self, deterministic: bool) -> SamplerSpec:
        """The sampler to run; ``deterministic``: its deterministic twin, with default options."""
        if self.spec is None:
            raise ValueError("backend 'policy' runs the policy's own sample: no sampler steps")
        return self.spec.twin if deterministic else self.spec

    # ------------------------------------------------------------------ the policy interface

    def sample(
        self, obs: Mapping[str, Any], *, noise: Any = None, steps: int | None = None
    ) -> Tensor:
        """(B, Tp, Da) raw-unit actions; deterministic when ``noise`` (B, Tp, Da) is given."""
        if self.backend == POLICY:
            tensors = {k: torch.as_tensor(v).to(self.device) for k, v in obs.items()}
            eps = None if noise is None else torch.as_tensor(noise).to(self.device)
            return self.policy.sample(tensors, noise=eps, steps=steps)
        cond = self.encode(obs)
        batch = cond.shape[0]
        if noise is None:
            x = self.randn((batch, self.config.horizon, self.config.action_dim))
        else:
            noise = torch.as_tensor(noise, dtype=torch.float32)
            self.policy.check_noise(noise, batch)
            x = self.to_backend(noise.to(self.device))
        x = self.denoise(cond, x, steps=steps, deterministic=noise is not None)
        return self.unnormalize(x)

    def unnormalize(self, x: Array) -> Tensor:
        """Raw-unit actions (torch) from a normalized chunk in the backend's array type (the
        policy's ``to_actions``: a flow policy clips first)."""
        with torch.inference_mode():
            return self.policy.to_actions(self.to_torch(x).to(self.device))

    def normalize(self, actions: Any) -> Array:
        """A raw-unit chunk (B, T, Da) as normalized actions in the backend's array type."""
        actions = torch.as_tensor(actions, dtype=torch.float32).to(self.device)
        with torch.inference_mode():
            return self.to_backend(self.policy.normalizer.normalize(actions, "action").float())

    def reset(self, done: Any = None) -> None:
        """The policy's ``reset``: the engine itself keeps no state (warm start wraps it)."""
        self.policy.reset(done)

    def eval(self) -> InferenceEngine:
        return self

    def train(self, mode: bool = True) -> InferenceEngine:
        return self

    # ------------------------------------------------------------------ the server's engine

    @property
    def inpaint(self) -> bool:
        """Whether :meth:`run_with_prefix` works: on a denoiser backend, not on ``policy``."""
        return self.backend != POLICY

    def metadata(self) -> dict[str, Any]:
        """The policy and how this engine samples it: the server's ``metadata`` reply less the
        protocol version and ``inpaint``, which the server adds (``robopolicy/serve/protocol.md``);
        ``backend`` only on a denoiser backend."""
        c = self.policy.config
        obs = {k: {"shape": [c.n_obs_steps, *c.shapes[k]], "dtype": "float32"} for k in c.obs_keys}
        for key in c.image_keys:
            obs[key] = {"shape": [c.n_obs_steps, *c.shapes[key]], "dtype": "uint8"}
        diffusion = isinstance(self.process, DiffusionProcess)
        meta = {
            "name": self.name,
            "policy_type": self.policy.type_name,
            "n_obs_steps": c.n_obs_steps,
            "horizon": c.horizon,
            "n_action_steps": c.n_action_steps,
            "action_dim": c.action_dim,
            "obs": obs,
            "fps": self.fps,
            "interface": to_dict(self.interface),
            "sampler": self.sampler,
            "steps": self.steps,
            "max_steps": self.process.num_train_timesteps if diffusion else MAX_FLOW_STEPS,
        }
        return meta if self.backend == POLICY else meta | {"backend": self.backend}

    def run(
        self, obs: dict[str, np.ndarray], noise: np.ndarray | None, steps: int | None
    ) -> np.ndarray:
        """(B, Tp, Da) float32 raw-unit actions for checked numpy ``obs``."""
        with torch.inference_mode():
            return self.sample(obs, noise=noise, steps=steps).cpu().numpy().astype(np.float32)

    def run_with_prefix(
        self,
        obs: dict[str, np.ndarray],
        noise: np.ndarray | None,
        steps: int | None,
        prefix: np.ndarray,
        frozen: int | None,
    ) -> np.ndarray:
        """As :meth:`run`, the chunk beginning with ``prefix`` (B, L, Da) raw units, its first
        ``frozen`` actions committed (real-time chunking,
        :func:`~robopolicy.inference.inpaint.sample_with_prefix`); denoiser backends only."""
        from robopolicy.inference.inpaint import sample_with_prefix

        if not self.inpaint:
            raise NotImplementedError("backend 'policy' does not inpaint (serve --backend auto)")

        with torch.inference_mode():
            actions = sample_with_prefix(self, obs, prefix, frozen=frozen, noise=noise, steps=steps)
            return actions.cpu().numpy().astype(np.float32)


def _with_fps(interface: Interface, fps: float | None) -> Interface:
    """``interface`` run at ``fps``: it fills an unrecorded rate; a ValueError where it
    contradicts the recorded one (a policy acts at the rate of its data)."""
    if fps is None:
        return interface
    if interface.fps is not None and not math.isclose(fps, interface.fps):
        raise ValueError(
            f"fps {fps:g} differs from the {interface.fps:g} the policy's data was recorded at"
        )
    return dataclasses.replace(interface, fps=float(fps))


def load_for_inference(
    path: str | Path,
    sampler: str | None = None,
    steps: int | None = None,
    *,
    backend: str = "auto",
    threads: int | None = None,
    eta: float | None = None,
    seed: int | None = None,
    device: str = "cpu",
    fps: float | None = None,
) -> InferenceEngine:
    """Checkpoint ``path`` with the sampler chosen now: ``load_for_inference(p, "dpmpp", 8)``."""
    config = EngineConfig(sampler, steps, backend=backend, threads=threads, eta=eta, seed=seed)
    return InferenceEngine.from_checkpoint(path, config, device=device, fps=fps)
