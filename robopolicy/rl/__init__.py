"""Reinforcement learning on simulated tasks: the shared on-policy core and the algorithms.

- :mod:`robopolicy.rl.rollout`: the collection interface (``RolloutCollector``,
  ``RolloutBatch``); :mod:`sim.rollout` implements it over the simulated tasks.
- :mod:`robopolicy.rl.advantages`: GAE over environment steps, reward scaling, statistics.
- :mod:`robopolicy.rl.value`: the critic. :mod:`robopolicy.rl.runs`: run directory, checkpoints.
- one readable file per algorithm, registered for ``robopolicy finetune --algo NAME``
  (:mod:`robopolicy.rl.registry`): :mod:`robopolicy.rl.ppo` (Gaussian PPO baseline).
"""
