"""Test equipment for the control daemon, used by the tests and by ``scripts/bench_control.py``;
nothing here is imported by the daemon itself:

- :mod:`~hardware.testing.fault_proxy`: a fault proxy for the policy link (delay, drop, cut,
  flip, poison);
- :mod:`~hardware.testing.fault_switch`: driver faults switched on and off while a daemon runs;
- :mod:`~hardware.testing.policy_server`: a fast, controllable fake policy server;
- :mod:`~hardware.testing.processes`: policy servers and daemons as subprocesses;
- :mod:`~hardware.testing.campaign`, :mod:`~hardware.testing.director` and
  :mod:`~hardware.testing.scorecard`: the fault-injection campaign, the thread that injects its
  faults, and its scorecard (``python -m hardware.testing.campaign``).
"""
