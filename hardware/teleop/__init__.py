"""Teleop devices: how an operator drives an arm, each behind one small interface.

- :mod:`hardware.teleop.device`: ``TeleopDevice`` (``connect``/``disconnect``, ``read``),
  ``DeviceReading``, ``JointCommand``, ``EndEffectorCommand``, ``OperatorEvent`` and the
  registry (``make_device("keyboard")``, ``"gamepad"``, ``"spacemouse"``, ``"leader"``; each
  imported on demand, so listing them needs no SDK);
- :mod:`hardware.teleop.commander`: ``TeleopCommander``, the one path from a device to an arm:
  end-effector deltas through the arm's IK, then the safety filter;
- :mod:`hardware.teleop.with_events`: a motion device with another device's buttons;
- :mod:`hardware.teleop.session`: ``TeleopSession`` and ``TeleopConfig``, the recording loop
  behind ``robopolicy teleop`` (:mod:`hardware.teleop.commands`), showing its status on an
  ``OperatorView`` (:mod:`hardware.teleop.view`); :mod:`hardware.teleop.intervention` lets a
  policy drive while the operator takes over and hands back; :mod:`hardware.teleop.replay`
  replays a recorded episode in simulation. Import them from their modules (they load the
  recorder).

The gamepad needs pygame and the SpaceMouse hidapi (the ``teleop`` extra); the keyboard reads
the terminal and the leader arm the servo bus, with nothing more to install.
"""

from hardware.teleop.commander import TeleopCommander, TeleopStep
from hardware.teleop.device import (
    DeviceError,
    DeviceReading,
    EndEffectorCommand,
    JointCommand,
    OperatorEvent,
    TeleopDevice,
    device_class,
    device_names,
    make_device,
    register_device,
)
from hardware.teleop.ee_target import EndEffectorConfig, EndEffectorTarget
from hardware.teleop.with_events import WithEvents

__all__ = [
    "DeviceError",
    "DeviceReading",
    "EndEffectorCommand",
    "EndEffectorConfig",
    "EndEffectorTarget",
    "JointCommand",
    "OperatorEvent",
    "TeleopCommander",
    "TeleopDevice",
    "TeleopStep",
    "WithEvents",
    "device_class",
    "device_names",
    "make_device",
    "register_device",
]
