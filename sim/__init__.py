"""Simulated tasks behind one gymnasium API: ``make_task(name)``, ``load_tasks()``."""

from sim.registry import TaskMeta, TaskSpec, load_tasks, make_task, register_task, task_spec

__all__ = ["TaskMeta", "TaskSpec", "load_tasks", "make_task", "register_task", "task_spec"]
