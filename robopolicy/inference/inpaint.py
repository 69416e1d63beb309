"""Sampling with a fixed prefix: the policy side of real-time chunking (RTC).

Shapes (``docs/DESIGN.md``): B batch, Tp predicted steps, Da action size, L prefix length
(actions of the previous chunk that overlap the new one), F frozen (committed) actions, F <= L.

Black, Galliker and Levine (2025, "Real-Time Execution of Action Chunking Flow Policies") make
the next chunk while the current one executes: the first actions of the new chunk are due before
inference ends, so they are *committed* (frozen) to what the current chunk says, and the rest is
inpainted to be consistent with them, so chunk boundaries do not jump between modes. Here the
prefix is given in the new chunk's indices: ``prefix[:, j]`` is the action planned for the time of
new index j (the previous chunk shifted by the actions executed since; past indices j < To - 1
hold the executed history, which a chunk also spans).

- **Diffusion** (replacement, as RePaint and Diffuser's inpainting): after every denoising step
  to level ``l``, ``x <- W renoise(Y, l) + (1 - W) x`` on the prefix, with the prefix ``Y``
  re-noised to ``l`` by fixed noise (the initial noise's own entries) and ``W`` the soft mask
  below (1 on the frozen actions). The last step lands on level "clean", where the frozen
  actions are the committed ones exactly. On the toy task of ``tests/inference`` the soft
  overlap halves the boundary jerk of replacing the frozen actions alone.
- **Flow** (guidance, Black et al.'s Algorithm 1 in our time convention, t = 1 noise, 0 data):
  with the data estimate ``x1 = x - t v(x, t)`` and ``L(x) = 1/2 sum W (Y - x1)^2``, each Euler
  step uses ``v + w grad_x L`` with ``w = min(beta, ((1 - t)^2 + t^2) / (t (1 - t)))`` (their
  ``(1 - tau) / (tau r^2)``, ``tau = 1 - t``). The gradient needs autograd, so flow guidance
  always runs the eager torch network (whatever the engine's backend) and integrates with Euler
  steps. The frozen actions come out close to, not exactly at, the prefix; executors run the
  committed ones anyway.

The soft mask ``W`` (Black et al.) is 1 on the frozen actions, decays as ``c (e^c - 1) / (e - 1)``
with ``c = (L - i) / (L - F + 1)`` over the rest of the prefix, and is 0 beyond it.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from robopolicy.inference.engine import InferenceEngine
from robopolicy.sampling.samplers import Array


@dataclasses.dataclass
class InpaintConfig:
    """Settings of :func:`sample_with_prefix`."""

    guidance_clip: float = 5.0
    """beta: the cap on the flow guidance weight (Black et al. use 5)."""
    soft_mask: bool = True
    """Hold the non-frozen rest of the prefix with decaying weights (else the frozen only)."""

    def __post_init__(self) -> None:
        if not self.guidance_clip > 0:
            raise ValueError(f"guidance_clip must be positive, got {self.guidance_clip}")


def prefix_weights(horizon: int, length: int, frozen: int, *, soft: bool = True) -> np.ndarray:
    """(Tp,) guidance weights: 1 on ``[0, frozen)``, the soft decay on ``[frozen, length)``
    (when ``soft``), 0 from ``length`` on."""
    if not 0 <= frozen <= length <= horizon:
        raise ValueError(f"need 0 <= frozen <= length <= horizon, got {frozen}, {length}")
    weights = np.zeros(horizon, np.float32)
    weights[:frozen] = 1.0
    if soft:
        for i in range(frozen, length):
            c = (length - i) / (length - frozen + 1)
            weights[i] = c * math.expm1(c) / math.expm1(1.0)
    return weights


def sample_with_prefix(
    engine: InferenceEngine,
    obs: Mapping[str, Any],
    prefix: Any,
    *,
    frozen: int | None = None,
    noise: Any = None,
    steps: int | None = None,
    config: InpaintConfig | None = None,
) -> Tensor:
    """(B, Tp, Da) raw-unit actions whose first ``frozen`` (default L) actions follow
    ``prefix`` (B, L, Da) raw units (module docstring). Deterministic given ``noise``."""
    config = config or InpaintConfig()
    c = engine.config
    cond = engine.encode(obs)  # checks obs
    batch = int(cond.shape[0])
    prefix = torch.as_tensor(prefix, dtype=torch.float32)
    if prefix.ndim != 3 or prefix.shape[0] != batch or prefix.shape[2] != c.action_dim:
        raise ValueError(f"prefix must be (B={batch}, L, Da={c.action_dim}): {prefix.shape}")
    if not torch.isfinite(prefix).all():
        raise ValueError("prefix has NaN or inf")
    length = prefix.shape[1]
    frozen = length if frozen is None else frozen
    if not 0 <= frozen <= length <= c.horizon:
        raise ValueError(f"need 0 <= frozen ({frozen}) <= L ({length}) <= Tp ({c.horizon})")
    if noise is None:
        eps = engine.to_torch(engine.randn((batch, c.horizon, c.action_dim))).to(engine.device)
    else:
        eps = torch.as_tensor(noise, dtype=torch.float32).to(engine.device)
        engine.policy.check_noise(eps, batch)
    target = engine.normalize(prefix)
    weights = prefix_weights(c.horizon, length, frozen, soft=config.soft_mask)
    if engine.process.family == "diffusion":
        deterministic = noise is not None
        return _replace(engine, cond, target, weights[:length], eps, steps, deterministic)
    return _guide(engine, cond, engine.to_torch(target), weights, eps, steps, config)


def _replace(
    engine: InferenceEngine,
    cond: Array,
    target: Array,
    weights: np.ndarray,
    eps: Tensor,
    steps: int | None,
    deterministic: bool,
) -> Tensor:
    """Diffusion: blend the re-noised target into the prefix after every step."""
    process = engine.process
    length = target.shape[1]
    x = engine.to_backend(eps) * 1.0  # a copy: ``hold`` writes into it
    fixed = x[:, :length] * 1.0
    w = weights[None, :, None]
    if engine.net.xp == "torch":
        w = torch.as_tensor(w, device=engine.device)

    def hold(x: Array, level: float) -> Array:
        x[:, :length] = w * process.renoise(target, fixed, level) + (1 - w) * x[:, :length]
        return x

    x = hold(x, engine.levels(steps, deterministic=deterministic)[0])
    x = engine.denoise(cond, x, steps=steps, hook=hold, deterministic=deterministic)
    return engine.unnormalize(x)


def _guide(
    engine: InferenceEngine,
    cond: Array,
    target: Tensor,
    weights: np.ndarray,
    x: Tensor,
    steps: int | None,
    config: InpaintConfig,
) -> Tensor:
    """Flow: Euler steps with pseudo-inverse guidance toward the prefix. Runs outside inference
    mode (callers may be inside it): every tensor entering autograd is a fresh clone."""
    policy, process, device = engine.policy, engine.process, engine.device
    with torch.inference_mode(False):
        cond = engine.to_torch(cond).to(device).clone()
        x = x.to(device).clone()
        goal = torch.zeros_like(x)
        goal[:, : target.shape[1]] = target.to(device)
        mask = torch.as_tensor(weights, device=device)[None, :, None].clone()
        for t, t_next in itertools.pairwise(process.grid(steps or engine.steps)):
            weight = config.guidance_clip
            if 0.0 < t < 1.0:
                weight = min(weight, ((1 - t) ** 2 + t**2) / (t * (1 - t)))
            with torch.enable_grad():
                xg = x.detach().requires_grad_(True)
                time_in = torch.full((x.shape[0],), process.model_time(t), device=device)
                v = policy.model.denoise(xg, time_in, cond)
                loss = 0.5 * (mask * (goal - (xg - t * v)) ** 2).sum()
                (grad,) = torch.autograd.grad(loss, xg)
            with torch.no_grad():
                x = x + (t_next - t) * (v + weight * grad)
            engine.net.calls += 1
    return engine.unnormalize(engine.to_backend(x))
