"""Simulated tasks behind one gymnasium API: ``make_task(name)``, ``load_tasks()``.

Offscreen rendering: with no display and no ``MUJOCO_GL`` set, MuJoCo renders through OSMesa
(Debian's ``libosmesa6``), which works on any machine; set ``MUJOCO_GL=egl`` on a GPU machine.
"""

import os

if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
    os.environ["MUJOCO_GL"] = "osmesa"
    os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")

from sim.registry import (  # after the rendering backend is chosen
    TaskMeta,
    TaskSpec,
    load_tasks,
    make_task,
    register_task,
    task_spec,
)

__all__ = ["TaskMeta", "TaskSpec", "load_tasks", "make_task", "register_task", "task_spec"]
