"""Scripted experts: closed-loop controllers that read a task's true state.

An expert is registered per task by decorator and made by name; ``scripted`` is the name the
``robopolicy collect`` command uses::

    env = make_task("arm-push")
    expert = make_expert("arm-push", env, quality="imperfect")
    obs, _ = env.reset(seed=7)
    expert.reset(seed=7)
    action = expert.act(obs)  # ... until the env ends the episode or ``expert.done``

Quality is a named preset (``"clean"``: success >= 95%; ``"imperfect"``: 50-80%, on purpose, for
demonstrations that leave room for RL) or an explicit :class:`ExpertConfig`.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import pkgutil
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from robopolicy.errors import RobopolicyError

QUALITIES = ("clean", "imperfect")


class ExpertError(RobopolicyError):
    """No such expert for a task, or a bad quality setting."""


@dataclasses.dataclass(frozen=True)
class ExpertConfig:
    """How well a scripted expert plays: noise on every command, sloppy moves, careless finishes."""

    noise: float = 0.0
    """Standard deviation (m) of Gaussian noise added to each position command."""
    sloppy_prob: float = 0.0
    """Probability, each step, of starting a sloppy move."""
    sloppy_steps: int = 4
    """Length (steps) of a sloppy move."""
    sloppy_offset: float = 0.03
    """Size (m) of the random offset added to the commands during a sloppy move."""
    careless_prob: float = 0.0
    """Fraction of episodes with a careless finish (each expert says what it does then); which
    episodes is decided per seed by :func:`careless_draw`."""
    speed: float = 1.0
    """Multiplier of the expert's nominal speed (slower experts run out of time)."""

    def __post_init__(self) -> None:
        if self.noise < 0 or self.sloppy_offset < 0:
            raise ValueError("noise and sloppy_offset must be >= 0")
        for name in ("sloppy_prob", "careless_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.sloppy_steps < 1:
            raise ValueError(f"sloppy_steps must be >= 1, got {self.sloppy_steps}")
        if not self.speed > 0:
            raise ValueError(f"speed must be positive, got {self.speed}")


class Expert(Protocol):
    """A scripted controller for one environment."""

    def reset(self, seed: int | None = None) -> None:
        """Start an episode (call after ``env.reset``); ``seed`` fixes the expert's choices."""

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """The next action, in the env's action space."""

    @property
    def done(self) -> bool:
        """True once the expert considers the episode over (a demonstrator stops recording)."""


ExpertFactory = Callable[[Any, ExpertConfig], Expert]
EXPERTS: dict[tuple[str, str], tuple[ExpertFactory, dict[str, ExpertConfig]]] = {}


def register_expert(
    task: str, name: str = "scripted", *, presets: dict[str, ExpertConfig]
) -> Callable[[ExpertFactory], ExpertFactory]:
    """Register ``factory(env, config) -> Expert`` as expert ``name`` of ``task``.

    ``presets`` maps each quality in :data:`QUALITIES` to the config it stands for.
    """
    missing = set(QUALITIES) - set(presets)
    if missing:
        raise ValueError(f"expert {task}/{name}: presets lack {sorted(missing)}")

    def decorate(factory: ExpertFactory) -> ExpertFactory:
        if (task, name) in EXPERTS:
            raise ValueError(f"expert {name!r} for task {task!r} registered twice")
        EXPERTS[(task, name)] = (factory, dict(presets))
        return factory

    return decorate


def load_experts() -> dict[tuple[str, str], tuple[ExpertFactory, dict[str, ExpertConfig]]]:
    """Import every expert module (each registers its experts); return the registry."""
    for module in pkgutil.iter_modules(__path__, prefix=f"{__name__}."):
        importlib.import_module(module.name)
    return EXPERTS


def expert_config(task: str, quality: str | ExpertConfig, name: str = "scripted") -> ExpertConfig:
    """The config a quality preset stands for (an ExpertConfig is returned as is)."""
    if isinstance(quality, ExpertConfig):
        return quality
    _, presets = _lookup(task, name)
    if quality not in presets:
        close = difflib.get_close_matches(quality, presets, n=2)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ExpertError(f"unknown quality {quality!r}{hint} (have {sorted(presets)})")
    return presets[quality]


def make_expert(
    task: str, env: Any, *, quality: str | ExpertConfig = "imperfect", name: str = "scripted"
) -> Expert:
    """Expert ``name`` of ``task`` driving ``env`` (a wrapped or unwrapped env of that task)."""
    factory, _ = _lookup(task, name)
    return factory(getattr(env, "unwrapped", env), expert_config(task, quality, name))


def _lookup(task: str, name: str) -> tuple[ExpertFactory, dict[str, ExpertConfig]]:
    experts = load_experts()
    if (task, name) not in experts:
        have = sorted(n for t, n in experts if t == task)
        if have:
            raise ExpertError(f"task {task!r} has no expert {name!r} (have {have})")
        tasks = sorted({t for t, _ in experts})
        close = difflib.get_close_matches(task, tasks, n=2)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ExpertError(f"no scripted expert for task {task!r}{hint} (experts exist for {tasks})")
    return experts[(task, name)]


_EXPERT_STREAM = 0x5C817ED
"""Mixed into expert seeds, so an expert's draws are independent of the env's at the same seed."""


def expert_rng(seed: int | None) -> np.random.Generator:
    """The expert's generator for an episode seed (unrelated to ``env.reset(seed=seed)``'s)."""
    return np.random.default_rng(None if seed is None else [_EXPERT_STREAM, seed])


def careless_draw(seed: int | None, rng: np.random.Generator) -> float:
    """A number in [0, 1) deciding whether episode ``seed`` gets a careless finish.

    Quasi-random over seeds (a golden-ratio sequence), so any run of consecutive seeds has very
    nearly the configured fraction of careless episodes: small datasets are representative and
    measured success rates steady. Without a seed it is drawn from ``rng``.
    """
    if seed is None:
        return float(rng.random())
    return float((seed * 0.6180339887498949 + 0.5) % 1.0)


class Sloppiness:
    """The noise and sloppy moves of an :class:`ExpertConfig`, drawn from the expert's rng."""

    def __init__(self, config: ExpertConfig, dims: int) -> None:
        self.config = config
        self.dims = dims
        self.rng = np.random.default_rng()
        self._left = 0
        self._offset = np.zeros(dims)

    def reset(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self._left = 0

    def perturb(self, command: np.ndarray) -> np.ndarray:
        """``command`` plus this step's noise and sloppy-move offset (positions only)."""
        cfg = self.config
        if self._left == 0 and cfg.sloppy_prob > 0 and self.rng.random() < cfg.sloppy_prob:
            direction = self.rng.normal(size=self.dims)
            self._offset = cfg.sloppy_offset * direction / np.linalg.norm(direction)
            self._left = cfg.sloppy_steps
        out = command.copy()
        if self._left:
            out[: self.dims] += self._offset
            self._left -= 1
        if cfg.noise > 0:
            out[: self.dims] += self.rng.normal(0.0, cfg.noise, size=self.dims)
        return out
