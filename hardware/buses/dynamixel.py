"""ROBOTIS Dynamixel Protocol 2.0 (X series: XL330, XL430 of Koch-style arms).

Packet::

    0xFF 0xFF 0xFD 0x00 | id | length (2, LE) | instruction | params... | CRC-16 (2, LE)

``length`` counts the instruction, the (stuffed) params and the CRC. Byte stuffing: wherever
``0xFF 0xFF 0xFD`` occurs from the instruction to the last param, a ``0xFD`` is inserted after
it, so the header cannot appear inside a packet; the receiver removes it. The CRC is CRC-16
with polynomial 0x8005 (initial value 0, no reflection) over every byte from the header to the
last param, as sent. Status packets use instruction 0x55 followed by an error byte. Addresses
and sizes are 2 bytes; a sync read carries ``address, size, ids...`` and each servo answers in
turn; a sync write carries ``address, size`` then ``id, data...`` and gets no answer.
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

STATUS = 0x55


def _x_series(model: str, number: int) -> ControlTable:
    return ControlTable(
        model=model,
        model_number=number,
        resolution=4096,
        model_register=Register("Model_Number", 0, 2),
        torque_enable=Register("Torque_Enable", 64, 1),
        goal_position=Register("Goal_Position", 116, 4, signed=True),
        present_position=Register("Present_Position", 132, 4, signed=True),
    )


MODELS = {
    "xl330-m077": _x_series("xl330-m077", 1190),
    "xl330-m288": _x_series("xl330-m288", 1200),
    "xl430-w250": _x_series("xl430-w250", 1060),
}
"""Control tables by model name (X-series control table, EEPROM and RAM areas)."""

_ERRORS = {
    1: "result fail",
    2: "instruction error",
    3: "CRC error",
    4: "data range error",
    5: "data length error",
    6: "data limit error",
    7: "access error",
}


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """CRC-16, polynomial 0x8005, initial 0, MSB first (the Protocol 2.0 check)."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[((crc >> 8) ^ byte) & 0xFF]
    return crc


def stuff(payload: bytes) -> bytes:
    """Insert 0xFD after every 0xFF 0xFF 0xFD."""
    out = bytearray()
    for byte in payload:
        out.append(byte)
        if byte == 0xFD and out[-3:] == b"\xff\xff\xfd":
            out.append(0xFD)
    return bytes(out)


def unstuff(payload: bytes) -> bytes:
    """Remove the 0xFD that follows every 0xFF 0xFF 0xFD."""
    out, i = bytearray(), 0
    while i < len(payload):
        out.append(payload[i])
        if out[-3:] == b"\xff\xff\xfd" and payload[i + 1 : i + 2] == b"\xfd":
            i += 1
        i += 1
    return bytes(out)


class DynamixelFraming(Framing):
    header = b"\xff\xff\xfd\x00"
    prefix = 7

    def frame_length(self, prefix: bytes) -> int | None:
        length = prefix[5] | prefix[6] << 8
        return None if length < 3 or prefix[4] == 0xFF else 7 + length

    def encode(self, servo_id: int, code: int, params: bytes) -> bytes:
        payload = stuff(bytes([code]) + params)
        head = self.header + bytes([servo_id]) + (len(payload) + 2).to_bytes(2, "little")
        body = head + payload
        return body + crc16(body).to_bytes(2, "little")

    def decode(self, frame: bytes) -> Packet:
        got, expected = int.from_bytes(frame[-2:], "little"), crc16(frame[:-2])
        if got != expected:
            raise FrameError(f"CRC 0x{got:04x}, expected 0x{expected:04x}")
        payload = unstuff(frame[7:-2])
        return Packet(servo_id=frame[4], code=payload[0], params=payload[1:])


FRAMING = DynamixelFraming()


class DynamixelBus(ServoBus):
    """A Protocol 2.0 bus; ``table`` picks the servo model (default XL330-M288)."""

    framing = FRAMING

    def __init__(
        self, transport: Transport, table: ControlTable | None = None, *, timeout: float = 0.05
    ) -> None:
        super().__init__(transport, table or MODELS["xl330-m288"], timeout=timeout)

    def _read_params(self, register: Register, ids: Iterable[int] = ()) -> bytes:
        return _u16(register.address) + _u16(register.size) + bytes(ids)

    def _write_params(self, register: Register, data: bytes) -> bytes:
        return _u16(register.address) + data

    def _sync_write_params(self, register: Register, values: Mapping[int, int]) -> bytes:
        out = bytearray(_u16(register.address) + _u16(register.size))
        for servo_id, value in values.items():
            out += bytes([servo_id]) + register.encode(value)
        return bytes(out)

    def _status(self, packet: Packet) -> tuple[int, bytes]:
        if packet.code != STATUS or not packet.params:
            raise ValueError(f"instruction 0x{packet.code:02x} where a status packet was due")
        return packet.params[0], packet.params[1:]

    def describe_error(self, error: int) -> str:
        text = _ERRORS.get(error & 0x7F, "no error" if not error & 0x7F else "unknown error")
        alert = ", hardware alert" if error & 0x80 else ""
        return f"0x{error:02x} ({text}{alert})"


def _u16(value: int) -> bytes:
    return value.to_bytes(2, "little")
