"""Simulated tasks behind one gymnasium API: ``make_task(name)``, ``load_tasks()``.

Stepping a task never needs GL: MuJoCo loads with rendering deferred, and the first render picks
a working offscreen backend (:mod:`sim.gl`).
"""

from sim.gl import prepare_import

prepare_import()

from sim.registry import (  # noqa: E402  (after MuJoCo's GL is deferred)
    TaskMeta,
    TaskSpec,
    load_tasks,
    make_task,
    register_task,
    task_spec,
)

__all__ = ["TaskMeta", "TaskSpec", "load_tasks", "make_task", "register_task", "task_spec"]
