"""Reinforcement learning on simulated tasks: the shared on-policy core and the algorithms.

- :mod:`robopolicy.rl.rollout`: the collection interface (``RolloutCollector``,
  ``RolloutBatch``); :mod:`sim.rollout` implements it over the simulated tasks.
- :mod:`robopolicy.rl.advantages`: GAE over environment steps, reward scaling, statistics.
- :mod:`robopolicy.rl.value`: the critic. :mod:`robopolicy.rl.offpolicy`: replay buffer and
  Q-ensemble. :mod:`robopolicy.rl.bc`: behaviour cloning of the Gaussian baseline.
- :mod:`robopolicy.rl.session`: what every run does around its algorithm (resume, cadence,
  curves); :mod:`robopolicy.rl.runs`: run directory, checkpoints.
- one readable file per algorithm, its config beside it in ``<name>_config.py`` (evaluation and
  checkpoint cadence shared: :mod:`robopolicy.cadence`), registered for ``robopolicy finetune
  --algo NAME`` (:mod:`robopolicy.rl.registry`):

  - :mod:`robopolicy.rl.ppo`: Gaussian PPO, the baseline;
  - :mod:`robopolicy.rl.dppo`: DPPO, PPO through the denoising chain of a diffusion policy;
  - :mod:`robopolicy.rl.fpo`: FPO/FPO++, flow-matching policy gradients for a flow policy;
  - :mod:`robopolicy.rl.dsrl`: DSRL, SAC in the latent noise of a frozen diffusion or flow
    policy.
"""
