"""Distillation: a 1-4-step student from a many-step teacher, saved as an ordinary checkpoint.

Shapes (``docs/DESIGN.md``): B batch, Tp predicted steps, Da action size, k student steps,
n teacher solver steps. Everything below is in normalized action units.

**Diffusion: consistency distillation** (Song et al. 2023, "Consistency Models"; Prasad et al.
2024, "Consistency Policy", which distills Diffusion Policy into 1-3-step policies that keep its
success rates). The student is a ``DiffusionPolicy`` that predicts the clean chunk
(``prediction_type="sample"``) on its own k-level squared-cosine schedule (``num_train_timesteps
= k``: level k-1 is pure noise, abar 0.001) and samples with deterministic DDIM over those k
levels, i.e. multistep consistency sampling with the noise direction kept. Its output at level
j is trained to be the end point of the teacher's probability-flow ODE through its input: the
teacher solves from noise ``eps`` to ``T`` (DPM-Solver++, n steps), the student's ideal chain
state at level j is ``sqrt(abar_j) T + sqrt(1 - abar_j) e`` (``e`` the noise direction DDIM keeps),
and the target there is the teacher's ODE solution from it (from pure noise: ``T`` itself).
Song et al. bootstrap that end point from one ODE step and an EMA copy of the student, to avoid
the full solve; our teachers are small enough to solve exactly, which converges in hundreds of
steps instead of tens of thousands.

**Flow: shortcut distillation** (Frans et al. 2025, "One Step Diffusion via Shortcut Models").
A shortcut model learns the jump ``s(x, t, d)`` over a step of size d from the self-consistency
"one big step = two small steps". Our student is a ``FlowPolicy`` with ``steps = k``, only ever
queried on its own grid ``t_i = 1 - i/k``, so it needs no step-size input: its velocity at
``(x_{t_i}, t_i)`` is regressed on the teacher's average velocity over ``[t_i,
t_{i+1}]`` (the teacher's fine midpoint steps composed), at the states ``x_{t_i}`` of the
teacher's own trajectory from noise. Flow ODEs are nearly straight, so this is the natural fit.

The student starts from the teacher's weights and keeps its normalizer, interface, observation
window and networks; ``load_policy`` and ``robopolicy eval`` treat it like any checkpoint, and its
config says its step count.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from robopolicy.policies.base import Policy
from robopolicy.sampling.processes import DiffusionProcess
from robopolicy.sampling.samplers import get_sampler

log = logging.getLogger(__name__)
Batches = Callable[[torch.Generator], dict[str, Any]]
"""``batches(generator) -> {"obs": {...}, "action": (B, Tp, Da)}`` raw-unit training batches."""


@dataclasses.dataclass
class DistillConfig:
    """A distillation run."""

    steps: int = 1
    """k: the student's steps per sample (1 to 4)."""
    train_steps: int = 2000
    """Optimizer steps."""
    batch_size: int = 256
    """Windows per step."""
    lr: float = 3e-4
    """AdamW learning rate (cosine decay to 0 after a 5% warm-up)."""
    weight_decay: float = 1e-6
    """AdamW weight decay."""
    teacher_steps: int = 16
    """n: steps of the teacher's ODE solver per target (DPM-Solver++ or midpoint)."""
    eval_size: int = 256
    """Held-out batch size of the closing comparison with the teacher."""
    seed: int = 0
    """Seed of data order, noise and levels."""
    num_threads: int | None = 1
    """Torch threads (None: leave as is)."""

    def __post_init__(self) -> None:
        if not 1 <= self.steps <= 4:
            raise ValueError(f"steps must be in 1..4, got {self.steps}")
        for name in ("train_steps", "batch_size", "teacher_steps", "eval_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0 or self.weight_decay < 0:
            raise ValueError("lr must be positive and weight_decay >= 0")


def _diffusion_student(c: Any, steps: int) -> Any:
    return dataclasses.replace(
        c,
        prediction_type="sample",
        num_train_timesteps=steps,
        beta_schedule="squaredcos_cap_v2",
        sampler="ddim",
        eta=0.0,
        steps=None,
    )


def _flow_student(c: Any, steps: int) -> Any:
    return dataclasses.replace(c, sampler="euler", steps=steps)


def make_student(teacher: Policy, steps: int) -> Policy:
    """A student policy of the teacher's type for ``steps`` steps, initialized from it (its
    weights, normalizer and interface)."""
    recipe = recipe_of(teacher)
    student = type(teacher)(
        recipe.student(teacher.config, steps), copy.deepcopy(teacher.normalizer)
    )
    student.load_state_dict(teacher.state_dict())
    student.interface = teacher.interface
    return student.to(teacher.device)


def distill(
    teacher: Policy, batches: Batches, config: DistillConfig, *, progress: bool = False
) -> tuple[Policy, dict[str, float]]:
    """Train a k-step student of ``teacher`` on ``batches``; return it (eval mode) and its
    figures: the RMS distance (normalized units) of the student's k-step samples and of the
    teacher's own k-step samples to the teacher's many-step samples, from the same noise."""
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    teacher = teacher.eval()
    recipe = recipe_of(teacher)
    student = make_student(teacher, config.steps).train()
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(
        student.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True
    )
    warmup = max(1, config.train_steps // 20)
    losses: list[float] = []
    for step in range(config.train_steps):
        frac = (step - warmup) / max(1, config.train_steps - warmup)
        scale = (step + 1) / warmup if step < warmup else 0.5 * (1 + math.cos(math.pi * frac))
        for group in optimizer.param_groups:
            group["lr"] = config.lr * scale
        batch = batches(generator)
        with torch.no_grad():
            cond_t = teacher.encode(batch["obs"])
            x, level, target = recipe.targets(teacher, student, cond_t, config, generator)
        cond_s = student.encode(batch["obs"])
        t = torch.full((x.shape[0],), level, device=x.device)
        out = recipe.output(student, x, t, cond_s)
        loss = torch.nn.functional.mse_loss(out, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if progress and (step + 1) % max(1, config.train_steps // 10) == 0:
            log.info("distill step %d/%d: loss %.5f", step + 1, config.train_steps, losses[-1])
    student.eval()
    figures = compare(
        teacher, student, batches(torch.Generator().manual_seed(config.seed + 1)), config
    )
    return student, {"final_loss": float(np.mean(losses[-50:])), **figures}


def _teacher_net(teacher: Policy) -> Callable[[Tensor, float, Tensor], Tensor]:
    def net(x: Tensor, t: float, cond: Tensor) -> Tensor:
        return teacher.model.denoise(x, torch.full((x.shape[0],), t, device=x.device), cond)

    return net


def _diffusion_targets(
    teacher: Policy, student: Policy, cond: Tensor, config: DistillConfig, gen: torch.Generator
) -> tuple[Tensor, float, Tensor]:
    """Student input at one of its levels, that level, and the consistency target."""
    tp, sp = teacher.process, student.process
    k, n = config.steps, config.teacher_steps
    eps = torch.randn(
        (cond.shape[0], teacher.config.horizon, teacher.config.action_dim), generator=gen
    ).to(cond.device)
    solver, net = get_sampler("dpmpp"), _teacher_net(teacher)
    end = solver.run(tp, net, eps, cond, tp.grid(n, "trailing"))
    j = int(torch.randint(0, k, (1,), generator=gen))
    if j == k - 1:  # pure noise: the student's first step
        return eps, float(j), end
    a_top, a_j = sp.abar(k - 1), sp.abar(j)
    direction = (eps - math.sqrt(a_top) * end) / math.sqrt(1 - a_top)
    x = math.sqrt(a_j) * end + math.sqrt(1 - a_j) * direction
    start = tp.level_of(a_j)
    levels = [float(v) for v in np.linspace(start, 0.0, n)] + [-1.0]
    return x, float(j), solver.run(tp, net, x, cond, levels)


def _flow_targets(
    teacher: Policy, student: Policy, cond: Tensor, config: DistillConfig, gen: torch.Generator
) -> tuple[Tensor, float, Tensor]:
    """A state of the teacher's trajectory at a student grid time, that time, and the teacher's
    average velocity over the student's step from it."""
    process = teacher.process
    k = config.steps
    fine = max(1, config.teacher_steps // k)
    i = int(torch.randint(0, k, (1,), generator=gen))
    t_i, t_next = 1.0 - i / k, 1.0 - (i + 1) / k
    x = torch.randn(
        (cond.shape[0], teacher.config.horizon, teacher.config.action_dim), generator=gen
    ).to(cond.device)
    solver, net = get_sampler("midpoint"), _teacher_net(teacher)
    if i:
        x = solver.run(process, net, x, cond, list(np.linspace(1.0, t_i, i * fine + 1)))
    after = solver.run(process, net, x, cond, list(np.linspace(t_i, t_next, fine + 1)))
    return x, t_i, (after - x) / (t_next - t_i)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How to distill one policy type."""

    student: Callable[[Any, int], Any]
    """``student(teacher_config, k) -> student_config``."""
    targets: Callable[..., tuple[Tensor, float, Tensor]]
    """``targets(teacher, student, cond, config, generator) -> (x, level, target)``."""
    output: Callable[[Policy, Tensor, Tensor, Tensor], Tensor]
    """``output(student, x, t (B,), cond)``: what is regressed on the target."""


RECIPES = {
    "diffusion": Recipe(_diffusion_student, _diffusion_targets, lambda p, *a: p.predict(*a)),
    "flow": Recipe(_flow_student, _flow_targets, lambda p, *a: p.velocity(*a)),
}
"""A policy's ``type_name`` -> its :class:`Recipe`."""


def recipe_of(teacher: Policy) -> Recipe:
    """The :class:`Recipe` of ``teacher`` (a ValueError for types without one)."""
    name = type(teacher).type_name
    if name not in RECIPES:
        raise ValueError(f"cannot distill a {name} policy (only {sorted(RECIPES)})")
    return RECIPES[name]


@torch.no_grad()
def compare(
    teacher: Policy, student: Policy, batch: dict[str, Any], config: DistillConfig
) -> dict[str, float]:
    """RMS distances (normalized units) to the teacher's many-step samples from the same noise:
    ``student_rms`` (the student's k steps) and ``teacher_k_step_rms`` (the teacher's own k
    steps, its configured sampler family deterministic); ``teacher_steps_ref`` is the many."""
    from robopolicy.inference.engine import EngineConfig, InferenceEngine

    obs = {key: v[: config.eval_size] for key, v in batch["obs"].items()}
    size = next(iter(obs.values())).shape[0]
    c = teacher.config
    noise = torch.randn((size, c.horizon, c.action_dim), generator=torch.Generator().manual_seed(7))
    process = teacher.process
    many = process.num_train_timesteps if isinstance(process, DiffusionProcess) else 100
    ref_sampler = "ddim" if process.family == "diffusion" else "euler"

    def run(policy: Policy, sampler: str, steps: int) -> Tensor:
        engine = InferenceEngine(policy, EngineConfig(sampler, steps, backend="torch"))
        return engine.normalize(engine.sample(obs, noise=noise))

    reference = run(teacher, "dpmpp" if process.family == "diffusion" else "euler", many)
    own = student.config.sampler
    rms = {
        "student_rms": run(student, own, config.steps),
        "teacher_k_step_rms": run(teacher, ref_sampler, config.steps),
    }
    if process.family == "diffusion":
        rms["teacher_dpmpp_k_step_rms"] = run(teacher, "dpmpp", config.steps)
    figures = {name: float(((x - reference) ** 2).mean().sqrt()) for name, x in rms.items()}
    return figures | {"teacher_steps_ref": float(many), "student_steps": float(config.steps)}
