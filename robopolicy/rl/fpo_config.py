"""FPO's configuration: every field of a run (the algorithm and the sources of its defaults are
:mod:`robopolicy.rl.fpo`)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from robopolicy.cadence import RESUMABLE, CadenceConfig
from robopolicy.config import FLAT
from robopolicy.rl.value import ValueConfig
from robopolicy.sampling.samplers import sampler_names


@dataclasses.dataclass
class FPOConfig:
    """Everything an FPO run needs besides the task and the flow checkpoint
    (:mod:`robopolicy.rl.fpo`)."""

    # -- budget and collection ---------------------------------------------------------------
    total_env_steps: int = 200_000
    """Environment steps to train for (counted as executed; the last iteration may pass it)."""
    num_envs: int = 32
    """N: environments collecting in parallel."""
    n_steps: int = 20
    """T: environment decisions (action chunks) per env per iteration (N·T·Ta env steps per
    iteration at most); not the integration ``steps`` of one decision."""
    seed: int = 0
    """Seeds the exploration noise, the (eps, t) pairs, minibatch order and training episodes."""
    device: str = "cpu"
    """Torch device of the networks and the update."""
    torch_threads: int = 1
    """Intra-op threads during the run (small MLPs are fastest on one)."""
    sampler: Literal["euler", "midpoint"] | None = None
    """ODE integrator while collecting, ``euler`` or ``midpoint`` (None: the policy's)."""
    steps: int | None = None
    """k, integration steps per sample while collecting (None: the policy's ``steps``)."""
    # -- the FPO ratio -------------------------------------------------------------------------
    n_samples: int = 8
    """S: (eps, t) pairs per decision (the reference's ``n_samples_per_action``; FPO++: 8 for
    fine-tuning, 16 from scratch)."""
    ratio: Literal["per_sample", "per_action"] = "per_sample"
    """``per_sample``: one ratio per (eps, t) pair, clipped on its own (FPO++); ``per_action``:
    average the S losses, then one ratio per decision (FPO)."""
    loss_reduction: Literal["sum", "mean"] = "sum"
    """Each pair's loss over the chunk's Tp·Da numbers: ``sum`` (FPO++'s chunk-level ratio;
    the ELBO's scale) or ``mean`` (the policy hook's)."""
    cfm_loss_clamp: float | None = 50.0
    """Clamp each pair's loss to at most this before taking differences (None: no clamp)."""
    log_ratio_clamp: float | None = 3.0
    """Clamp ``L_old − L_new`` to ±this before exponentiating (None: no clamp)."""
    trust_region: Literal["ppo", "aspo"] = "ppo"
    """``ppo``: the clipped surrogate; ``aspo``: PPO for positive advantages, SPO for negative
    ones (FPO++; meant for training from scratch)."""
    clip_coef: float = 0.2
    """ε of the ratio clip and of SPO's penalty (reference: 0.05; FPO++ swept 0.01 to 0.1;
    0.2 tuned on arm-push, see :mod:`robopolicy.rl.fpo`)."""
    # -- PPO -----------------------------------------------------------------------------------
    learning_rate: float = 1e-4
    """Adam learning rate of the policy, constant (reference: 3e-4; FPO++ fine-tuning: 1e-5)."""
    value_learning_rate: float = 1e-3
    """Adam learning rate of the critic, constant (FPO++ fine-tuning: 1e-4; DPPO: 1e-3)."""
    gamma: float = 0.99
    """Discount per environment step."""
    gae_lambda: float = 0.95
    """GAE λ per environment step."""
    update_epochs: int = 4
    """Passes over the batch per iteration (reference: 16; FPO++: 5 to 32)."""
    num_minibatches: int = 4
    """Minibatches per pass (of M / num_minibatches decisions each; FPO++: 4)."""
    value_coef: float = 0.25
    """Weight of the value loss (reference: 0.25); it only matters through ``max_grad_norm``."""
    max_grad_norm: float | None = 1.0
    """Clip the gradient norm of the policy and of the critic, each on its own (None: never)."""
    target_kl: float | None = None
    """Stop the iteration's update once a minibatch's proxy KL exceeds this (None: never)."""
    norm_adv: bool = True
    """Normalize advantages (mean 0, std 1) over the iteration's batch."""
    reward_scaling: bool = True
    """Divide rewards by the running std of the discounted return, then clip them."""
    reward_clip: float = 10.0
    """Clip scaled rewards to ±this."""
    critic_warmup_iterations: int = 2
    """First iterations that train only the critic (the policy is kept as cloned)."""
    value: ValueConfig = dataclasses.field(default_factory=ValueConfig)
    """The critic network."""
    # -- evaluation, checkpoints ---------------------------------------------------------------
    cadence: CadenceConfig = dataclasses.field(
        default_factory=lambda: CadenceConfig(eval_episodes=50, eval_envs=10), metadata=FLAT
    )
    """When to evaluate and checkpoint, ``*_every`` counting iterations (spelled flat:
    ``eval_every=0``)."""
    eval_sampler: Literal["euler", "midpoint"] | None = None
    """ODE integrator when evaluating (None: the policy's)."""
    eval_steps: int | None = None
    """Integration steps when evaluating (None: the policy's)."""
    eval_stochastic: bool = True
    """Also evaluate with random initial noise (``stochastic_*`` figures) besides zero noise."""

    def __post_init__(self) -> None:
        positive = ("total_env_steps", "num_envs", "n_steps", "update_epochs", "num_minibatches")
        for name in (*positive, "torch_threads", "n_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("critic_warmup_iterations", "seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.num_minibatches > self.num_envs * self.n_steps:
            raise ValueError("num_minibatches exceeds the decisions per iteration")
        choices = {
            "ratio": ("per_sample", "per_action"),
            "loss_reduction": ("sum", "mean"),
            "trust_region": ("ppo", "aspo"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"{name} must be one of {list(allowed)}, got {getattr(self, name)!r}"
                )
        for name in ("sampler", "eval_sampler"):
            if getattr(self, name) not in (None, *sampler_names("flow")):
                raise ValueError(f"{name} must be None or one of {sampler_names('flow')}")
        for name in ("steps", "eval_steps"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {getattr(self, name)}")
        if not (0 <= self.gamma <= 1 and 0 <= self.gae_lambda <= 1):
            raise ValueError(
                f"gamma and gae_lambda must be in [0, 1]: {self.gamma}, {self.gae_lambda}"
            )
        for name in ("learning_rate", "value_learning_rate", "clip_coef", "value_coef"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not self.reward_clip > 0:
            raise ValueError(f"reward_clip must be positive, got {self.reward_clip}")
        for name in ("cfm_loss_clamp", "log_ratio_clamp", "max_grad_norm", "target_kl"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive or None, got {getattr(self, name)}")


RESUMABLE_CHANGES = ("total_env_steps", *RESUMABLE)
"""Config fields a resumed run may change (extending the budget, say)."""
