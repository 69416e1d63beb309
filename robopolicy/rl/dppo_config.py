"""DPPO's configuration: every field of a run (the algorithm is :mod:`robopolicy.rl.dppo`).

Defaults are DPPO's Hopper fine-tuning (``cfg/gym/finetune/hopper-v2/ft_ppo_diffusion_mlp.yaml``:
40 envs × 500 decisions × Ta 4 = 80k env steps per iteration, k = 20, K' = 10, γ 0.99 per decision,
λ 0.95, lr 1e-4 / 1e-3, 5 epochs of 50k-pair minibatches, ε 0.01 throughout, σ floors 0.1, KL
stop 1). Its robomimic settings differ in ``update_epochs=10 clip_ploss_coef_base=0.001
gamma=0.999 batch_size=7500 critic_warmup_iterations=2``; its DDIM variant (furniture) is
``sampler=ddim steps=K' finetune_steps=K' ddim_eta=1
min_sampling_denoising_std=0.04``.

**On arm-push** (:data:`ARM_PUSH`, ``tests/rl/test_dppo.py``: a policy cloned on imperfect
demonstrations, about 10% success, reward 1 on success only) those settings need far more than a CI
budget, and the cheaper ones tried were unreliable: with 20 to 32 envs per iteration, lr 1e-3 to
3e-3, K' = 5 of 10, a log-probability floor of 0.3 or sampling floors of 0.01 or 0.1, many seeds
lost the few successes within 15k steps and never found them again. The test's settings raised four
of five seeds within 80k steps (0.08 to 0.42, 0.28, 0.38, 0.44 and 0.03 over 200 episodes, seeds
0-4): 64 envs × 20 decisions per iteration (about six successes per batch at the start), two
critic-only iterations, lr 1e-3 with ε from 0.02 to 0.1 over 10 epochs of two minibatches (5 epochs
lost a seed too), and the furniture configs' sampling floor 0.04 (with 0.1 the policy came to rely
on noise that the evaluation removes: 0.32 success while training against 0.15 evaluated). Halving
the learning rate kept all five seeds but gained less (0.16 to 0.48).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from robopolicy.cadence import RESUMABLE, CadenceConfig
from robopolicy.config import FLAT
from robopolicy.rl.value import ValueConfig


@dataclasses.dataclass
class DPPOConfig:
    """Everything a DPPO run needs besides the task and the diffusion checkpoint.

    Defaults: DPPO's Hopper fine-tuning (module docstring)."""

    # -- budget and collection ---------------------------------------------------------------
    total_env_steps: int = 1_000_000
    """Environment steps to train for (counted as executed; the last iteration may pass it)."""
    num_envs: int = 40
    """N: environments collecting in parallel."""
    n_steps: int = 500
    """T: environment decisions (action chunks) per env per iteration, DPPO's ``n_steps``
    (N·T·Ta env steps at most); not the denoising ``steps`` of one decision."""
    reset_every_iteration: bool = False
    """Start every iteration with fresh episodes (DPPO's ``reset_at_iteration``: False for its
    gym tasks, True for robomimic); otherwise episodes run on across iterations."""
    seed: int = 0
    """Seeds the critic, the denoising noise, minibatch order and the training episodes."""
    device: str = "cpu"
    """Torch device of the networks and the update."""
    torch_threads: int = 1
    """Intra-op threads during the run (measured: one is as fast as two for these MLPs on a
    2-core machine whose other core steps the environments)."""
    # -- the denoising MDP ---------------------------------------------------------------------
    sampler: Literal["ddpm", "ddim"] = "ddpm"
    """``ddpm`` (DPPO's default) or ``ddim`` (its few-step variant, stochastic with ``ddim_eta``
    while training, eta 0 when evaluating)."""
    steps: int | None = None
    """k, denoising steps per sample (per decision's action chunk); None: the checkpoint's own
    ``steps`` (its K for DDPM, as in DPPO). Fewer than K runs the strided sampler (``K // k``
    apart). Not ``n_steps``, the decisions per env per iteration."""
    finetune_steps: int = 10
    """K', fine-tuned denoising steps: the last K' of the k steps are fine-tuned; a frozen copy
    runs the others (DPPO's ``ft_denoising_steps``)."""
    ddim_eta: float = 1.0
    """DDIM's eta while collecting (DPPO: 1); ignored by DDPM."""
    min_sampling_denoising_std: float = 0.1
    """Floor of every denoising step's sampling std while collecting (exploration)."""
    min_logprob_denoising_std: float = 0.1
    """Floor of the std in the log-probabilities (stability); > 0."""
    randn_clip_value: float | None = 3.0
    """Clip each denoising step's standard-normal draw to ±this (None: no clip)."""
    logprob_clip: tuple[float, float] = (-5.0, 2.0)
    """Clip each action element's log-density to [low, high] before averaging (DPPO)."""
    gamma_denoising: float = 0.99
    """Discount across denoising steps: fine-tuned step j's advantage is scaled by
    ``gamma_denoising^(K' - 1 - j)``."""
    # -- PPO -----------------------------------------------------------------------------------
    actor_lr: float = 1e-4
    """Adam learning rate of the fine-tuned policy (constant)."""
    critic_lr: float = 1e-3
    """Adam learning rate of the critic (constant)."""
    update_epochs: int = 5
    """Passes over the D·K' (decision, denoising step) pairs per iteration (robomimic: 10)."""
    batch_size: int = 50_000
    """(decision, denoising step) pairs per minibatch; ``D·K' // batch_size`` minibatches per
    epoch, the remainder skipped (as DPPO), at least one."""
    forward_batch_size: int = 8192
    """Pairs per forward/backward pass inside a minibatch (gradients accumulate; the result is
    the minibatch's gradient, only memory and cache use change)."""
    clip_ploss_coef: float = 0.01
    """PPO ratio clip ε of the last denoising step."""
    clip_ploss_coef_base: float = 0.01
    """ε of the first fine-tuned step (robomimic: 0.001)."""
    clip_ploss_coef_rate: float = 3.0
    """How fast ε grows over the fine-tuned steps (exponential interpolation rate)."""
    clip_vloss_coef: float | None = None
    """Clip the value update to ±this around the collected values (None: unclipped, DPPO)."""
    vf_coef: float = 0.5
    """Value loss coefficient."""
    norm_adv: bool = True
    """Normalize advantages per minibatch (before the denoising discount)."""
    max_grad_norm: float | None = None
    """Clip the policy's gradient norm to this (None: no clipping, DPPO's gym/robomimic)."""
    target_kl: float | None = 1.0
    """Stop the iteration's update after a minibatch whose approximate KL (over the averaged
    per-element log-probabilities) exceeds this; None: never."""
    critic_warmup_iterations: int = 0
    """First iterations that train only the critic (robomimic: 2)."""
    gamma: float = 0.99
    """Discount, per decision or per environment step (``discount``)."""
    gae_lambda: float = 0.95
    """GAE λ, per decision or per environment step."""
    discount: Literal["decision", "env_step"] = "decision"
    """``decision``: DPPO's GAE over decisions, the chunk's rewards summed undiscounted;
    ``env_step``: :mod:`robopolicy.rl.advantages`' GAE over environment steps."""
    reward_scaling: bool = True
    """Divide rewards by the running std of the discounted return, then clip them."""
    reward_clip: float = 10.0
    """Clip scaled rewards to ±this."""
    value: ValueConfig = dataclasses.field(
        default_factory=lambda: ValueConfig(hidden_dims=(256, 256, 256), activation="mish")
    )
    """The critic, an MLP on the policy's normalized observation (DPPO: 256-256-256, Mish)."""
    # -- evaluation, checkpoints ---------------------------------------------------------------
    cadence: CadenceConfig = dataclasses.field(default_factory=CadenceConfig, metadata=FLAT)
    """When to evaluate and checkpoint, ``*_every`` counting iterations (spelled flat:
    ``eval_every=0``)."""

    def __post_init__(self) -> None:
        self.logprob_clip = tuple(float(v) for v in self.logprob_clip)
        positive_ints = (
            "total_env_steps",
            "num_envs",
            "n_steps",
            "torch_threads",
            "finetune_steps",
            "update_epochs",
            "batch_size",
            "forward_batch_size",
        )
        for name in positive_ints:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("critic_warmup_iterations", "seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.sampler not in ("ddpm", "ddim"):
            raise ValueError(f"sampler must be ddpm or ddim, got {self.sampler!r}")
        if self.discount not in ("decision", "env_step"):
            raise ValueError(f"discount must be decision or env_step, got {self.discount!r}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1 or None, got {self.steps}")
        if not self.ddim_eta >= 0:
            raise ValueError(f"ddim_eta must be >= 0, got {self.ddim_eta}")
        if not self.min_sampling_denoising_std >= 0:
            raise ValueError("min_sampling_denoising_std must be >= 0")
        if not self.min_logprob_denoising_std > 0:
            raise ValueError("min_logprob_denoising_std must be positive")
        if self.randn_clip_value is not None and not self.randn_clip_value > 0:
            raise ValueError("randn_clip_value must be positive or None")
        low, high = self.logprob_clip if len(self.logprob_clip) == 2 else (1.0, 0.0)
        if not low < high:
            raise ValueError(f"logprob_clip must be (low, high), low < high: {self.logprob_clip}")
        for name in ("gamma_denoising", "gamma", "gae_lambda"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("actor_lr", "critic_lr", "clip_ploss_coef", "clip_ploss_coef_base"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not self.clip_ploss_coef_rate > 0:
            raise ValueError(f"clip_ploss_coef_rate must be positive: {self.clip_ploss_coef_rate}")
        for name in ("clip_vloss_coef", "max_grad_norm", "target_kl"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive or None, got {value}")
        if not (self.vf_coef > 0 and self.reward_clip > 0):
            raise ValueError("vf_coef and reward_clip must be positive")


RESUMABLE_CHANGES = ("total_env_steps", *RESUMABLE, "forward_batch_size", "torch_threads")
"""Config fields a resumed run may change (extending the budget, say)."""

ARM_PUSH = {
    "num_envs": 64,
    "n_steps": 20,
    "steps": 10,
    "finetune_steps": 10,
    "min_sampling_denoising_std": 0.04,
    "actor_lr": 1e-3,
    "clip_ploss_coef": 0.1,
    "clip_ploss_coef_base": 0.02,
    "update_epochs": 10,
    "batch_size": 6400,
    "critic_warmup_iterations": 2,
}
"""DPPO on the built-in push task (``arm-push``) from a policy cloned on its imperfect
demonstrations: 64 envs x 20 decisions per iteration, every step of a 10-step strided DDPM chain
fine-tuned (why these: the module docstring). Used by ``tests/rl/test_dppo.py`` and
``scripts/bench_finetune.py``."""
