"""Motion from one device, operator buttons from another: a leader arm with a keyboard.

:class:`WithEvents` wraps a motion device and adds the events of a second device (its motion is
ignored), so a device without buttons — a leader arm — still has keep, discard, re-record and
take-over. Both are connected and disconnected together; the reading keeps the motion device's
time.
"""

from __future__ import annotations

from hardware.teleop.device import DeviceReading, TeleopDevice


class WithEvents(TeleopDevice):
    """``motion``'s readings with ``buttons``' events added after its own."""

    def __init__(self, motion: TeleopDevice, buttons: TeleopDevice) -> None:
        self.motion = motion
        self.buttons = buttons

    def _connect(self) -> None:
        self.motion.connect()
        try:
            self.buttons.connect()
        except BaseException:
            self.motion.disconnect()
            raise

    def _disconnect(self) -> None:
        try:
            self.buttons.disconnect()
        finally:
            self.motion.disconnect()

    def read(self) -> DeviceReading:
        reading = self.motion.read()
        extra = self.buttons.read().events
        return DeviceReading(reading.motion, reading.events + extra, reading.sensed_at)
