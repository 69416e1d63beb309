"""The built-in tasks on robopolicy's own arm (``arm-push``, ``arm-pick-place``).

Registered in :mod:`sim.tasks.builtin`; the classes live here so that listing tasks never
imports MuJoCo.
"""
