"""Warm start: begin each chunk from the previous one instead of from pure noise (RTI-DP).

Shapes (``docs/DESIGN.md``): B batch, To observation steps, Tp predicted steps, Ta executed
steps, Da action size, k sampler steps, m warm steps.

Duan, Yin and Kragic (2025, "Real-time Iteration Scheme for Diffusion Policy") carry the real-
time-iteration idea of optimal control over to diffusion policies: consecutive chunks overlap in
time, so the previous solution, shifted, is a good initial guess. :class:`WarmStart` wraps an
:class:`~robopolicy.inference.engine.InferenceEngine` (STYLE habit 5: behaviour by wrapping):

1. keep the last normalized chunk of every row (B, Tp, Da);
2. on the next call, shift it by the actions executed since (``shift``, default Ta): index j
   takes old index j + shift, and the tail repeats the last action;
3. re-noise it to the level of step ``k - m`` of the k-step grid (diffusion: ``sqrt(abar) a +
   sqrt(1 - abar) eps``; flow: ``t eps + (1 - t) a`` with ``t = m / k``);
4. run only the last m steps. Cost: m instead of k network evaluations per chunk.

Rows without a previous chunk start cold (all k steps). Whoever runs episodes says when a row's
episode ended: ``reset(done)`` with ``done`` (B,) bool makes those rows start cold next call and
keeps the others warm (:func:`sim.evaluate.evaluate_policy` calls it after every chunk in which an
env's episode ended); ``reset()`` forgets every row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from robopolicy.inference.engine import InferenceEngine
from robopolicy.sampling.samplers import Array


@dataclasses.dataclass
class WarmStartConfig:
    """How :class:`WarmStart` reuses the previous chunk."""

    warm_steps: int = 2
    """m: steps run from the re-noised previous chunk (the last m of the k-step grid)."""
    shift: int | None = None
    """Actions executed between two calls (the previous chunk moves by this); None: Ta."""
    steps: int | None = None
    """k of the grid the warm steps are taken from (also the cold-start steps); None: the
    engine's."""

    def __post_init__(self) -> None:
        if self.warm_steps < 1:
            raise ValueError(f"warm_steps must be >= 1, got {self.warm_steps}")
        if self.shift is not None and self.shift < 0:
            raise ValueError(f"shift must be >= 0, got {self.shift}")
        if self.steps is not None and self.warm_steps > self.steps:
            raise ValueError(f"warm_steps ({self.warm_steps}) > steps ({self.steps})")


class WarmStart:
    """An engine that warm-starts every chunk from the previous one (module docstring)."""

    def __init__(self, engine: InferenceEngine, config: WarmStartConfig | None = None) -> None:
        self.engine = engine
        self.warm = config or WarmStartConfig()
        self.k = self.warm.steps or engine.steps
        if self.warm.warm_steps > self.k:
            raise ValueError(f"warm_steps ({self.warm.warm_steps}) > steps ({self.k})")
        self.shift = engine.config.n_action_steps if self.warm.shift is None else self.warm.shift
        self._prev: Array | None = None
        self._ended = torch.zeros(0, dtype=torch.bool)  # (B,) rows whose episode ended

    @property
    def config(self) -> Any:
        return self.engine.config

    training = False

    def eval(self) -> WarmStart:
        return self

    def train(self, mode: bool = True) -> WarmStart:
        return self

    def reset(self, done: Any = None) -> None:
        """Forget the previous chunk of the rows where ``done`` (B,) bool is True (their
        episodes ended: they start cold next call), or of every row when None."""
        if done is None or self._prev is None:
            self._prev = None
            return
        done = torch.as_tensor(done, dtype=torch.bool).cpu()
        if done.shape != self._ended.shape:
            raise ValueError(f"done has shape {tuple(done.shape)}, want {tuple(self._ended.shape)}")
        self._ended |= done

    def sample(
        self, obs: Mapping[str, Any], *, noise: Any = None, steps: int | None = None
    ) -> Tensor:
        """(B, Tp, Da) raw-unit actions. ``noise`` (B, Tp, Da), when given, is the initial noise
        of cold rows and the re-noising noise of warm ones (deterministic); ``steps`` is
        ignored (the grid is fixed by the config)."""
        e = self.engine
        cond = e.encode(obs)
        batch = cond.shape[0]
        shape = (batch, e.config.horizon, e.config.action_dim)
        if noise is None:
            eps = e.randn(shape)
        else:
            noise = torch.as_tensor(noise, dtype=torch.float32)
            e.policy.check_noise(noise, batch)
            eps = e.to_backend(noise.to(e.device))
        deterministic = noise is not None
        if self._prev is None or self._prev.shape[0] != batch:
            warm = torch.zeros(batch, dtype=torch.bool)
        else:
            warm = ~self._ended
        out = eps * 1.0
        if (~warm).any():
            cold = _index(e, ~warm)
            out[cold] = e.denoise(cond[cold], eps[cold], steps=self.k, deterministic=deterministic)
        if warm.any():
            rows = _index(e, warm)
            start = self.k - self.warm.warm_steps
            level = e.levels(self.k, deterministic=deterministic)[start]
            guess = e.process.renoise(shift_chunk(self._prev[rows], self.shift), eps[rows], level)
            out[rows] = e.denoise(
                cond[rows], guess, steps=self.k, start=start, deterministic=deterministic
            )
        self._prev, self._ended = out, torch.zeros(batch, dtype=torch.bool)
        return e.unnormalize(out)


def shift_chunk(chunk: Array, shift: int) -> Array:
    """(B, Tp, Da) -> (B, Tp, Da): index j takes ``chunk[:, j + shift]``; indices past the end
    repeat the last action (torch or numpy)."""
    if shift == 0:
        return chunk * 1.0
    horizon = chunk.shape[1]
    index = [min(j + shift, horizon - 1) for j in range(horizon)]
    return chunk[:, index]


def _index(engine: InferenceEngine, mask: Tensor) -> Any:
    return mask.numpy() if engine.net.xp == "numpy" else mask.to(engine.device)
