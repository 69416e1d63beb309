"""Servo-bus emulators on pseudo-terminals: the real bus drivers exchange real bytes with them.

with FeetechEmulator(ids=range(1, 7)) as emulator:
    arm = FeetechArm(emulator.path, calibration=cal)   # opens the pty like a serial port
"""

from hardware.emulators.base import ServoEmulator
from hardware.emulators.dynamixel import DynamixelEmulator
from hardware.emulators.feetech import FeetechEmulator

__all__ = ["DynamixelEmulator", "FeetechEmulator", "ServoEmulator"]
