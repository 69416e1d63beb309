"""Byte transports for servo buses: what a bus driver writes to and reads from.

A bus never opens a port itself; it is handed a :class:`Transport`, so the same driver code
runs on a USB serial adapter, on a pseudo-terminal driven by an emulator
(:mod:`hardware.emulators`), or on anything else that moves bytes:

- :class:`PySerialTransport`: pyserial (the ``hardware`` extra), imported only when used;
- :class:`PosixTransport`: the standard library alone (``termios``/``select``), Linux/macOS;
- :func:`open_serial`: pyserial when it is installed, else the POSIX one.
"""

from __future__ import annotations

import errno
import os
import select
import time
from typing import Any, Literal, Protocol, runtime_checkable

from hardware.driver import DriverError


class TransportError(DriverError):
    """The port cannot be opened, or it went away (unplugged adapter, closed emulator)."""


@runtime_checkable
class Transport(Protocol):
    """Bytes in and out of a half-duplex bus."""

    def write(self, data: bytes) -> None:
        """Send all of ``data``."""
        ...

    def read(self, n: int, timeout: float) -> bytes:
        """Up to ``n`` bytes: returns when ``n`` arrived or ``timeout`` seconds passed."""
        ...

    def close(self) -> None: ...


class PosixTransport:
    """A serial port (or pty) through ``termios``: raw 8N1, non-blocking, ``select`` timeouts."""

    def __init__(self, path: str, baudrate: int = 1_000_000) -> None:
        import termios  # POSIX only: imported here so this module loads everywhere

        speed = getattr(termios, f"B{baudrate}", None)
        if speed is None:
            raise TransportError(f"{path}: baud rate {baudrate} is not supported here")
        try:
            self._fd: int | None = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError as exc:
            raise TransportError(f"cannot open {path}: {exc.strerror}") from exc
        self.path = path
        try:
            attrs = termios.tcgetattr(self._fd)
            iflag, oflag, cflag, lflag = attrs[:4]
            iflag &= ~(termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP)
            iflag &= ~(termios.INLCR | termios.IGNCR | termios.ICRNL | termios.IXON | termios.IXOFF)
            oflag &= ~termios.OPOST
            lflag &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG)
            lflag &= ~termios.IEXTEN
            cflag &= ~(termios.CSIZE | termios.PARENB | termios.CSTOPB)
            cflag |= termios.CS8 | termios.CLOCAL | termios.CREAD
            attrs[:6] = [iflag, oflag, cflag, lflag, speed, speed]
            attrs[6][termios.VMIN], attrs[6][termios.VTIME] = 0, 0
            termios.tcsetattr(self._fd, termios.TCSANOW, attrs)
            termios.tcflush(self._fd, termios.TCIOFLUSH)
        except termios.error as exc:
            self.close()
            raise TransportError(f"{path} is not a serial port: {exc}") from exc

    def write(self, data: bytes) -> None:
        fd = self._require()
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                select.select([], [fd], [], 0.1)
            except OSError as exc:
                raise TransportError(f"{self.path}: write failed: {exc.strerror}") from exc

    def read(self, n: int, timeout: float) -> bytes:
        fd = self._require()
        out = bytearray()
        deadline = time.monotonic() + max(timeout, 0.0)
        while len(out) < n:
            remaining = max(deadline - time.monotonic(), 0.0)
            if not select.select([fd], [], [], remaining)[0]:
                break
            try:
                chunk = os.read(fd, n - len(out))
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno == errno.EIO:  # the other end of a pty is gone
                    raise TransportError(f"{self.path}: the device went away") from exc
                raise TransportError(f"{self.path}: read failed: {exc.strerror}") from exc
            if not chunk:
                raise TransportError(f"{self.path}: the device went away")
            out += chunk
        return bytes(out)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _require(self) -> int:
        if self._fd is None:
            raise TransportError(f"{self.path} is closed")
        return self._fd


class PySerialTransport:
    """A serial port through pyserial (``pip install 'robopolicy[hardware]'``)."""

    def __init__(self, path: str, baudrate: int = 1_000_000) -> None:
        serial = _import_pyserial()
        try:
            self._port: Any = serial.Serial(path, baudrate=baudrate, timeout=0, write_timeout=1.0)
        except (serial.SerialException, ValueError) as exc:
            raise TransportError(f"cannot open {path}: {exc}") from exc
        self._serial = serial
        self._timeout: float | None = 0.0
        self.path = path
        self._port.reset_input_buffer()
        try:
            self._fd: int | None = self._port.fileno()
        except (AttributeError, OSError, ValueError):
            self._fd = None

    def write(self, data: bytes) -> None:
        try:
            self._port.write(data)
        except self._serial.SerialException as exc:
            raise TransportError(f"{self.path}: write failed: {exc}") from exc

    def read(self, n: int, timeout: float) -> bytes:
        timeout = max(timeout, 0.0)
        try:
            if self._fd is None:  # no file descriptor (Windows): let pyserial wait
                if timeout != self._timeout:  # setting it reconfigures the port
                    self._port.timeout = self._timeout = timeout
                return bytes(self._port.read(n))
            out = bytearray()  # POSIX: wait in select; the port stays non-blocking
            deadline = time.monotonic() + timeout
            while len(out) < n:
                remaining = max(deadline - time.monotonic(), 0.0)
                if not select.select([self._fd], [], [], remaining)[0]:
                    break
                out += self._port.read(n - len(out))
            return bytes(out)
        except (self._serial.SerialException, OSError) as exc:
            raise TransportError(f"{self.path}: read failed: {exc}") from exc

    def close(self) -> None:
        self._port.close()


def _import_pyserial() -> Any:
    try:
        import serial
    except ImportError as exc:
        raise TransportError(
            "pyserial is not installed: pip install 'robopolicy[hardware]'"
        ) from exc
    return serial


def open_serial(
    path: str, baudrate: int = 1_000_000, backend: Literal["auto", "pyserial", "posix"] = "auto"
) -> Transport:
    """Open ``path`` (``/dev/ttyUSB0``, ``/dev/ttyACM0``, a pty) as a raw serial transport."""
    if backend == "pyserial" or (backend == "auto" and _has_pyserial()):
        return PySerialTransport(path, baudrate)
    if backend not in ("auto", "posix"):
        raise TransportError(f"unknown transport backend {backend!r} (auto, pyserial, posix)")
    return PosixTransport(path, baudrate)


def _has_pyserial() -> bool:
    try:
        _import_pyserial()
    except TransportError:
        return False
    return True
