"""RL algorithms by name, for ``robopolicy finetune CKPT --algo NAME``.

An algorithm module in :mod:`robopolicy.rl` registers its entry point with a decorator::

    @register_algorithm("ppo", PPOConfig, description="Gaussian PPO baseline")
    def finetune(config, *, checkpoint, rollouts, out, card, progress) -> dict: ...

The entry receives its typed config (defaults, then the command line's ``key=value``
overrides), the policy checkpoint to start from (None: the algorithm's own initialization), a
:class:`~robopolicy.rl.rollout.RolloutFactory` for the task, the run directory, a ``card`` of
facts for the checkpoints it writes (task, command line), and whether to show progress. It
returns a JSON-ready report with at least ``checkpoint`` (the final policy checkpoint's path),
``env_steps``, ``seconds``, ``eval_before`` and ``eval_after`` (evaluation figures).
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

from robopolicy.config import did_you_mean
from robopolicy.errors import RobopolicyError


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """One registered algorithm."""

    name: str
    """The ``--algo`` name."""
    config: type
    """Its dataclass config (built with defaults, then overridden)."""
    run: Callable[..., dict[str, Any]]
    """The entry point (module docstring)."""
    description: str
    """One line for ``robopolicy finetune --help``."""


ALGORITHMS: dict[str, Algorithm] = {}


def register_algorithm(
    name: str, config: type, *, description: str
) -> Callable[[Callable[..., dict[str, Any]]], Callable[..., dict[str, Any]]]:
    """Decorator registering ``run`` as algorithm ``name`` with config class ``config``."""

    def decorate(run: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        if name in ALGORITHMS and ALGORITHMS[name].run is not run:
            raise ValueError(f"algorithm {name!r} registered twice")
        ALGORITHMS[name] = Algorithm(name, config, run, description)
        return run

    return decorate


def load_algorithms() -> dict[str, Algorithm]:
    """Import every algorithm module of :mod:`robopolicy.rl` (each registers itself)."""
    import robopolicy.rl

    for module in pkgutil.iter_modules(robopolicy.rl.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"robopolicy.rl.{module.name}")
    return ALGORITHMS


def get_algorithm(name: str) -> Algorithm:
    """Algorithm ``name``; a RobopolicyError listing the algorithms (and the closest) when there
    is none."""
    algorithms = load_algorithms()
    if name not in algorithms:
        hint = did_you_mean(name, list(algorithms), always_list=True)
        raise RobopolicyError(f"unknown algorithm {name!r}{hint}")
    return algorithms[name]
