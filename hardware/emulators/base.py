"""The servo-bus emulator core: N servos with registers, served on a pseudo-terminal.

``start()`` opens a pty pair (``os.openpty``) and serves the master end in a thread; ``path``
is the slave end, which a driver opens like a serial port. Requests are parsed with the
protocol's own framing (checks verified: a corrupt request is ignored, as a servo would), and
each servo answers ping, read, write, sync read and sync write from its register file.

Motion: with torque on, each servo's present position moves toward its goal at ``speed``
ticks/s (updated on every request). Faults for tests, per servo id, for the next ``times``
replies (None: until :meth:`clear_faults`): :meth:`corrupt_checksum`, :meth:`silence`, and
:meth:`hold`, which keeps a reply back until :meth:`release` — a late reply that arrives when
the test says, not after a sleep that a loaded machine can stretch. ``replies`` counts the
replies written, so a test can wait until a late one is on the line.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import os
import select
import termios
import threading
import time
import tty
from collections.abc import Iterable
from typing import ClassVar

from hardware.buses.base import (
    PING,
    READ,
    SYNC_READ,
    SYNC_WRITE,
    WRITE,
    ControlTable,
    FrameError,
    Framing,
    Packet,
)


@dataclasses.dataclass
class EmulatedServo:
    """One servo: its register file and where it is."""

    id: int
    registers: bytearray
    position: float
    """Present position (ticks)."""


@dataclasses.dataclass
class _Fault:
    kind: str
    times: int | None


class ServoEmulator(abc.ABC):
    """Emulated servos ``ids`` of one protocol on a pty (a context manager)."""

    framing: ClassVar[Framing]
    field_width: ClassVar[int]
    """Bytes of an address or a size in read/write parameters."""
    default_table: ClassVar[ControlTable]

    def __init__(
        self,
        ids: Iterable[int] = range(1, 7),
        *,
        table: ControlTable | None = None,
        speed: float = 4000.0,
        initial: int = 2048,
    ) -> None:
        self.table = table or self.default_table
        self.speed = speed
        self.servos = {i: self._make_servo(i, initial) for i in ids}
        self.requests = 0
        """Requests received with a valid check."""
        self.bad_requests = 0
        """Requests dropped for a bad check."""
        self.replies = 0
        """Replies written to the line (a held one once it is released)."""
        self._released = threading.Event()
        self._faults: dict[int, list[_Fault]] = {}
        self._lock = threading.Lock()
        self._last_update = time.monotonic()
        self._thread: threading.Thread | None = None
        self._fds: tuple[int, int, int, int] | None = None
        self.path = ""

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> ServoEmulator:
        master, slave = os.openpty()
        tty.setraw(slave, termios.TCSANOW)  # no echo, no newline translation: a byte pipe
        wake_r, wake_w = os.pipe()
        self._fds = (master, slave, wake_r, wake_w)
        self.path = os.ttyname(slave)
        self._thread = threading.Thread(target=self._serve, name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._fds is None:
            return
        self._released.set()  # a held reply must not keep the serving thread
        os.write(self._fds[3], b"x")
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds, self._thread = None, None

    def __enter__(self) -> ServoEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults ---------------------------------------------------------------------------------

    def corrupt_checksum(self, servo_id: int, times: int | None = 1) -> None:
        """The next ``times`` replies of ``servo_id`` carry a wrong checksum/CRC."""
        self._add_fault(servo_id, _Fault("corrupt", times))

    def silence(self, servo_id: int, times: int | None = None) -> None:
        """``servo_id`` does not answer (the next ``times`` requests, or until cleared)."""
        self._add_fault(servo_id, _Fault("silent", times))

    def hold(self, servo_id: int, times: int | None = 1) -> None:
        """``servo_id``'s next ``times`` replies wait for :meth:`release` (the emulator answers
        nothing else meanwhile, as a bus is busy while a servo talks)."""
        self._released.clear()
        self._add_fault(servo_id, _Fault("hold", times))

    def release(self) -> None:
        """Let held replies go (late, as far as the host is concerned)."""
        self._released.set()

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    # -- state ----------------------------------------------------------------------------------

    def position(self, servo_id: int) -> int:
        """Present position (ticks) of ``servo_id``, as a read would report it now."""
        with self._lock:
            self._move()
            return round(self.servos[servo_id].position)

    def register(self, servo_id: int, address: int, size: int) -> int:
        with self._lock:
            data = self.servos[servo_id].registers[address : address + size]
        return int.from_bytes(data, "little", signed=size == 4)

    # -- protocol hooks -------------------------------------------------------------------------

    @abc.abstractmethod
    def status(self, servo_id: int, error: int, params: bytes) -> bytes:
        """A status packet from ``servo_id``."""

    @abc.abstractmethod
    def ping_params(self, servo_id: int) -> bytes: ...

    # -- serving --------------------------------------------------------------------------------

    def _serve(self) -> None:
        assert self._fds is not None
        master, _, wake_r, _ = self._fds
        buf = bytearray()
        while True:
            ready = select.select([master, wake_r], [], [])[0]
            if wake_r in ready:
                return
            try:
                buf += os.read(master, 4096)
            except OSError:
                return
            while (frame := self.framing.extract(buf)) is not None:
                try:
                    packet = self.framing.decode(frame)
                except FrameError:
                    self.bad_requests += 1
                    continue
                self.requests += 1
                for servo_id, reply in self._handle(packet):
                    self._reply(master, servo_id, reply)

    def _handle(self, packet: Packet) -> list[tuple[int, bytes]]:
        """Apply ``packet``; the replies due, in bus order, as (servo id, bytes)."""
        w, p = self.field_width, packet.params
        with self._lock:
            self._move()
            servo = self.servos.get(packet.servo_id)
            if packet.code == PING and servo:
                return [(servo.id, self.status(servo.id, 0, self.ping_params(servo.id)))]
            if packet.code == READ and servo:
                address, size = _u(p[:w]), _u(p[w : 2 * w])
                return [(servo.id, self.status(servo.id, 0, self._get(servo, address, size)))]
            if packet.code == WRITE and servo:
                self._set(servo, _u(p[:w]), p[w:])
                return [(servo.id, self.status(servo.id, 0, b""))]
            if packet.code == SYNC_READ:
                address, size = _u(p[:w]), _u(p[w : 2 * w])
                ids = [i for i in p[2 * w :] if i in self.servos]
                return [
                    (i, self.status(i, 0, self._get(self.servos[i], address, size))) for i in ids
                ]
            if packet.code == SYNC_WRITE:
                address, size = _u(p[:w]), _u(p[w : 2 * w])
                for k in range(2 * w, len(p) - size, size + 1):
                    target = self.servos.get(p[k])
                    if target is not None:
                        self._set(target, address, p[k + 1 : k + 1 + size])
        return []

    def _reply(self, master: int, servo_id: int, reply: bytes) -> None:
        fault = self._take_fault(servo_id)
        if fault is not None and fault.kind == "silent":
            return
        if fault is not None and fault.kind == "hold":
            self._released.wait()
        if fault is not None and fault.kind == "corrupt":
            reply = reply[:-1] + bytes([reply[-1] ^ 0x5A])
        with contextlib.suppress(OSError):
            os.write(master, reply)
            self.replies += 1

    def _take_fault(self, servo_id: int) -> _Fault | None:
        with self._lock:
            queue = self._faults.get(servo_id)
            if not queue:
                return None
            fault = queue[0]
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    queue.pop(0)
            return fault

    def _add_fault(self, servo_id: int, fault: _Fault) -> None:
        with self._lock:
            self._faults.setdefault(servo_id, []).append(fault)

    def _make_servo(self, servo_id: int, initial: int) -> EmulatedServo:
        t = self.table
        servo = EmulatedServo(servo_id, bytearray(256), float(initial))
        self._set(servo, t.model_register.address, t.model_register.encode(t.model_number))
        self._set(servo, t.goal_position.address, t.goal_position.encode(initial))
        return servo

    def _move(self) -> None:
        """Advance every torque-enabled servo toward its goal (lock held)."""
        now = time.monotonic()
        reach = self.speed * (now - self._last_update)
        self._last_update = now
        t = self.table
        goal_at, present = t.goal_position, t.present_position
        for servo in self.servos.values():
            if servo.registers[t.torque_enable.address]:
                goal = goal_at.decode(self._get(servo, goal_at.address, goal_at.size))
                step = max(-reach, min(reach, goal - servo.position))
                servo.position += step
            self._set(servo, present.address, present.encode(round(servo.position)))

    @staticmethod
    def _get(servo: EmulatedServo, address: int, size: int) -> bytes:
        return bytes(servo.registers[address : address + size])

    @staticmethod
    def _set(servo: EmulatedServo, address: int, data: bytes) -> None:
        servo.registers[address : address + len(data)] = data


def _u(data: bytes) -> int:
    return int.from_bytes(data, "little")
