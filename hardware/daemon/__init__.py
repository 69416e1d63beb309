"""The real-robot control daemon (``robopolicy control``): a fixed-rate loop between a policy
server and an arm that never sends an unsafe command (``docs/RELIABILITY.md`` R1–R6).

- :mod:`~hardware.daemon.config`: ``ControlConfig``, every knob documented and validated;
- :mod:`~hardware.daemon.loop`: the loop on an injected clock — read, the safety filter, write,
  overruns and the latched stop;
- :mod:`~hardware.daemon.follower`: the policy's half of a tick — sensor age, overdue actions,
  interpolation and the watchdog (also the teleop session's intervention mode);
- :mod:`~hardware.daemon.status`: the loop's modes, per-tick flags and counters;
- :mod:`~hardware.daemon.chunks`: whole-chunk checks (reject, never clip); chunks, due times
  and the plan are :mod:`robopolicy.serve.chunks`;
- :mod:`~hardware.daemon.requester`: chunks fetched ahead of time in a background thread,
  with real-time chunking's prefix where the server inpaints;
- :mod:`~hardware.daemon.adapters`: the policy's observation and its actions (joint or ee);
- :mod:`~hardware.daemon.estop`: the e-stop latch file that survives restarts;
- :mod:`~hardware.daemon.exit`: the exit behaviour on every exit path;
- :mod:`~hardware.daemon.log`: every tick into an episode store;
- :mod:`~hardware.daemon.mirror`: the dry run (``SimArm`` behind a real driver's limits);
- :mod:`~hardware.daemon.replay`: a tick log replayed in simulation (R17);
- :mod:`~hardware.daemon.process`: real-time scheduling and process settings;
- :mod:`~hardware.daemon.daemon`: ``Daemon``, which puts them together.
"""

from hardware.daemon.config import ControlConfig
from hardware.daemon.daemon import Daemon, RunResult
from hardware.daemon.estop import EStopLatch, EStopLatched
from hardware.daemon.loop import ControlLoop
from hardware.daemon.status import Flag, LoopStats, Mode

__all__ = [
    "ControlConfig",
    "ControlLoop",
    "Daemon",
    "EStopLatch",
    "EStopLatched",
    "Flag",
    "LoopStats",
    "Mode",
    "RunResult",
]
