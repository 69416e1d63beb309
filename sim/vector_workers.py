"""Where the envs of :mod:`sim.vector` live: worker processes (or this process), and the pipes.

:class:`Workers` is the parent's side: one channel per group of envs, replies read in step,
errors raised as :class:`VectorEnvError`, and shutdown. :class:`EnvGroup` is the envs' side, the
same code whether it serves a worker process (:func:`worker_main`) or runs in this process
(:class:`LocalChannel`). Messages are ``(command, args)``; replies are ``("ok", payload)`` or
``("error", (env index, message, traceback text))``. A worker exits on "close", on EOF of its
pipe, and when the parent dies: a thread blocks on a second pipe whose only writer is the parent.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing as mp
import os
import pickle
import signal
import threading
import traceback
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from sim.gl import STATE as GL_STATE
from sim.gl import inherit


class VectorEnvError(RuntimeError):
    """An env raised in its worker (or a worker died); carries the env index and traceback."""

    def __init__(self, message: str, *, index: int, remote_traceback: str = "") -> None:
        self.index = index
        self.remote_traceback = remote_traceback
        text = f"env {index}: {message}"
        if remote_traceback:
            text += f"\n--- traceback in the worker ---\n{remote_traceback.rstrip()}"
        super().__init__(text)


COMMANDS = frozenset({"open", "reset", "step", "run", "call", "close"})


def _as_obs(obs: Any) -> dict[str, np.ndarray]:
    if not isinstance(obs, Mapping):
        raise TypeError(f"observation must be a dict of arrays (sim/registry.py), got {type(obs)}")
    return {key: np.asarray(value) for key, value in obs.items()}


def _stack(obs: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {key: np.stack([o[key] for o in obs]) for key in obs[0]} if obs else {}


class EnvGroup:
    """Envs with global indices ``indices``; ``current`` is the env being called (for errors)."""

    def __init__(self, indices: Iterable[int]) -> None:
        self.indices = list(indices)
        self.current = self.indices[0]
        self.envs: list[Any] = []

    def open(self, env_fn: Callable[[], Any]) -> dict[str, Any]:
        """Create the envs; return the spaces and task meta of the first."""
        for index in self.indices:
            self.current = index
            self.envs.append(env_fn())
        env = self.envs[0]
        return {
            "observation_space": env.observation_space,
            "action_space": env.action_space,
            "task_meta": getattr(env.unwrapped, "task_meta", None),
        }

    def reset(self, seeds: np.ndarray, options: dict | None) -> dict[str, Any]:
        """Reset env r with ``seeds[r]``."""
        obs, infos = [], []
        for row, env in enumerate(self.envs):
            self.current = self.indices[row]
            o, info = env.reset(seed=int(seeds[row]), options=options)
            obs.append(_as_obs(o))
            infos.append(info)
        return {"obs": _stack(obs), "infos": infos}

    def step(self, actions: np.ndarray, active: np.ndarray, next_seeds: np.ndarray) -> dict:
        """Step the active envs; an env that ends is reset at once with its ``next_seeds`` entry."""
        rows = np.flatnonzero(active)
        obs, infos, final = [], [], {}
        flags = np.zeros((4, len(rows)), dtype=bool)  # terminated, truncated, is_success, -
        reward, score = np.zeros(len(rows)), np.zeros(len(rows))
        for j, row in enumerate(rows):
            self.current = self.indices[row]
            env = self.envs[row]
            o, reward[j], flags[0, j], flags[1, j], info = env.step(actions[row])
            if "is_success" not in info or "score" not in info:
                raise KeyError("step info must carry 'is_success' and 'score' (sim/registry.py)")
            flags[2, j], score[j] = bool(info["is_success"]), float(info["score"])
            o = _as_obs(o)
            if flags[0, j] or flags[1, j]:
                final[int(row)] = o
                o = _as_obs(env.reset(seed=int(next_seeds[row]))[0])
            obs.append(o)
            infos.append(info)
        return {
            "rows": rows,
            "obs": _stack(obs),
            "reward": reward,
            "terminated": flags[0],
            "truncated": flags[1],
            "is_success": flags[2],
            "score": score,
            "final": final,
            "infos": infos,
        }

    def run(self, actions: np.ndarray, active: np.ndarray, next_seeds: np.ndarray) -> list[dict]:
        """:meth:`step` through ``actions[:, j]``, stopping each env after its episode ends."""
        running, steps = active.copy(), []
        for j in range(actions.shape[1]):
            if not running.any():
                break
            steps.append(self.step(actions[:, j], running, next_seeds))
            ended = steps[-1]["terminated"] | steps[-1]["truncated"]
            running[steps[-1]["rows"][ended]] = False
        return steps

    def call(self, name: str, args: tuple, kwargs: dict, rows: list[int]) -> dict[int, Any]:
        """``{global index: env.name(*args, **kwargs)}`` (or the attribute) for ``rows``."""
        out = {}
        for row in rows:
            self.current = self.indices[row]
            attr = self.envs[row].get_wrapper_attr(name)
            out[self.indices[row]] = attr(*args, **kwargs) if callable(attr) else attr
        return out

    def close(self) -> str:
        """Close every env (idempotent, errors ignored: this runs on the way out)."""
        envs, self.envs = self.envs, []
        for env in envs:
            with contextlib.suppress(Exception):
                env.close()
        return "closed"


def handle(group: EnvGroup, message: tuple[str, Any]) -> tuple[str, Any]:
    """Run one command on ``group``; exceptions become an ``("error", ...)`` reply."""
    command, args = message
    try:
        if command not in COMMANDS:
            raise ValueError(f"unknown command {command!r}")
        return "ok", getattr(group, command)(*(args or ()))
    except Exception as exc:
        return "error", (group.current, f"{type(exc).__name__}: {exc}", traceback.format_exc())


class LocalChannel:
    """A pipe look-alike that runs each command in this process when it is sent."""

    def __init__(self, group: EnvGroup) -> None:
        self.group = group
        self._replies: deque[tuple[str, Any]] = deque()

    def send(self, message: tuple[str, Any]) -> None:
        self._replies.append(handle(self.group, message))

    def recv(self) -> tuple[str, Any]:
        return self._replies.popleft()

    def poll(self, timeout: float | None = None) -> bool:
        return bool(self._replies)

    def close(self) -> None:
        self.group.close()


def _exit_with_parent(alive: Any) -> None:
    """Block on a pipe whose only writer is the parent: EOF means the parent is gone."""
    with contextlib.suppress(EOFError, OSError):
        alive.recv()
    os._exit(0)


def worker_main(indices: range, conn: Any, alive: Any, rendering: str | None) -> None:
    """Serve commands for envs ``indices`` until "close", EOF, or the parent's death;
    ``rendering`` is the parent's GL state (:func:`sim.gl.inherit`)."""
    inherit(rendering)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    threading.Thread(target=_exit_with_parent, args=(alive,), daemon=True).start()
    group = EnvGroup(indices)
    try:
        while True:
            message = conn.recv()
            reply = handle(group, message)
            try:
                conn.send(reply)
            except (pickle.PicklingError, TypeError, AttributeError) as exc:
                error = f"the reply cannot be pickled: {type(exc).__name__}: {exc}"
                conn.send(("error", (group.current, error, traceback.format_exc())))
            if message[0] == "close":
                return
    except (EOFError, OSError):
        return  # the parent closed its end or died
    finally:
        group.close()


class Workers:
    """The parent's side: channel ``w`` serves envs ``starts[w]`` … ``starts[w + 1] - 1``."""

    def __init__(
        self, starts: list[int], in_process: bool, start_method: str, timeout_s: float | None
    ) -> None:
        self.starts, self.timeout_s = starts, timeout_s
        self.channels: list[Any] = []
        self.processes: list[Any] = []
        self._alive: list[Any] = []  # the parent-death pipe's write end, closed last
        self._finalizer = weakref.finalize(
            self, _shutdown, self.channels, self.processes, self._alive
        )
        if in_process:
            self.channels.append(LocalChannel(EnvGroup(range(starts[-1]))))
            return
        ctx = mp.get_context(start_method)
        alive_r, alive_w = ctx.Pipe(duplex=False)
        self._alive.append(alive_w)
        for start, stop in itertools.pairwise(starts):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=worker_main,
                args=(range(start, stop), child, alive_r, os.environ.get(GL_STATE)),
                name=f"robopolicy-env-{start}-{stop - 1}",
                daemon=True,
            )
            proc.start()
            child.close()
            self.channels.append(parent)
            self.processes.append(proc)
        alive_r.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run (explicitly, or after an error)."""
        return not self._finalizer.alive

    @property
    def pids(self) -> list[int]:
        """Process ids of the workers (empty in process)."""
        return [p.pid for p in self.processes]

    def send(self, w: int, command: str, args: Any) -> None:
        """Send a command to channel ``w``; a dead worker closes everything and raises."""
        try:
            self.channels[w].send((command, args))
        except (OSError, ValueError) as exc:
            error = self._died(w)
            self.close()
            raise error from exc

    def recv_all(self, workers: Sequence[int]) -> list[Any]:
        """Every listed worker's reply (all are read, so the pipes stay in step); on any error,
        close everything and raise the first."""
        try:
            replies = [self._recv(w) for w in workers]
        except BaseException:  # e.g. Ctrl-C mid-read: the pipes are out of step for good
            self.close()
            raise
        errors = [r for r in replies if isinstance(r, BaseException)]
        if errors:
            self.close()
            raise errors[0]
        return replies

    def _recv(self, w: int) -> Any:
        channel, first = self.channels[w], self.starts[w]
        try:
            if self.timeout_s is not None and not channel.poll(self.timeout_s):
                return TimeoutError(
                    f"env {first}..: no reply from its worker in {self.timeout_s} s"
                )
            status, payload = channel.recv()
        except (EOFError, OSError):
            return self._died(w)
        if status == "ok":
            return payload
        index, message, tb = payload
        return VectorEnvError(message, index=index, remote_traceback=tb)

    def _died(self, w: int) -> VectorEnvError:
        proc = self.processes[w]
        proc.join(1.0)
        message = f"worker died (exit code {proc.exitcode}; its stderr may say why)"
        return VectorEnvError(message, index=self.starts[w])

    def close(self) -> None:
        """Stop every worker and close the envs (idempotent)."""
        self._finalizer()


def _shutdown(channels: list[Any], processes: list[Any], pipes: list[Any]) -> None:
    """Ask every worker to stop, drain its pipe, then terminate (and kill) any that stays."""
    timeout = 5.0
    for channel in channels:
        with contextlib.suppress(OSError, ValueError):
            channel.send(("close", None))
    for channel in channels:
        try:
            while channel.poll(timeout) and channel.recv() != ("ok", "closed"):
                pass
        except (EOFError, OSError, ValueError):
            pass
        channel.close()
    for proc in processes:
        proc.join(timeout)
        if proc.is_alive():
            proc.terminate()
            proc.join(1.0)
        if proc.is_alive():
            proc.kill()
            proc.join()
    for pipe in pipes:
        pipe.close()
