"""A bus of emulated Feetech STS servos (SCS/STS packets, checksums, little-endian values)."""

from __future__ import annotations

from hardware.buses.feetech import FRAMING, STS3215
from hardware.emulators.base import ServoEmulator


class FeetechEmulator(ServoEmulator):
    """Feetech servos (default STS3215) answering on a pseudo-terminal."""

    framing = FRAMING
    field_width = 1
    default_table = STS3215

    def status(self, servo_id: int, error: int, params: bytes) -> bytes:
        return self.framing.encode(servo_id, error, params)

    def ping_params(self, servo_id: int) -> bytes:
        return b""
