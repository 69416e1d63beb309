"""The hardware layer: drivers behind one small interface, and the safety filter.

- :mod:`hardware.driver`: ``Driver`` (``spec``, ``connect``/``disconnect``, ``read_state``,
  ``send_action``), ``JointSpec``, ``ArmState``, and the registry (``make_driver("sim")``,
  ``"feetech"``, ``"dynamixel"``, ``"ur"``, ``"xarm"``; each imported on demand);
- :mod:`hardware.safety`: ``filter_command`` and ``check_chunk`` with ``SafetyLimits``;
- :mod:`hardware.clock`: the injectable ``Clock`` (real or virtual);
- :mod:`hardware.sim_arm`, :mod:`hardware.faults`, :mod:`hardware.monitor`: the simulated arm,
  seeded fault injection and the invariant monitor used to test everything above;
- :mod:`hardware.servo_arm`, :mod:`hardware.buses`, :mod:`hardware.emulators`: serial servo
  arms (Feetech, Dynamixel), their protocols and pty emulators of them.

Nothing here is imported by ``robopolicy``; this package may import ``robopolicy`` and ``sim``.
"""

from hardware.clock import Clock, SystemClock, VirtualClock
from hardware.driver import (
    ArmState,
    Driver,
    DriverError,
    EStopError,
    JointSpec,
    driver_class,
    driver_names,
    make_driver,
    register_driver,
)
from hardware.limits import SafetyLimits

__all__ = [
    "ArmState",
    "Clock",
    "Driver",
    "DriverError",
    "EStopError",
    "JointSpec",
    "SafetyLimits",
    "SystemClock",
    "VirtualClock",
    "driver_class",
    "driver_names",
    "make_driver",
    "register_driver",
]
