"""Test equipment for the control daemon and the recorder, used by the tests and by
``scripts/bench_control.py``; the daemon itself imports nothing here, except the fault channel
when a test turns it on (``ROBOPOLICY_TESTING_FAULT_CHANNEL=1``):

- :mod:`~hardware.testing.fault_proxy`: a fault proxy for the policy link (delay, drop, cut,
  flip, poison);
- :mod:`~hardware.testing.fault_switch`: driver faults switched on and off while a daemon runs;
- :mod:`~hardware.testing.fault_channel`: that switch, and the daemon's progress, served on
  loopback from inside a ``robopolicy control`` process;
- :mod:`~hardware.testing.policy_server`: a fast, controllable fake policy server;
- :mod:`~hardware.testing.processes`: policy servers and daemons as subprocesses;
- :mod:`~hardware.testing.campaign`, :mod:`~hardware.testing.director` and
  :mod:`~hardware.testing.scorecard`: the fault-injection campaign, the director that injects
  its faults, and its scorecard (``python -m hardware.testing.campaign``);
- :mod:`~hardware.testing.recorded_episodes` and :mod:`~hardware.testing.recorder_crash`:
  deterministic recorded episodes and the recorder's SIGKILL campaign
  (``python -m hardware.testing.recorder_crash``).
"""
