"""DSRL's configuration: every field of a run (the algorithm is :mod:`robopolicy.rl.dsrl`)."""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from robopolicy.cadence import RESUMABLE, CadenceConfig
from robopolicy.config import FLAT
from robopolicy.models.mlp import ACTIVATIONS
from robopolicy.policies.steered import LatentActorConfig

ARM_PUSH: tuple[str, ...] = (
    "num_envs=8",
    "warmup_decisions=800",
    "utd_ratio=2",
    "batch_size=128",
    "actor_lr=1e-3",
    "critic_lr=1e-3",
    "init_alpha=0.01",
    "reward_scale=10",
    "tau=0.02",
    "gamma=0.99",
    "actor.hidden_dims=[64,64,64]",
    "critic_hidden_dims=[64,64,64]",
    "log_every=2000",
)
"""DSRL's settings for arm-push at the quickstart's size (8 envs, a 64-wide actor and critics,
rewards scaled by 10), as ``key=value`` overrides: the quickstart's fine-tuning stage,
``examples/2_finetune_policy.py`` and the tests run these, adding their budget and cadence."""


@dataclasses.dataclass
class DSRLConfig:
    """Everything a DSRL run needs besides the task and the base checkpoint
    (:mod:`robopolicy.rl.dsrl` for the defaults' sources)."""

    # -- budget and collection ---------------------------------------------------------------
    total_env_steps: int = 1_000_000
    """Environment steps to train for, warm-up included (the last iteration may pass it)."""
    num_envs: int = 4
    """N: environments collecting in parallel (reference: 4)."""
    decisions_per_iteration: int = 1
    """T: decisions per env between two update phases (reference: 1)."""
    seed: int = 0
    """Seeds the actor, the critics, every latent and minibatch draw, and the training
    episodes."""
    device: str = "cpu"
    """Torch device of the networks and the base policy."""
    torch_threads: int = 1
    """Intra-op threads during the run (small MLPs are fastest on one)."""
    # -- the base policy and the latent ------------------------------------------------------
    steps: int | None = 10
    """k, the base's denoising steps per sample, of its deterministic sampler (DDIM eta 0, or
    Euler/midpoint ODE steps); None: the base's own ``steps`` (100 DDIM steps for a default
    diffusion policy)."""
    actor: LatentActorConfig = dataclasses.field(default_factory=LatentActorConfig)
    """The latent actor (widths, activation, LayerNorm) and the noise bound b."""
    # -- critics -----------------------------------------------------------------------------
    critic_hidden_dims: tuple[int, ...] = (128, 128, 128)
    """Hidden widths of every critic."""
    critic_activation: str = "tanh"
    """Hidden activation of the critics (reference: tanh)."""
    critic_layer_norm: bool = True
    """LayerNorm after each hidden linear layer of the critics (reference: on)."""
    num_critics: int = 2
    """E: Q-networks in the ensemble."""
    critic_combine: Literal["min", "mean"] = "min"
    """How the ensemble's values combine in the target and the actor's loss."""
    # -- SAC ------------------------------------------------------------------------------------
    actor_lr: float = 3e-4
    """Adam learning rate of the actor."""
    critic_lr: float = 3e-4
    """Adam learning rate of the critics."""
    alpha_lr: float = 3e-4
    """Adam learning rate of log α."""
    init_alpha: float = 1.0
    """Initial entropy temperature α."""
    target_entropy: float = 0.0
    """H̄: the entropy α steers towards, in nats of ``tanh(.)`` over the whole latent
    (reference: 0; Stable-Baselines3's own default would be −L)."""
    reward_scale: float = 1.0
    """Every environment reward becomes ``reward_scale * (r - reward_offset)`` before anything
    else (SAC's entropy bonus is measured against the rewards' scale)."""
    reward_offset: float = 0.0
    """See ``reward_scale``. The reference subtracts 1 from Robomimic's 0/1 success reward
    (every step before success costs 1); 0 on Gym."""
    gamma: float = 0.9975
    """Discount per environment step (the reference's 0.99 per chunk of 4 steps)."""
    tau: float = 0.005
    """Polyak factor of the target critics, after every update."""
    batch_size: int = 256
    """B: decisions per SAC update."""
    utd_ratio: float = 5.0
    """Updates per decision collected (U = round(utd_ratio · N · T) per iteration)."""
    buffer_size: int = 1_000_000
    """Decisions the replay buffer keeps (the oldest are overwritten)."""
    warmup_decisions: int = 6000
    """Decisions, over all envs, that act with Gaussian latents before SAC acts and learns."""
    # -- logging, evaluation, checkpoints -------------------------------------------------------
    log_every: int = 5000
    """Log training scalars every this many env steps."""
    cadence: CadenceConfig = dataclasses.field(
        default_factory=lambda: CadenceConfig(
            eval_every=50_000, eval_episodes=50, eval_envs=10, checkpoint_every=100_000
        ),
        metadata=FLAT,
    )
    """When to evaluate and checkpoint, ``*_every`` counting env steps (spelled flat:
    ``eval_every=0``); checkpoints are named by env steps."""

    def __post_init__(self) -> None:
        self.critic_hidden_dims = tuple(int(d) for d in self.critic_hidden_dims)
        if not isinstance(self.actor, LatentActorConfig):
            raise ValueError(f"actor must be a LatentActorConfig, not {type(self.actor).__name__}")
        positive = ("total_env_steps", "num_envs", "decisions_per_iteration", "torch_threads")
        for name in (*positive, "num_critics", "batch_size", "buffer_size", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_decisions", "seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1 or None, got {self.steps}")
        if not self.critic_hidden_dims or min(self.critic_hidden_dims) < 1:
            raise ValueError(f"critic_hidden_dims must be positive, got {self.critic_hidden_dims}")
        if self.critic_activation not in ACTIVATIONS:
            raise ValueError(f"critic_activation must be one of {sorted(ACTIVATIONS)}")
        if self.critic_combine not in ("min", "mean"):
            raise ValueError(f"critic_combine must be min or mean, got {self.critic_combine!r}")
        for name in ("actor_lr", "critic_lr", "alpha_lr", "init_alpha"):
            if not (getattr(self, name) > 0 and math.isfinite(getattr(self, name))):
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not (0 <= self.gamma <= 1 and 0 < self.tau <= 1):
            raise ValueError(f"need 0 <= gamma <= 1 and 0 < tau <= 1: {self.gamma}, {self.tau}")
        if not (self.utd_ratio >= 0 and math.isfinite(self.utd_ratio)):
            raise ValueError(f"utd_ratio must be >= 0, got {self.utd_ratio}")
        if not (0 < self.reward_scale < math.inf and math.isfinite(self.reward_offset)):
            raise ValueError("reward_scale must be positive and reward_offset finite")
        if not math.isfinite(self.target_entropy):
            raise ValueError(f"target_entropy must be finite, got {self.target_entropy}")
        if self.buffer_size < self.batch_size:
            raise ValueError("buffer_size must hold at least one batch")


RESUMABLE_CHANGES = ("total_env_steps", "log_every", *RESUMABLE)
"""Config fields a resumed run may change (extending the budget, say)."""
