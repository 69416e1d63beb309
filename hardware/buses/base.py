"""What the Feetech and Dynamixel buses share: registers, framing, request and reply.

Both protocols frame packets as ``header, id, length, instruction-or-status, params, check`` and
use the same instruction codes (ping, read, write, sync read, sync write). A protocol module
supplies a :class:`Framing` (header, how long a frame is, encode, decode with its check) and its
parameter layout; :class:`ServoBus` does the rest over an injected transport.

Every failure is a :class:`BusError` naming the servo and what happened — no reply, a corrupt
check, a reply from another id, a status error — so a bad reply is never read as a position.
"""

from __future__ import annotations

import abc
import dataclasses
import time
from collections.abc import Iterable, Mapping, Sequence

from hardware.driver import DriverError
from hardware.transport import Transport

PING, READ, WRITE, SYNC_READ, SYNC_WRITE = 0x01, 0x02, 0x03, 0x82, 0x83
BROADCAST_ID = 0xFE


class BusError(DriverError):
    """A servo that did not answer as it should; ``kind`` says how."""

    def __init__(self, servo_id: int, what: str, kind: str) -> None:
        super().__init__(f"servo {servo_id}: {what}")
        self.servo_id = servo_id
        self.kind = kind
        """"timeout", "checksum", "wrong_id", "status" or "malformed"."""


class FrameError(ValueError):
    """A frame whose check (checksum or CRC) does not match its bytes."""


@dataclasses.dataclass(frozen=True)
class Register:
    """A control-table entry: little-endian integer of ``size`` bytes at ``address``."""

    name: str
    address: int
    size: int
    signed: bool = False

    def encode(self, value: int) -> bytes:
        try:
            return int(value).to_bytes(self.size, "little", signed=self.signed)
        except OverflowError as exc:
            raise ValueError(f"{self.name}: {value} does not fit in {self.size} bytes") from exc

    def decode(self, data: bytes) -> int:
        return int.from_bytes(data, "little", signed=self.signed)


@dataclasses.dataclass(frozen=True)
class ControlTable:
    """The registers the arm drivers use, for one servo model."""

    model: str
    model_number: int
    """What the model-number register of this servo reads."""
    resolution: int
    """Encoder ticks per turn."""
    model_register: Register
    torque_enable: Register
    goal_position: Register
    present_position: Register


@dataclasses.dataclass(frozen=True)
class Packet:
    servo_id: int
    code: int
    """The instruction (host to servo) or the status code/error byte (servo to host)."""
    params: bytes


class Framing(abc.ABC):
    """One protocol's packet format (pure functions; the emulators use them too)."""

    header: bytes
    prefix: int
    """Bytes needed (header included) to know a frame's total length."""

    @abc.abstractmethod
    def frame_length(self, prefix: bytes) -> int | None:
        """Total bytes of the frame starting with ``prefix``; None if it cannot be a frame."""

    @abc.abstractmethod
    def encode(self, servo_id: int, code: int, params: bytes) -> bytes: ...

    @abc.abstractmethod
    def decode(self, frame: bytes) -> Packet:
        """The packet in ``frame``; :class:`FrameError` if its check does not match."""

    def extract(self, buf: bytearray) -> bytes | None:
        """Remove and return the first whole frame of ``buf``, dropping garbage before it."""
        while True:
            start = buf.find(self.header)
            if start < 0:
                del buf[: max(0, len(buf) - len(self.header) + 1)]
                return None
            del buf[:start]
            if len(buf) < self.prefix:
                return None
            total = self.frame_length(bytes(buf[: self.prefix]))
            if total is None:
                del buf[:1]
                continue
            if len(buf) < total:
                return None
            frame = bytes(buf[:total])
            del buf[:total]
            return frame

    def missing(self, buf: bytearray) -> int:
        """How many bytes to read next without reading past the end of the frame."""
        if len(buf) < self.prefix:
            aligned = buf[: len(self.header)] == self.header[: len(buf)]
            return self.prefix - len(buf) if aligned else 1
        total = self.frame_length(bytes(buf[: self.prefix]))
        return 1 if total is None else max(total - len(buf), 1)


class ServoBus(abc.ABC):
    """Ping, read, write, sync read and sync write over ``transport``; replies checked."""

    framing: Framing

    def __init__(self, transport: Transport, table: ControlTable, *, timeout: float = 0.05):
        self.transport = transport
        self.table = table
        self.timeout = timeout
        """Seconds to wait for each reply before calling the servo silent."""
        self.settle = 2 * timeout
        """After a failed exchange, the line must be quiet this long before the next request,
        so a late reply is never taken for the answer to a new one."""
        self._dirty = False

    # -- protocol specifics ---------------------------------------------------------------------

    @abc.abstractmethod
    def _read_params(self, register: Register, ids: Iterable[int] = ()) -> bytes:
        """Parameters of a read (or, with ``ids``, a sync read) of ``register``."""

    @abc.abstractmethod
    def _write_params(self, register: Register, data: bytes) -> bytes: ...

    @abc.abstractmethod
    def _sync_write_params(self, register: Register, values: Mapping[int, int]) -> bytes: ...

    @abc.abstractmethod
    def _status(self, packet: Packet) -> tuple[int, bytes]:
        """``(error, params)`` of a status packet; raise ValueError if it is not one."""

    @abc.abstractmethod
    def describe_error(self, error: int) -> str: ...

    # -- operations -----------------------------------------------------------------------------

    def ping(self, servo_id: int) -> None:
        """Returns when ``servo_id`` answers; :class:`BusError` otherwise."""
        self._send(servo_id, PING, b"")
        self._receive(servo_id)

    def read(self, servo_id: int, register: Register) -> int:
        self._send(servo_id, READ, self._read_params(register))
        return register.decode(self._receive(servo_id, register.size))

    def write(self, servo_id: int, register: Register, value: int) -> None:
        self._send(servo_id, WRITE, self._write_params(register, register.encode(value)))
        self._receive(servo_id)

    def sync_read(self, ids: Iterable[int], register: Register) -> dict[int, int]:
        """``register`` of every servo in ``ids`` with one request; each servo answers in turn."""
        ids = list(ids)
        self._send(BROADCAST_ID, SYNC_READ, self._read_params(register, ids))
        return {
            i: register.decode(self._receive(i, register.size, later=ids[k + 1 :]))
            for k, i in enumerate(ids)
        }

    def sync_write(self, register: Register, values: Mapping[int, int]) -> None:
        """Write ``values`` (id -> value) in one broadcast packet (servos do not answer)."""
        self._send(BROADCAST_ID, SYNC_WRITE, self._sync_write_params(register, values))

    def set_torque(self, ids: Iterable[int], enabled: bool) -> None:
        self.sync_write(self.table.torque_enable, {i: int(enabled) for i in ids})

    # -- request and reply ----------------------------------------------------------------------

    def _send(self, servo_id: int, instruction: int, params: bytes) -> None:
        wait = self.settle if self._dirty else 0.0
        for _ in range(1000):  # drop what a late or cut reply left behind
            if not self.transport.read(4096, wait):
                break
        self._dirty = False
        self.transport.write(self.framing.encode(servo_id, instruction, params))

    def _receive(self, servo_id: int, size: int | None = None, later: Sequence[int] = ()) -> bytes:
        """The params of ``servo_id``'s status reply (``size`` bytes when given), checked.

        ``later``: servos due to answer after this one (a sync read): a reply from one of them
        means this servo stayed silent.
        """
        try:
            return self._receive_checked(servo_id, size, later)
        except BusError:
            self._dirty = True
            raise

    def _receive_checked(self, servo_id: int, size: int | None, later: Sequence[int]) -> bytes:
        framing, buf = self.framing, bytearray()
        deadline = time.monotonic() + self.timeout
        while (frame := framing.extract(buf)) is None:
            remaining = deadline - time.monotonic()
            chunk = self.transport.read(framing.missing(buf), remaining) if remaining > 0 else b""
            if not chunk:
                ms = self.timeout * 1e3
                if buf:
                    raise BusError(servo_id, f"reply cut short after {len(buf)} bytes", "timeout")
                raise BusError(servo_id, f"no reply within {ms:.0f} ms (silent servo)", "timeout")
            buf += chunk
        try:
            packet = framing.decode(frame)
            error, params = self._status(packet)
        except FrameError as exc:
            raise BusError(servo_id, f"corrupt reply ({exc}); value discarded", "checksum") from exc
        except ValueError as exc:
            raise BusError(servo_id, f"malformed reply ({exc})", "malformed") from exc
        if packet.servo_id in later:
            what = f"no reply (silent servo): servo {packet.servo_id} answered in its turn"
            raise BusError(servo_id, what, "timeout")
        if packet.servo_id != servo_id:
            raise BusError(servo_id, f"reply came from servo {packet.servo_id}", "wrong_id")
        if error:
            raise BusError(servo_id, f"status error {self.describe_error(error)}", "status")
        if size is not None and len(params) != size:
            what = f"reply has {len(params)} data bytes, expected {size}"
            raise BusError(servo_id, what, "malformed")
        return params
