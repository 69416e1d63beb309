"""Gaussian PPO's configuration: every field of a run (the algorithm and the sources of its
defaults are :mod:`robopolicy.rl.ppo`)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from robopolicy.cadence import RESUMABLE, CadenceConfig
from robopolicy.config import FLAT
from robopolicy.policies.gaussian import GaussianPolicyConfig
from robopolicy.rl.value import ValueConfig


@dataclasses.dataclass
class PPOConfig:
    """Everything a Gaussian PPO run needs besides the task. Defaults: cleanrl's settings."""

    # -- budget and collection ---------------------------------------------------------------
    total_env_steps: int = 1_000_000
    """Environment steps to train for (counted as executed; the last iteration may pass it)."""
    num_envs: int = 8
    """N: environments collecting in parallel."""
    n_steps: int = 256
    """T: decisions per env per iteration (N·T·Ta env steps per iteration at most)."""
    seed: int = 0
    """Seeds the networks, the action noise, minibatch order and the training episodes."""
    device: str = "cpu"
    """Torch device of the networks and the update."""
    torch_threads: int = 1
    """Intra-op threads during the run (small MLPs are fastest on one)."""
    # -- the policy and critic ---------------------------------------------------------------
    policy: GaussianPolicyConfig = dataclasses.field(default_factory=GaussianPolicyConfig)
    """The Gaussian policy built when not starting from a checkpoint (its To/Tp/Ta, network and
    std); shapes and normalization come from the task or the BC data."""
    value: ValueConfig = dataclasses.field(default_factory=ValueConfig)
    """The critic network."""
    obs_normalization: Literal["auto", "running", "fixed"] = "auto"
    """``running``: mean/std of every state seen so far, updated after each iteration (needs
    ``mean_std`` mode); ``fixed``: keep the policy's normalizer (fitted on the BC data);
    ``auto``: running from scratch, fixed otherwise."""
    # -- behaviour-cloning initialization ----------------------------------------------------
    bc_data: str | None = None
    """Episode store to behaviour-clone a fresh policy on before RL (None: no BC)."""
    bc_epochs: int = 20
    """Epochs of the policy's BC loss over ``bc_data``."""
    bc_batch_size: int = 256
    """Windows per BC step."""
    bc_lr: float = 1e-3
    """Adam learning rate of BC."""
    # -- PPO -----------------------------------------------------------------------------------
    learning_rate: float = 3e-4
    """Adam learning rate of the policy."""
    value_learning_rate: float = 3e-4
    """Adam learning rate of the critic (DPPO: 1e-3)."""
    anneal_lr: bool = True
    """Anneal both learning rates linearly to 0 over ``anneal_steps``."""
    anneal_steps: int | None = None
    """Environment steps of the annealing (None: ``total_env_steps``); a larger value makes the
    run the beginning of a longer one, stopped early (``robopolicy medium``)."""
    gamma: float = 0.99
    """Discount per environment step."""
    gae_lambda: float = 0.95
    """GAE λ per environment step."""
    update_epochs: int = 10
    """Passes over the batch per iteration."""
    num_minibatches: int = 32
    """Minibatches per pass (of N·T / num_minibatches decisions each)."""
    clip_coef: float = 0.2
    """PPO ratio clip ε (DPPO's Gaussian fine-tuning: 0.01)."""
    clip_value: float | None = 0.2
    """Clip the value update to ±this around the collected values (None: unclipped loss)."""
    ent_coef: float = 0.0
    """Entropy bonus coefficient."""
    vf_coef: float = 0.5
    """Value loss coefficient."""
    max_grad_norm: float = 0.5
    """Clip the global gradient norm (policy and critic together) to this."""
    target_kl: float | None = None
    """Stop the iteration's update once a minibatch's approximate KL exceeds this (None: never)."""
    norm_adv: bool = True
    """Normalize advantages per minibatch."""
    reward_scaling: bool = True
    """Divide rewards by the running std of the discounted return, then clip them."""
    reward_clip: float = 10.0
    """Clip scaled rewards to ±this."""
    critic_warmup_iterations: int = 0
    """First iterations that train only the critic (DPPO fine-tuning: useful from BC)."""
    # -- evaluation, checkpoints ---------------------------------------------------------------
    cadence: CadenceConfig = dataclasses.field(default_factory=CadenceConfig, metadata=FLAT)
    """When to evaluate and checkpoint, ``*_every`` counting iterations (spelled flat:
    ``eval_every=0``)."""

    def __post_init__(self) -> None:
        if not isinstance(self.policy, GaussianPolicyConfig):
            raise ValueError(f"ppo trains a gaussian policy, not {type(self.policy).__name__}")
        if self.obs_normalization not in ("auto", "running", "fixed"):
            raise ValueError("obs_normalization must be auto, running or fixed")
        positive = ("total_env_steps", "num_envs", "n_steps", "update_epochs", "num_minibatches")
        for name in (*positive, "torch_threads", "bc_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("bc_epochs", "critic_warmup_iterations"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.num_minibatches > self.num_envs * self.n_steps:
            raise ValueError("num_minibatches exceeds the decisions per iteration")
        if not (0 <= self.gamma <= 1 and 0 <= self.gae_lambda <= 1):
            raise ValueError(
                f"gamma and gae_lambda must be in [0, 1]: {self.gamma}, {self.gae_lambda}"
            )
        for name in ("learning_rate", "value_learning_rate", "bc_lr", "clip_coef", "max_grad_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.reward_clip <= 0 or self.seed < 0:
            raise ValueError("reward_clip > 0 and seed >= 0 are required")
        if self.anneal_steps is not None and self.anneal_steps < 1:
            raise ValueError(f"anneal_steps must be >= 1 or None, got {self.anneal_steps}")
        if self.target_kl is not None and not self.target_kl > 0:
            raise ValueError(f"target_kl must be positive or None, got {self.target_kl}")
        if self.clip_value is not None and not self.clip_value > 0:
            raise ValueError(f"clip_value must be positive or None, got {self.clip_value}")


RESUMABLE_CHANGES = ("total_env_steps", "anneal_steps", *RESUMABLE)
"""Config fields a resumed run may change (extending the budget, say)."""
