"""The operator view: what the operator sees while recording, behind one small interface.

An :class:`OperatorView` has ``show(status, images)`` (called every tick; a view redraws as
often as it likes), ``event(name, **fields)`` (an episode started, was kept or discarded, a
notice for the operator) and ``close()``. The session takes one, injected:

- :class:`HeadlessView`: JSON lines on a stream (stderr): every event, and a ``status`` line
  every ``every`` seconds of the session's clock. The tested path, and what scripts read;
- :class:`TerminalView`: one status line rewritten in place (episode, elapsed time, joints,
  gripper, cameras), each event printed above it;
- :class:`WindowView`: the camera images side by side in a pygame window (the ``teleop``
  extra), around another view that keeps the status line. The window only shows: keys still go
  to the terminal the command runs in.
"""

from __future__ import annotations

import abc
import dataclasses
import importlib.util
import json
import os
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import numpy as np

from hardware.teleop.device import DeviceError


@dataclasses.dataclass(frozen=True, eq=False)
class Status:
    """What the session is doing, once per tick."""

    time: float
    """Clock time of the tick (s)."""
    recording: bool
    """True while an episode is recorded; False between episodes (the arm is still driven)."""
    episode: int
    """Number of the episode being recorded, or of the next one."""
    kept: int
    """Episodes kept in this run."""
    episodes: int
    """Episodes this run is to keep."""
    elapsed: float
    """Seconds into the episode, or since the last one ended."""
    positions: np.ndarray
    """Measured joint positions (rad)."""
    gripper: float | None
    """Measured gripper (0 open .. 1 closed), None without one."""
    dropped: int
    """Frames of the episode in flight dropped because the writer was behind."""
    control: str = "operator"
    """Who drives: ``operator``, or in intervention mode ``policy``, ``holding`` (the arm
    waits for the policy's chunks) or ``stopped`` (the policy gave up: take over)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "recording": self.recording,
            "episode": self.episode,
            "kept": self.kept,
            "episodes": self.episodes,
            "elapsed": round(self.elapsed, 3),
            "positions": [round(float(q), 4) for q in self.positions],
            "gripper": None if self.gripper is None else round(float(self.gripper), 3),
            "dropped": self.dropped,
            "control": self.control,
        }


class OperatorView(abc.ABC):
    """Base class of the operator's views."""

    @abc.abstractmethod
    def show(self, status: Status, images: Mapping[str, np.ndarray]) -> None:
        """This tick's status and camera images (key ``image.<camera>`` -> (H, W, 3) uint8)."""

    @abc.abstractmethod
    def event(self, name: str, **fields: Any) -> None:
        """Something the operator should know (``episode_kept``, ``notice``, ...)."""

    def close(self) -> None:  # noqa: B027  (nothing to release by default)
        """Release what the view holds; idempotent."""


class HeadlessView(OperatorView):
    """JSON lines on ``stream``: every event, and the status every ``every`` clock seconds."""

    def __init__(self, stream: TextIO | None = None, *, every: float = 1.0) -> None:
        self.stream = stream or sys.stderr
        self.every = every
        self._next = float("-inf")

    def show(self, status: Status, images: Mapping[str, np.ndarray]) -> None:
        if status.time >= self._next:
            self._next = status.time + self.every
            cameras = {key: list(image.shape) for key, image in images.items()}
            self.event("status", **status.to_json(), cameras=cameras)

    def event(self, name: str, **fields: Any) -> None:
        self.stream.write(json.dumps({"event": name, **fields}) + "\n")
        self.stream.flush()


CLEAR_LINE = "\x1b[K"


class TerminalView(OperatorView):
    """A status line on ``stream`` (a terminal), redrawn every ``every`` clock seconds."""

    def __init__(self, stream: TextIO | None = None, *, every: float = 0.1) -> None:
        self.stream = stream or sys.stderr
        self.every = every
        self._next = float("-inf")
        self._drawn = False

    def show(self, status: Status, images: Mapping[str, np.ndarray]) -> None:
        if status.time < self._next:
            return
        self._next = status.time + self.every
        mode = "REC  " if status.recording else "ready"
        joints = " ".join(f"{q:+.2f}" for q in status.positions)
        gripper = "-" if status.gripper is None else f"{status.gripper:.2f}"
        cameras = ",".join(key.removeprefix("image.") for key in images) or "none"
        line = (
            f"{mode} episode {status.episode} ({status.kept}/{status.episodes} kept) "
            f"{status.elapsed:6.1f} s | {status.control} | joints {joints} | gripper {gripper} | "
            f"cameras {cameras} | dropped {status.dropped}"
        )
        self.stream.write(f"\r{line}{CLEAR_LINE}")
        self.stream.flush()
        self._drawn = True

    def event(self, name: str, **fields: Any) -> None:
        text = fields.pop("message", None) or " ".join(f"{k}={v}" for k, v in fields.items())
        self.stream.write(f"\r{CLEAR_LINE}{name}: {text}\n")
        self.stream.flush()
        self._next, self._drawn = float("-inf"), False  # redraw the status line below it

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self._drawn = False


def window_available() -> bool:
    """Whether :class:`WindowView` can open: pygame is installed and there is a display."""
    if importlib.util.find_spec("pygame") is None:
        return False
    if sys.platform in ("darwin", "win32"):
        return True
    return any(os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"))


class WindowView(OperatorView):
    """The camera images side by side in a pygame window, ``scale`` times their size, redrawn
    at most every ``every`` clock seconds; status and events go to ``inner``."""

    def __init__(self, inner: OperatorView, *, every: float = 1 / 15, scale: int = 2) -> None:
        self.inner = inner
        self.every = every
        self.scale = scale
        self._pygame: Any = None
        self._screen: Any = None
        self._next = float("-inf")

    def show(self, status: Status, images: Mapping[str, np.ndarray]) -> None:
        self.inner.show(status, images)
        if not images or status.time < self._next:
            return
        self._next = status.time + self.every
        pygame = self._open(images)
        x = 0
        for image in images.values():
            surface = pygame.surfarray.make_surface(np.ascontiguousarray(image.swapaxes(0, 1)))
            size = (image.shape[1] * self.scale, image.shape[0] * self.scale)
            self._screen.blit(pygame.transform.scale(surface, size), (x, 0))
            x += size[0]
        pygame.display.flip()
        pygame.event.pump()  # keeps the window responsive

    def event(self, name: str, **fields: Any) -> None:
        self.inner.event(name, **fields)

    def close(self) -> None:
        if self._pygame is not None:
            self._pygame.display.quit()
            self._pygame = self._screen = None
        self.inner.close()

    def _open(self, images: Mapping[str, np.ndarray]) -> Any:
        if self._pygame is None:
            os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
            try:
                import pygame
            except ImportError as exc:
                raise DeviceError(
                    f"the operator window needs pygame: pip install 'robopolicy[teleop]' ({exc})"
                ) from exc
            pygame.display.init()
            width = sum(image.shape[1] for image in images.values()) * self.scale
            height = max(image.shape[0] for image in images.values()) * self.scale
            self._screen = pygame.display.set_mode((width, height))
            pygame.display.set_caption("robopolicy teleop")
            self._pygame = pygame
        return self._pygame
