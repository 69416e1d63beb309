"""Feetech SCS/STS serial-bus servos (the STS3215 of SO-100/SO-101 arms).

Packet (both directions)::

    0xFF 0xFF | id | length | instruction (or status error) | params... | checksum

``length`` counts the params plus 2 (the instruction/error byte and the checksum); the checksum
is the low byte of the bitwise NOT of ``id + length + instruction + params``. Multi-byte values
of the STS series are little-endian. A sync read (0x82) carries ``address, size, ids...`` and
each addressed servo answers with its own status packet, in order; a sync write (0x83) carries
``address, size`` then ``id, data...`` per servo and gets no answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from hardware.buses.base import (
    ControlTable,
    FrameError,
    Framing,
    Packet,
    Register,
    ServoBus,
)
from hardware.transport import Transport

STS3215 = ControlTable(
    model="sts3215",
    model_number=777,
    resolution=4096,
    model_register=Register("Model_Number", 3, 2),
    torque_enable=Register("Torque_Enable", 40, 1),
    goal_position=Register("Goal_Position", 42, 2),
    present_position=Register("Present_Position", 56, 2),
)
MODELS = {"sts3215": STS3215}
"""Control tables by model name (addresses from the STS series memory table)."""

_ERROR_BITS = {
    0: "input voltage",
    1: "angle sensor",
    2: "overheat",
    3: "overcurrent",
    5: "overload",
}


def checksum(body: bytes) -> int:
    """``~(id + length + instruction + params) & 0xFF``."""
    return ~sum(body) & 0xFF


class FeetechFraming(Framing):
    header = b"\xff\xff"
    prefix = 4

    def frame_length(self, prefix: bytes) -> int | None:
        length = prefix[3]
        return None if length < 2 or prefix[2] == 0xFF else 4 + length

    def encode(self, servo_id: int, code: int, params: bytes) -> bytes:
        if len(params) > 250:
            raise ValueError(f"{len(params)} parameter bytes do not fit one Feetech packet")
        body = bytes([servo_id, len(params) + 2, code]) + params
        return self.header + body + bytes([checksum(body)])

    def decode(self, frame: bytes) -> Packet:
        body, got = frame[2:-1], frame[-1]
        expected = checksum(body)
        if got != expected:
            raise FrameError(f"checksum 0x{got:02x}, expected 0x{expected:02x}")
        return Packet(servo_id=body[0], code=body[2], params=bytes(body[3:]))


FRAMING = FeetechFraming()


class FeetechBus(ServoBus):
    """A Feetech bus; ``table`` picks the servo model (default STS3215)."""

    framing = FRAMING

    def __init__(
        self, transport: Transport, table: ControlTable = STS3215, *, timeout: float = 0.05
    ) -> None:
        super().__init__(transport, table, timeout=timeout)

    def _read_params(self, register: Register, ids: Iterable[int] = ()) -> bytes:
        return bytes([register.address, register.size, *ids])

    def _write_params(self, register: Register, data: bytes) -> bytes:
        return bytes([register.address]) + data

    def _sync_write_params(self, register: Register, values: Mapping[int, int]) -> bytes:
        out = bytearray([register.address, register.size])
        for servo_id, value in values.items():
            out += bytes([servo_id]) + register.encode(value)
        return bytes(out)

    def _status(self, packet: Packet) -> tuple[int, bytes]:
        return packet.code, packet.params

    def describe_error(self, error: int) -> str:
        names = [name for bit, name in _ERROR_BITS.items() if error & (1 << bit)]
        return f"0x{error:02x} ({', '.join(names) or 'unknown'})"
