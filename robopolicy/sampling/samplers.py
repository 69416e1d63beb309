"""Samplers: DDPM, DDIM and DPM-Solver++ (2M) for diffusion policies; Euler and midpoint for flow
policies. One registry, one short loop per sampler, the same code on torch tensors and numpy:
the policies' ``sample()``, DPPO's denoising chain and the inference engine all run these.

Shapes (``docs/DESIGN.md``): B batch, Tp predicted steps, Da action size, Dc conditioning
size, k sampler steps, K train timesteps.

A sampler moves a normalized chunk ``x`` (B, Tp, Da) along a descending **grid of levels** from
noisy to clean, calling ``net(x, t, cond) -> (B, Tp, Da)`` where ``t`` is a Python float, the
network's own time input. Levels are

- diffusion: timesteps (floats; integers for the standard grids), then -1 for "clean"
  (``abar(-1) = 1``); ``t`` is the timestep itself. DDPM/DDIM use the "leading" grid
  (``(k-1-i) * (K // k)``, as Diffusion Policy), DPM-Solver++ the "trailing" one (``K - 1``
  first), whose first step starts from pure noise.
- flow: times from 1 (noise) down to 0 (data), uniform; ``t`` is ``time * time_scale``.

The loops use arithmetic, ``.clip`` and ``net`` only, so torch (eager, CUDA graphs) and numpy
(ONNX Runtime) arrays both work. A warm start runs ``grid[start:]`` from a chunk re-noised to
level ``grid[start]`` (:meth:`DiffusionProcess.renoise`); ``hook(x, level)`` after every step is
how inpainting holds a prefix. DPM-Solver++ (Lu et al., 2022) is the data-prediction multistep
solver of order 2 with a first-order first and last step, as diffusers'
``DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2,
timestep_spacing="trailing")`` (checked against it in ``tests/inference``).

**The DDPM/DDIM step** (:func:`gaussian_step`, written out because DPPO needs each step's
Gaussian; ``tests/policies/test_diffusion.py`` checks it against diffusers' ``DDPMScheduler``,
``variance_type="fixed_small"``, and ``DDIMScheduler``, ``set_alpha_to_one``,
``steps_offset=0``). From ``abar = a`` to ``a'`` with the estimates ``x0^`` and ``eps^``
(:meth:`~robopolicy.sampling.processes.DiffusionProcess.estimates`), ``x' = mean + std z``,
``z ~ N(0, I)``:

- DDPM, "fixed_small" variance: ``mean = sqrt(a') (1 - a/a') / (1 - a) x0^
  + sqrt(a/a') (1 - a') / (1 - a) x``, ``std^2 = var = (1 - a') / (1 - a) (1 - a/a')`` (0 on
  the step to clean);
- DDIM with ``eta``: ``std = eta sqrt(var)``, ``mean = sqrt(a') x0^ + sqrt(1 - a' - std^2)
  eps^``. Eta 0 is deterministic; with eta 1 over every timestep it is DDPM again while clipping
  is inactive (its mean is DDPM's posterior mean).

``a``, ``a'`` and ``eta`` are Python numbers in the sampler loops, (B,) tensors (one value per
row) in DPPO's chain and its log-probabilities (:meth:`DiffusionPolicy.sample_chain
<robopolicy.policies.diffusion.DiffusionPolicy.sample_chain>`).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

from torch import Tensor

from robopolicy.config import did_you_mean
from robopolicy.sampling.processes import DiffusionProcess, FlowProcess, Process, logsnr, per_row

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

    @property
    def twin(self) -> SamplerSpec:
        """The sampler run from given noise: the deterministic twin, or this one."""
        return SAMPLERS[self.deterministic] if self.deterministic else self

    def denoise(
        self,
        process: Process,
        net: Net,
        x: Array,
        cond: Array,
        steps: int,
        *,
        start: int = 0,
        draw: Draw | None = None,
        hook: Hook | None = None,
        **options: Any,
    ) -> Array:
        """Run steps ``start..k-1`` of the k-step grid from ``x`` (B, Tp, Da) at level
        ``grid[start]`` to the clean chunk; ``start > 0`` is a warm start."""
        grid = self.grid(process, steps)
        if not 0 <= start < len(grid) - 1:
            raise ValueError(f"start must be in [0, {len(grid) - 2}], got {start}")
        return self.run(process, net, x, cond, grid[start:], draw=draw, hook=hook, **options)


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


def sampler_names(family: str | None = None) -> list[str]:
    """The registered samplers (of ``family`` when given)."""
    return [n for n, s in SAMPLERS.items() if family is None or s.family == family]


def get_sampler(name: str, family: str | None = None) -> SamplerSpec:
    """The sampler ``name`` (a ValueError with a did-you-mean when unknown or of another
    family)."""
    names = sampler_names(family)
    if name not in names:
        raise ValueError(f"no {family or ''} sampler {name!r}{did_you_mean(name, names)}")
    return SAMPLERS[name]


def _steps(levels: Sequence[float]) -> list[tuple[float, float]]:
    if len(levels) < 2:
        raise ValueError("a grid needs at least two levels")
    return list(itertools.pairwise(levels))


def _hooked(x: Array, level: float, hook: Hook | None) -> Array:
    return x if hook is None else hook(x, level)


def _nonnegative(value: Any) -> Any:
    return value.clamp(min=0) if isinstance(value, Tensor) else max(value, 0.0)


def step_std(a: Any, a_next: Any, *, sampler: str, eta: Any = 0.0) -> Any:
    """The std of a DDPM (``sampler="ddpm"``) or DDIM step from ``abar = a`` to ``a_next``:
    DDPM's "fixed_small" posterior std, or ``eta`` times it (numbers or (B,) tensors)."""
    var = _nonnegative((1 - a_next) / (1 - a) * (1 - a / a_next))
    if sampler == "ddpm":
        return var**0.5
    if sampler == "ddim":
        return eta * var**0.5
    raise ValueError(f"sampler {sampler!r} has no Gaussian step (ddpm and ddim have)")


def gaussian_step(
    x0: Array, eps: Array, x: Array, a: Any, a_next: Any, *, sampler: str, eta: Any = 0.0
) -> tuple[Array, Any]:
    """``(mean, std)`` of the DDPM or DDIM step (module docstring) from ``x`` (B, Tp, Da) with
    the estimates ``x0^``, ``eps^`` (B, Tp, Da); ``a``, ``a_next``, ``eta`` numbers or (B,)."""
    std = step_std(a, a_next, sampler=sampler, eta=eta)
    if sampler == "ddpm":
        ratio = a / a_next
        coef_x0 = a_next**0.5 * (1 - ratio) / (1 - a)
        coef_x = ratio**0.5 * (1 - a_next) / (1 - a)
        return per_row(coef_x0, x0) * x0 + per_row(coef_x, x) * x, std
    direction = _nonnegative(1 - a_next - std**2) ** 0.5
    return per_row(a_next**0.5, x0) * x0 + per_row(direction, eps) * eps, std


def gaussian_log_prob(
    x: Tensor, mean: Tensor, std: Tensor, *, reduce: Literal["sum", "none"] = "sum"
) -> Tensor:
    """log N(x; mean, std^2 I) of (B, Tp, Da) ``x`` with per-row ``std`` (B,): (B,) summed over
    Tp and Da, or (B, Tp, Da) per element with ``reduce="none"`` (DPPO's log-probabilities)."""
    std = per_row(std, x)
    value = -0.5 * ((x - mean) / std) ** 2 - std.log() - 0.5 * math.log(2 * math.pi)
    return value.sum((-2, -1)) if reduce == "sum" else value


def _ancestral(
    p: DiffusionProcess,
    net: Net,
    x: Array,
    cond: Array,
    levels: Sequence[float],
    draw: Draw | None,
    hook: Hook | None,
    sampler: str,
    eta: float = 0.0,
) -> Array:
    """DDPM's or DDIM's loop: ``x' = mean + std z`` at every step (no draw where std is 0)."""
    for t, t_next in _steps(levels):
        a, a_next = p.abar(t), p.abar(t_next)
        x0, eps = p.estimates(net(x, p.model_time(t), cond), x, a)
        mean, std = gaussian_step(x0, eps, x, a, a_next, sampler=sampler, eta=eta)
        x = _hooked(mean + std * draw() if std > 0 else mean, t_next, hook)
    return x


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
    """DDIM with ``eta`` (module docstring); eta 0 is deterministic."""
    if eta > 0 and draw is None:
        raise ValueError("ddim with eta > 0 is stochastic: give draw")
    return _ancestral(p, net, x, cond, levels, draw, hook, "ddim", eta)


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
    return _ancestral(p, net, x, cond, levels, draw, hook, "ddpm")


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
        a, a_next = p.abar(t), p.abar(t_next)
        x0, _ = p.estimates(net(x, p.model_time(t), cond), x, a)
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
