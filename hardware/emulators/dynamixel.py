"""A bus of emulated Dynamixel X servos (Protocol 2.0: CRC-16, byte stuffing, status 0x55)."""

from __future__ import annotations

from hardware.buses.dynamixel import FRAMING, MODELS, STATUS
from hardware.emulators.base import ServoEmulator


class DynamixelEmulator(ServoEmulator):
    """Dynamixel servos (default XL330-M288) answering on a pseudo-terminal."""

    framing = FRAMING
    field_width = 2
    default_table = MODELS["xl330-m288"]
    firmware = 52

    def status(self, servo_id: int, error: int, params: bytes) -> bytes:
        return self.framing.encode(servo_id, STATUS, bytes([error]) + params)

    def ping_params(self, servo_id: int) -> bytes:
        return self.table.model_number.to_bytes(2, "little") + bytes([self.firmware])
