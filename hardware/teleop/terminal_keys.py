"""Key presses from the terminal: stdin in cbreak mode, read by a thread, no extra packages.

:class:`TerminalKeys` puts the terminal in cbreak mode (keys arrive one by one, unechoed;
Ctrl-C still interrupts), reads it in a daemon thread and queues key names for
:meth:`poll`. ``stop()`` restores the terminal's settings, also after an exception, so the
shell is never left raw. Escape sequences of the arrow keys become ``"up"``, ``"down"``,
``"right"`` and ``"left"``; a lone escape is ``"escape"``. The file descriptor is injectable, so
tests drive it through a pseudo-terminal.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import threading
import tty

from hardware.teleop.device import DeviceError

NAMES = {"\r": "enter", "\n": "enter", "\x7f": "backspace", "\b": "backspace", "\t": "tab"}
NAMES[" "] = "space"
ARROWS = {"A": "up", "B": "down", "C": "right", "D": "left"}


def key_names(text: str) -> list[str]:
    """Key names in ``text`` as a terminal sends it (escape sequences of arrows resolved)."""
    keys: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\x1b" and text[i + 1 : i + 2] in ("[", "O") and text[i + 2 : i + 3] in ARROWS:
            keys.append(ARROWS[text[i + 2]])
            i += 3
            continue
        keys.append("escape" if char == "\x1b" else NAMES.get(char, char))
        i += 1
    return keys


class TerminalKeys:
    """A key source reading a terminal (default: stdin) in a background thread."""

    def __init__(self, fd: int | None = None) -> None:
        self.fd = sys.stdin.fileno() if fd is None else fd
        self._keys: list[str] = []
        self._lock = threading.Lock()
        self._saved: list | None = None
        self._wake: tuple[int, int] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> TerminalKeys:
        """Switch the terminal to cbreak mode and start reading it."""
        if not os.isatty(self.fd):
            raise DeviceError(
                "the keyboard device reads a terminal, and stdin is not one: "
                "run it in a terminal, or pick another device"
            )
        self._saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd, termios.TCSANOW)
        self._wake = os.pipe()
        self._thread = threading.Thread(
            target=self._run, args=(self._wake[0],), name="TerminalKeys", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop reading and restore the terminal; calling it again does nothing."""
        if self._wake is None:
            return
        os.write(self._wake[1], b"x")
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        for fd in self._wake:
            os.close(fd)
        if self._saved is not None:
            with contextlib.suppress(termios.error):
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
        self._wake = self._thread = self._saved = None

    def poll(self) -> list[str]:
        with self._lock:
            keys, self._keys = self._keys, []
        return keys

    def _run(self, wake: int) -> None:
        while True:
            ready, _, _ = select.select([self.fd, wake], [], [])
            if wake in ready:
                return
            try:
                data = os.read(self.fd, 64)
            except OSError:
                return
            if not data:
                return
            keys = key_names(data.decode("utf-8", errors="replace"))
            with self._lock:
                self._keys.extend(keys)
