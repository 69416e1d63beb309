"""Samplers: DDPM, DDIM and DPM-Solver++ (2M) for diffusion policies; Euler and midpoint for flow
policies. One registry, one short loop per sampler, the same code on torch tensors and numpy.

Shapes (``../shared/DESIGN.md``): B batch, Tp predicted steps, Da action size, Dc conditioning
size, k sampler steps, K train timesteps.

A sampler moves a normalized chunk ``x`` (B, Tp, Da) along a descending **grid of levels** from
noisy to clean, calling ``net(x, t, cond) -> (B, Tp, Da)`` where ``t`` is a Python float, the
network's own time input. Levels are

- diffusion: timesteps (floats; integers for the standard grids), then -1 for "clean"
  (``abar(-1) = 1``); ``t`` is the timestep itself. DDPM/DDIM use the policy's "leading" grid
  (:func:`~robopolicy.policies.diffusion.schedulers.leading_timesteps`), DPM-Solver++ the
  "trailing" one (``K - 1`` first), whose first step starts from pure noise.
- flow: times from 1 (noise) down to 0 (data), uniform; ``t`` is ``time * time_scale``.

The loops use arithmetic, ``.clip`` and ``net`` only, so torch (eager, CUDA graphs) and numpy
(ONNX Runtime) arrays both work. A warm start runs ``grid[start:]`` from a chunk re-noised to
level ``grid[start]`` (:meth:`DiffusionProcess.renoise`); ``hook(x, level)`` after every step is
how inpainting holds a prefix. DPM-Solver++ (Lu et al., 2022) is the data-prediction multistep
solver of order 2 with a first-order first and last step, as diffusers'
``DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2,
timestep_spacing="trailing")`` (checked against it in ``tests/inference``).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

from robopolicy.config import did_you_mean
from robopolicy.sampling.processes import DiffusionProcess, FlowProcess, Process, logsnr

Array = Any
"""A ``torch.Tensor`` or an ``np.ndarray`` (the backend's own array type)."""
Net = Callable[[Array, float, Array], Array]
"""``(x (B, Tp, Da), t, cond (B, Dc)) -> (B, Tp, Da)``: noise, clean chunk or velocity."""
Draw = Callable[[], Array]
"""A standard-normal array shaped like ``x`` (stochastic samplers)."""
Hook = Callable[[Array, float], Array]
"""Called after each step with ``x`` and the level it reached; returns the (edited) ``x``."""


SamplerFn = Callable[..., Array]


@dataclasses.dataclass(frozen=True)
class SamplerSpec:
    """A registered sampler."""

    name: str
    family: str
    run: SamplerFn
    """``run(process, net, x, cond, levels, *, draw, hook) -> x`` at the last level."""
    spacing: str
    """The grid it walks (see :meth:`~robopolicy.sampling.processes.DiffusionProcess.grid`)."""
    evals_per_step: int = 1
    """Network evaluations per step."""
    deterministic: str | None = None
    """For a stochastic sampler, the one run when noise is given (DESIGN: deterministic)."""
    options: tuple[str, ...] = ()
    """Keyword options ``run`` takes beyond the common ones (``ddim``: ``eta``); a sample from
    given noise runs with their defaults, which are deterministic."""

    def grid(self, process: Process, steps: int) -> list[float]:
        return process.grid(steps, self.spacing)


SAMPLERS: dict[str, SamplerSpec] = {}


def register_sampler(
    name: str,
    *,
    family: str,
    spacing: str,
    evals_per_step: int = 1,
    deterministic: str | None = None,
    options: tuple[str, ...] = (),
) -> Callable[[SamplerFn], SamplerFn]:
    """Decorator: ``fn`` becomes sampler ``name``."""

    def decorate(fn: SamplerFn) -> SamplerFn:
        if name in SAMPLERS:
            raise ValueError(f"sampler {name!r} registered twice")
        spec = SamplerSpec(name, family, fn, spacing, evals_per_step, deterministic, options)
        SAMPLERS[name] = spec
        return fn

    return decorate


def get_sampler(name: str, family: str | None = None) -> SamplerSpec:
    """The sampler ``name`` (a ValueError with a did-you-mean when unknown or of another
    family)."""
    names = [n for n, s in SAMPLERS.items() if family is None or s.family == family]
    if name not in names:
        raise ValueError(f"no {family or ''} sampler {name!r}{did_you_mean(name, names)}")
    return SAMPLERS[name]


def _steps(levels: Sequence[float]) -> list[tuple[float, float]]:
    if len(levels) < 2:
        raise ValueError("a grid needs at least two levels")
    return list(itertools.pairwise(levels))


def _hooked(x: Array, level: float, hook: Hook | None) -> Array:
    return x if hook is None else hook(x, level)


def _posterior_var(a: float, a_next: float) -> float:
    """DDPM's "fixed_small" variance of the step from ``abar = a`` to ``a_next``."""
    return max((1 - a_next) / (1 - a) * (1 - a / a_next), 0.0)


@register_sampler("ddim", family="diffusion", spacing="leading", options=("eta",))
def ddim(
    p: DiffusionProcess,
    net: Net,
    x: Array,
    cond: Array,
    levels: Sequence[float],
    *,
    draw: Draw | None = None,
    hook: Hook | None = None,
    eta: float = 0.0,
) -> Array:
    """DDIM: ``x' = sqrt(a') x0^ + sqrt(1 - a' - s^2) eps^ + s z`` with ``s = eta sqrt(var)``
    (``var`` DDPM's posterior variance). Eta 0 is deterministic; eta 1 over every timestep is
    DDPM again while clipping is inactive (its mean is DDPM's posterior mean)."""
    if eta > 0 and draw is None:
        raise ValueError("ddim with eta > 0 is stochastic: give draw")
    for t, t_next in _steps(levels):
        x0, eps = p.estimates(net(x, p.model_time(t), cond), x, t)
        a, a_next = p.abar(t), p.abar(t_next)
        std = eta * math.sqrt(_posterior_var(a, a_next))
        x = math.sqrt(a_next) * x0 + math.sqrt(max(1 - a_next - std**2, 0.0)) * eps
        if std > 0:
            x = x + std * draw()
        x = _hooked(x, t_next, hook)
    return x


@register_sampler("ddpm", family="diffusion", spacing="leading", deterministic="ddim")
def ddpm(
    p: DiffusionProcess,
    net: Net,
    x: Array,
    cond: Array,
    levels: Sequence[float],
    *,
    draw: Draw | None = None,
    hook: Hook | None = None,
) -> Array:
    """Ancestral sampling with the posterior mean and "fixed_small" variance (no noise on the
    step to clean)."""
    if draw is None:
        raise ValueError("ddpm is stochastic: give draw (or run ddim)")
    for t, t_next in _steps(levels):
        x0, _ = p.estimates(net(x, p.model_time(t), cond), x, t)
        a, a_next = p.abar(t), p.abar(t_next)
        ratio = a / a_next
        mean = (math.sqrt(a_next) * (1 - ratio) / (1 - a)) * x0 + (
            math.sqrt(ratio) * (1 - a_next) / (1 - a)
        ) * x
        var = _posterior_var(a, a_next)
        x = mean + math.sqrt(var) * draw() if var > 0 else mean
        x = _hooked(x, t_next, hook)
    return x


@register_sampler("dpmpp", family="diffusion", spacing="trailing")
def dpmpp(
    p: DiffusionProcess,
    net: Net,
    x: Array,
    cond: Array,
    levels: Sequence[float],
    *,
    draw: Draw | None = None,
    hook: Hook | None = None,
) -> Array:
    """DPM-Solver++(2M): with ``lambda = log(alpha / sigma)`` and ``h = lambda' - lambda``,
    ``x' = (sigma'/sigma) x - alpha' (e^-h - 1) D`` where ``D = x0^`` on the first and last
    step and ``x0^ + (x0^ - x0^_prev) / (2 r)`` otherwise, ``r = h_prev / h``."""
    prev_x0, prev_lam = None, 0.0
    for t, t_next in _steps(levels):
        x0, _ = p.estimates(net(x, p.model_time(t), cond), x, t)
        a, a_next = p.abar(t), p.abar(t_next)
        if a_next >= 1.0:  # to clean: first order lands on x0^
            x = _hooked(x0, t_next, hook)
            break
        lam, lam_next = logsnr(a) / 2, logsnr(a_next) / 2
        h = lam_next - lam
        d = x0
        if prev_x0 is not None:
            r = (lam - prev_lam) / h
            d = x0 + (x0 - prev_x0) * (1.0 / (2.0 * r))
        ratio = math.sqrt((1 - a_next) / (1 - a))
        x = ratio * x - (math.sqrt(a_next) * math.expm1(-h)) * d
        x = _hooked(x, t_next, hook)
        prev_x0, prev_lam = x0, lam
    return x


@register_sampler("euler", family="flow", spacing="uniform")
def euler(
    p: FlowProcess,
    net: Net,
    x: Array,
    cond: Array,
    levels: Sequence[float],
    *,
    draw: Draw | None = None,
    hook: Hook | None = None,
) -> Array:
    """``x' = x + (t' - t) v(x, t)``."""
    for t, t_next in _steps(levels):
        x = _hooked(x + (t_next - t) * net(x, p.model_time(t), cond), t_next, hook)
    return x


@register_sampler("midpoint", family="flow", spacing="uniform", evals_per_step=2)
def midpoint(
    p: FlowProcess,
    net: Net,
    x: Array,
    cond: Array,
    levels: Sequence[float],
    *,
    draw: Draw | None = None,
    hook: Hook | None = None,
) -> Array:
    """Explicit midpoint: ``x' = x + h v(x + h/2 v(x, t), t + h/2)``, ``h = t' - t``."""
    for t, t_next in _steps(levels):
        h = t_next - t
        v = net(x, p.model_time(t), cond)
        v = net(x + (0.5 * h) * v, p.model_time(t + 0.5 * h), cond)
        x = _hooked(x + h * v, t_next, hook)
    return x
