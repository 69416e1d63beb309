"""Offscreen GL for MuJoCo: never needed to step a task, chosen at the first render.

Importing :mod:`sim` lets MuJoCo load without any GL library (``MUJOCO_GL=disable`` for its
import), so every task steps on a machine that has none. The first render — a camera
observation, a video frame, a simulated camera — picks a backend: the one ``MUJOCO_GL`` names
when the user set it, else EGL (a GPU driver's, or Mesa's software one), then OSMesa (Debian's
``libosmesa6``). Each candidate is tried in a short subprocess, because a GL start that fails can
leave a process unusable. The outcome travels to child processes (vector env workers) in
``ROBOPOLICY_GL``, so a process tree probes once.

When no backend works, :func:`require_rendering` raises :class:`RenderingUnavailable`, one line
saying how to enable rendering: callers that can do without (videos) skip with it, callers that
cannot (camera observations) fail with it.
"""

from __future__ import annotations

import importlib
import logging
import os
import subprocess
import sys
import threading
from collections.abc import MutableMapping
from typing import Any

from sim.registry import TaskError

# PyOpenGL announces at INFO, on every import, that its optional accelerator module is absent.
logging.getLogger("OpenGL").setLevel(logging.WARNING)

STATE = "ROBOPOLICY_GL"
"""Environment variable: ``try:<backend>,...`` before the first render, then the working
backend, or ``none``."""
BACKENDS = ("egl", "osmesa", "glfw")
"""The values of ``MUJOCO_GL`` that name a Linux backend."""
HINT = (
    "videos and camera images need one: install Mesa's OSMesa (`sudo apt-get install "
    "libosmesa6`) or a GPU driver's EGL, or set MUJOCO_GL to a backend that works"
)
_DISABLED = ("disable", "disabled", "off", "false", "0")
_PROBE = (
    "import sys\n"
    "try:\n"
    "    import mujoco\n"
    "except AttributeError:\n"  # PyOpenGL loaded no library for the platform
    "    sys.exit('no library')\n"
    "renderer = mujoco.Renderer(mujoco.MjModel.from_xml_string('<mujoco/>'), 16, 16)\n"
    "renderer.render()\n"
    "renderer.close()\n"
)
_lock = threading.Lock()


class RenderingUnavailable(TaskError):
    """No offscreen GL backend works in this process: the message says how to get one."""


def prepare_import() -> None:
    """Run before anything imports MuJoCo (:mod:`sim` does): load no GL library at its import,
    unless a parent process has already found a working backend (then load that one)."""
    if sys.platform != "linux" or "mujoco" in sys.modules:
        return
    state = os.environ.get(STATE)
    if state is None:
        requested = os.environ.get("MUJOCO_GL", "").strip().lower()
        if requested in _DISABLED:
            state = "none"
        elif requested in BACKENDS:
            state = f"try:{requested}"
        else:
            state = "try:egl,osmesa" + (",glfw" if os.environ.get("DISPLAY") else "")
        os.environ[STATE] = state
    if state in BACKENDS:
        _export(state)
    else:
        os.environ["MUJOCO_GL"] = "disable"


def inherit(state: str | None) -> None:
    """Take a parent's GL state (its ``ROBOPOLICY_GL``) in a child whose environment predates it,
    as a forkserver's children's does, so that the child does not probe again."""
    if state is not None and os.environ.get(STATE, "try:").startswith("try:"):
        os.environ[STATE] = state


def require_rendering() -> str:
    """The working backend, found on first call (module docstring); RenderingUnavailable when
    there is none."""
    with _lock:
        state = os.environ.get(STATE)
        if state is None:  # MuJoCo was imported before sim: it rendered with what it loaded
            return os.environ.get("MUJOCO_GL", "default")
        if state == "none":
            raise RenderingUnavailable(f"no offscreen GL backend works here; {HINT}")
        if state.startswith("try:"):
            problems = []
            for backend in state[len("try:") :].split(","):
                problem = _probe(backend)
                if problem is None:
                    state = os.environ[STATE] = backend
                    break
                problems.append(f"{backend}: {problem}")
            else:
                os.environ[STATE] = "none"
                raise RenderingUnavailable(
                    f"no offscreen GL backend works here ({'; '.join(problems)}); {HINT}"
                )
        _activate(state)
        return state


def rendering_problem() -> str | None:
    """Why nothing can be rendered here (the :class:`RenderingUnavailable` message), or None."""
    try:
        require_rendering()
    except RenderingUnavailable as exc:
        return str(exc)
    return None


def make_renderer(model: Any, height: int, width: int) -> Any:
    """A ``mujoco.Renderer`` of ``model`` on the working backend (RenderingUnavailable if none)."""
    backend = require_rendering()
    import mujoco

    try:
        return mujoco.Renderer(model, height=height, width=width)
    except Exception as exc:
        raise RenderingUnavailable(f"offscreen GL ({backend}) failed: {exc}; {HINT}") from exc


def _export(backend: str, environ: MutableMapping[str, str] = os.environ) -> None:
    """Point MuJoCo (and PyOpenGL, which it renders through) at ``backend`` in ``environ``."""
    environ["MUJOCO_GL"] = backend
    if backend == "glfw":
        environ.pop("PYOPENGL_PLATFORM", None)
    else:
        environ["PYOPENGL_PLATFORM"] = backend


def _probe(backend: str) -> str | None:
    """Why ``backend`` cannot render, tried in a subprocess; None when it can."""
    env = dict(os.environ)
    env.pop(STATE, None)
    _export(backend, env)
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        return "timed out"
    if done.returncode == 0:
        return None
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    return (lines[-1] if lines else f"exit status {done.returncode}")[:200]


def _activate(backend: str) -> None:
    """Make ``backend`` this process's: MuJoCo imported with GL disabled gets its context."""
    _export(backend)
    mujoco = sys.modules.get("mujoco")
    if mujoco is None:
        return
    from mujoco import gl_context

    if getattr(gl_context, "GLContext", None) is None:
        try:
            context = importlib.import_module(f"mujoco.{backend}").GLContext
        except Exception as exc:
            raise RenderingUnavailable(
                f"offscreen GL ({backend}) failed to load: {exc}; {HINT}"
            ) from exc
        gl_context.GLContext = mujoco.GLContext = context
