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

:func:`finetune` runs an algorithm by name, as ``robopolicy finetune`` and scripts do::

    report = finetune("dsrl", "runs/bc/checkpoints/latest", rollouts=SimRollouts("arm-push"),
                      out="runs/dsrl", overrides=["total_env_steps=24000"])
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robopolicy.config import ConfigError, apply_overrides, did_you_mean
from robopolicy.errors import RobopolicyError

if TYPE_CHECKING:
    from robopolicy.rl.rollout import RolloutFactory


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


def finetune(
    algo: str,
    checkpoint: str | Path | None,
    *,
    rollouts: RolloutFactory,
    out: str | Path,
    overrides: Sequence[str] = (),
    card: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Fine-tune ``checkpoint`` (None: the algorithm's own initialization) with algorithm
    ``algo`` on ``rollouts``' task into ``out`` (a run there resumes); its config is the defaults
    with ``overrides`` (``key=value``) applied. ``card``: facts for the checkpoints' cards
    besides the task. Returns the algorithm's report (module docstring)."""
    algorithm = get_algorithm(algo)
    try:
        config = apply_overrides(algorithm.config(), overrides)
    except (ConfigError, ValueError) as exc:
        raise RobopolicyError(f"{algo}: {exc}") from exc
    return algorithm.run(
        config,
        checkpoint=checkpoint,
        rollouts=rollouts,
        out=out,
        card={"task": rollouts.task, **(card or {})},
        progress=progress,
    )
