"""Every simulated task by name: ``make_task("arm-push", seed=0)``.

A task module registers its environment class (or factory) with :func:`register_task`. Task
modules import cheaply: heavy or optional dependencies (robosuite, gym-pusht) are imported inside
the constructor, so ``robopolicy tasks`` lists every task whether or not its extra is installed,
and making one without its extra is a clear error naming the ``pip install`` to run.

Every task is a ``gymnasium.Env`` whose observation follows ``docs/DESIGN.md`` for one
environment (the batch and history axes are added by the vector env and the chunk wrapper):

- ``"state"``: ``(Ds,)`` float32 in raw units;
- ``"image.<camera>"``: ``(H, W, 3)`` uint8, present when the task is made with cameras;
- ``"timestamp"``: ``()`` float64, seconds of simulated time since reset.

``step`` returns ``info["is_success"]`` (bool) and ``info["score"]`` (float: the task's own
measure, e.g. Push-T coverage; 1.0/0.0 success for tasks without one). ``reset(seed=s)`` makes
the episode a pure function of ``s``. The unwrapped env carries a :class:`TaskMeta`.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

from robopolicy.data.features import ACTION_SOURCES, OBSERVATION_SOURCES, Source, check_sources
from robopolicy.errors import RobopolicyError


class TaskError(RobopolicyError):
    """A task that does not exist, or cannot be made here (a missing extra)."""


@dataclasses.dataclass(frozen=True)
class TaskMeta:
    """What a task is, known without stepping it: the contract its data and policies share."""

    state_names: tuple[str, ...]
    """Name of each dimension of ``obs["state"]``."""
    action_names: tuple[str, ...]
    """Name of each action dimension."""
    action_units: str
    """Units of the action, e.g. ``"rad (joint position targets), gripper 0..1"``."""
    fps: float
    """Control frequency: env steps per second of simulated time."""
    cameras: tuple[str, ...] = ()
    """Cameras that ``image.<camera>`` observations may come from."""
    state_sources: tuple[Source, ...] = (Source("task_state"),)
    """What produces ``obs["state"]``, in order (:mod:`robopolicy.data.features`): the arm's
    joints, its end effector, a scene object; by default what only the simulator computes."""
    action_sources: tuple[Source, ...] = (Source("task_action"),)
    """What the action commands, in order: joint or end-effector targets, the gripper; by
    default an action only the task's simulator takes."""

    def __post_init__(self) -> None:
        if not self.fps > 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if not self.state_names or not self.action_names:
            raise ValueError("state_names and action_names must not be empty")
        check_sources(self.state_sources, len(self.state_names), OBSERVATION_SOURCES)
        check_sources(self.action_sources, len(self.action_names), ACTION_SOURCES)


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """A registered task."""

    name: str
    """Registry name, e.g. ``arm-push``."""
    entry: Callable[..., Any]
    """Env class or factory; called with the spec's kwargs and the caller's overrides."""
    description: str
    """One line for ``robopolicy tasks``."""
    family: str
    """``builtin``, ``robosuite``, ``locomotion`` or ``pusht``."""
    max_episode_steps: int
    """Steps after which an episode is truncated."""
    extra: str | None = None
    """The project extra the task needs (``pip install -e '.[<extra>]'``), if any."""
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Constructor arguments that define this task (overridable at :func:`make_task`)."""

    def __post_init__(self) -> None:
        if self.max_episode_steps < 1:
            raise ValueError(f"{self.name}: max_episode_steps must be >= 1")

    def describe(self) -> dict[str, Any]:
        """JSON-ready description for ``robopolicy tasks --json``."""
        return {
            "name": self.name,
            "family": self.family,
            "description": self.description,
            "max_episode_steps": self.max_episode_steps,
            "extra": self.extra,
        }


TASKS: dict[str, TaskSpec] = {}


def register_task(
    name: str,
    *,
    description: str,
    family: str,
    max_episode_steps: int,
    extra: str | None = None,
    **kwargs: Any,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering an env class or factory as task ``name``.

    Stack it to register several tasks on one class with different ``kwargs``.
    """

    def decorate(entry: Callable[..., Any]) -> Callable[..., Any]:
        if name in TASKS:
            raise ValueError(f"task {name!r} registered twice")
        TASKS[name] = TaskSpec(name, entry, description, family, max_episode_steps, extra, kwargs)
        return entry

    return decorate


def load_tasks() -> dict[str, TaskSpec]:
    """Import every module of :mod:`sim.tasks` (each registers its tasks); return the registry."""
    import sim.tasks

    for module in pkgutil.iter_modules(sim.tasks.__path__, prefix="sim.tasks."):
        importlib.import_module(module.name)
    return TASKS


def task_spec(name: str) -> TaskSpec:
    """The spec of task ``name``; a TaskError with a "did you mean" when there is none."""
    tasks = load_tasks()
    if name not in tasks:
        close = difflib.get_close_matches(name, tasks, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise TaskError(f"unknown task {name!r}{hint} (see `robopolicy tasks`)")
    return tasks[name]


def make_task(name: str, **overrides: Any) -> Any:
    """A new environment of task ``name``, wrapped in a TimeLimit of its episode length.

    ``overrides`` replace the spec's constructor arguments (e.g. ``cameras=("front",)``).
    """
    import gymnasium as gym

    spec = task_spec(name)
    try:
        env = spec.entry(**{**spec.kwargs, **overrides})
    except ModuleNotFoundError as exc:
        if spec.extra is None:
            raise
        raise TaskError(
            f"task {name!r} needs the {spec.extra!r} extra ({exc.name} is not installed): "
            f"pip install -e '.[{spec.extra}]'"
        ) from exc
    return gym.wrappers.TimeLimit(env, max_episode_steps=spec.max_episode_steps)
