"""Gaussian PPO: the classic baseline on the shared on-policy core, in one file, top to bottom.

Symbols (``../shared/DESIGN.md``): N envs, T decisions per env per iteration (``n_steps``), To
observation steps, Tp predicted and Ta executed actions per decision, Da action size. With the
defaults (To = Tp = Ta = 1) this is cleanrl's ``ppo_continuous_action``; with Ta > 1 one decision
is one Gaussian over the Ta actions ``[To - 1, To - 1 + Ta)`` of a chunk (all of them, also those
an episode's end cut off, as DPPO does), and GAE runs over environment steps
(:mod:`robopolicy.rl.advantages`).

One iteration:

1. collect T decisions of N envs with the stochastic policy (``mean + std * noise``), keeping per
   decision the normalized executed actions (T, N, Ta, Da) and their log-probability (T, N);
2. scale the per-step rewards by the running std of the discounted return (optional);
3. values at decision boundaries, bootstrap after truncations, GAE → advantages and returns;
4. ``update_epochs`` passes of shuffled minibatches: clipped-ratio policy loss, (clipped) value
   loss, entropy bonus, gradient clipping; stop as soon as a minibatch's approximate KL to the
   collecting policy exceeds ``target_kl``;
5. update the running observation statistics (from scratch only) — after the update, so every
   stored log-probability matches the network it is compared with;
6. log; evaluate with the deterministic policy (noise = 0) every ``eval_every`` iterations;
   checkpoint every ``checkpoint_every`` (layout and resume in :mod:`robopolicy.rl.runs`).

The policy starts from a given checkpoint, or from behaviour cloning on ``bc_data`` (a few epochs
of the policy's MSE/NLL loss), or from scratch. Settings follow cleanrl (``ppo_continuous_action``:
2048 steps per iteration, 10 epochs of 32 minibatches, lr 3e-4 annealed, clip 0.2, GAE 0.95,
running observation and reward normalization); DPPO's Gaussian fine-tuning uses a much smaller
clip (0.01), a target KL, a critic warm-up and a fixed data normalizer: all are settings here.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Literal

import torch

from robopolicy.errors import RobopolicyError
from robopolicy.policies.checkpoint import load_policy, read_card
from robopolicy.policies.gaussian import GaussianPolicy, GaussianPolicyConfig
from robopolicy.rl.advantages import (
    RewardScaler,
    RunningMeanStd,
    batch_advantages,
    explained_variance,
    normalize,
    with_running_stats,
)
from robopolicy.rl.bc import behaviour_clone
from robopolicy.rl.registry import register_algorithm
from robopolicy.rl.rollout import Act, Obs, RolloutFactory
from robopolicy.rl.runs import episode_figures
from robopolicy.rl.session import RunResult, RunSession, mean, torch_threads
from robopolicy.rl.value import ValueConfig, ValueNetwork, value_loss


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
    eval_every: int = 10
    """Evaluate every this many iterations (and before training and at the end); 0: only then."""
    eval_episodes: int = 10
    """Episodes per evaluation (seeds ``eval_seed …``)."""
    eval_seed: int = 100_000
    """First evaluation seed, apart from the training seeds."""
    eval_envs: int = 5
    """Environments evaluating in parallel."""
    checkpoint_every: int = 10
    """Checkpoint every this many iterations (and at the end); 0: only at the end."""
    keep_checkpoints: int = 2
    """Newest checkpoints kept."""

    def __post_init__(self) -> None:
        if not isinstance(self.policy, GaussianPolicyConfig):
            raise ValueError(f"ppo trains a gaussian policy, not {type(self.policy).__name__}")
        if self.obs_normalization not in ("auto", "running", "fixed"):
            raise ValueError("obs_normalization must be auto, running or fixed")
        positive = ("total_env_steps", "num_envs", "n_steps", "update_epochs", "num_minibatches")
        for name in (*positive, "torch_threads", "bc_batch_size", "eval_episodes", "eval_envs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("bc_epochs", "critic_warmup_iterations", "eval_every", "checkpoint_every"):
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
        if self.keep_checkpoints < 1 or self.reward_clip <= 0 or self.seed < 0:
            raise ValueError("keep_checkpoints >= 1, reward_clip > 0 and seed >= 0 are required")
        if self.anneal_steps is not None and self.anneal_steps < 1:
            raise ValueError(f"anneal_steps must be >= 1 or None, got {self.anneal_steps}")
        if self.target_kl is not None and not self.target_kl > 0:
            raise ValueError(f"target_kl must be positive or None, got {self.target_kl}")
        if self.clip_value is not None and not self.clip_value > 0:
            raise ValueError(f"clip_value must be positive or None, got {self.clip_value}")


RESUMABLE_CHANGES = (
    "total_env_steps",
    "anneal_steps",
    "eval_every",
    "checkpoint_every",
    "keep_checkpoints",
)
"""Config fields a resumed run may change (extending the budget, say)."""


# -- the run ----------------------------------------------------------------------------------


def train(
    config: PPOConfig,
    rollouts: RolloutFactory,
    out: str | Path,
    *,
    policy: GaussianPolicy | None = None,
    card: dict[str, Any] | None = None,
    progress: bool = True,
) -> RunResult:
    """Train with PPO into ``out``, resuming from its ``latest`` checkpoint when there is one.

    ``policy`` (e.g. loaded from a checkpoint) is the starting point; without it the run
    behaviour-clones on ``config.bc_data`` when set, else starts from scratch.
    """
    with torch_threads(config.torch_threads):
        return _train(config, rollouts, Path(out), policy, dict(card or {}), progress)


def _train(
    config: PPOConfig,
    rollouts: RolloutFactory,
    out: Path,
    policy: GaussianPolicy | None,
    card: dict[str, Any],
    progress: bool,
) -> RunResult:
    session = RunSession("ppo", out, config, RESUMABLE_CHANGES, GaussianPolicy)
    if session.finished:
        return session.result()
    device = torch.device(config.device)

    # -- the policy, and where we start --------------------------------------------------------
    state = session.state
    torch.manual_seed(config.seed)
    if state is not None:
        policy, scratch = session.policy, bool(state["scratch"])
    elif policy is None and config.bc_data:
        policy = behaviour_clone(
            config.policy,
            config.bc_data,
            epochs=config.bc_epochs,
            batch_size=config.bc_batch_size,
            lr=config.bc_lr,
            seed=config.seed,
            progress=progress,
        )
        scratch = False
    else:
        scratch = policy is None
    collector, evaluate = session.rollouts(rollouts, policy.config if policy else config.policy)
    try:
        if policy is None:
            spec = collector.spec
            policy = GaussianPolicy.untrained(
                config.policy, spec.obs_shapes, spec.action_shape, spec.action_low, spec.action_high
            )
        policy = policy.to(device).train()
        policy.normalizer.to(device)
        running = config.obs_normalization == "running" or (
            config.obs_normalization == "auto" and scratch
        )
        c = policy.config
        if running and any(policy.normalizer.modes[k] != "mean_std" for k in c.obs_keys):
            raise RobopolicyError("running observation statistics need mean_std normalization")

        # -- the critic, optimizer and statistics ----------------------------------------------
        value = ValueNetwork(
            config.value, obs_keys=c.obs_keys, n_obs_steps=c.n_obs_steps, state_dim=c.state_dim
        ).to(device)
        optimizer = torch.optim.Adam(
            [
                {"params": list(policy.parameters()), "lr": config.learning_rate},
                {"params": list(value.parameters()), "lr": config.value_learning_rate},
            ],
            eps=1e-5,
            fused=device.type in ("cpu", "cuda"),
        )
        scaler = RewardScaler(config.num_envs, config.gamma, clip=config.reward_clip)
        obs_stats = {k: RunningMeanStd(c.shapes[k]) for k in c.obs_keys}
        generator = torch.Generator().manual_seed(config.seed)
        if state is not None:
            value.load_state_dict(state["value"])
            optimizer.load_state_dict(state["optimizer"])
            scaler.stats.load_state_dict(state["reward_stats"])  # per-env returns restart at 0
            for key, stats in obs_stats.items():
                stats.load_state_dict(state["obs_stats"][key])
            generator.set_state(state["generator"])

        # -- acting ------------------------------------------------------------------------------
        def act(obs: Obs) -> Act:
            """Stochastic policy: raw executed actions, and what the update needs again."""
            obs = {k: v.to(device) for k, v in obs.items() if k in c.obs_keys}
            noise = torch.randn(
                (len(next(iter(obs.values()))), c.horizon, c.action_dim), generator=generator
            )
            with torch.no_grad():
                raw, normalized = policy.sample_chunk(obs, noise.to(device))
                actions = normalized[:, policy.executed]
                log_prob = policy.log_prob(obs, actions)
            return Act(raw[:, policy.executed], {"action": actions, "log_prob": log_prob})

        def act_deterministic(obs: Obs) -> Act:
            """The mean action (noise = 0), for evaluation."""
            obs = {k: v.to(device) for k, v in obs.items() if k in c.obs_keys}
            zeros = torch.zeros(
                (len(next(iter(obs.values()))), c.horizon, c.action_dim), device=device
            )
            with torch.no_grad():
                raw, _ = policy.sample_chunk(obs, zeros)
            return Act(raw[:, policy.executed], {})

        def evaluation() -> dict[str, float]:
            policy.eval()
            figures = evaluate(act_deterministic)
            policy.train()
            return figures

        def save() -> Path:
            tree = {
                "scratch": scratch,
                "value": value.state_dict(),
                "optimizer": optimizer.state_dict(),
                "reward_stats": scaler.stats.state_dict(),
                "obs_stats": {k: s.state_dict() for k, s in obs_stats.items()},
                "generator": generator.get_state(),
            }
            return session.save(policy, tree, card)

        # -- the loop ----------------------------------------------------------------------------
        session.start(evaluation, progress=progress)
        minibatch = math.ceil(config.num_envs * config.n_steps / config.num_minibatches)
        while session.running:
            tick = time.perf_counter()
            horizon = config.anneal_steps or config.total_env_steps
            frac = max(0.0, 1.0 - session.env_steps / horizon) if config.anneal_lr else 1.0
            optimizer.param_groups[0]["lr"] = config.learning_rate * frac
            optimizer.param_groups[1]["lr"] = config.value_learning_rate * frac

            # 1. collect
            policy.eval()
            batch = collector.collect(act, config.n_steps).to(device)
            policy.train()
            collected = time.perf_counter()
            session.collected(batch.env_steps)

            # 2-3. rewards, values, advantages
            advantages, returns, values = batch_advantages(
                batch,
                lambda obs: value.batched(obs, policy.normalizer),
                gamma=config.gamma,
                lam=config.gae_lambda,
                scaler=scaler if config.reward_scaling else None,
            )

            # 4. minibatch epochs
            obs = {k: batch.obs[k].flatten(0, 1) for k in c.obs_keys}
            actions = batch.extras["action"].flatten(0, 1)
            old_log_prob = batch.extras["log_prob"].flatten(0, 1)
            warmup = session.iteration <= config.critic_warmup_iterations
            stats: dict[str, list[float]] = {"policy": [], "value": [], "kl": [], "clipfrac": []}
            stopped = False
            for _ in range(config.update_epochs):
                order = torch.randperm(len(actions), generator=generator).to(device)
                for rows in order.split(minibatch):
                    mb_obs = {k: v[rows] for k, v in obs.items()}
                    log_ratio = policy.log_prob(mb_obs, actions[rows]) - old_log_prob[rows]
                    ratio = log_ratio.exp()
                    with torch.no_grad():
                        approx_kl = float(((ratio - 1) - log_ratio).mean())
                    if config.target_kl is not None and approx_kl > config.target_kl and not warmup:
                        stopped = True
                        break
                    adv = normalize(advantages[rows]) if config.norm_adv else advantages[rows]
                    clipped = ratio.clamp(1 - config.clip_coef, 1 + config.clip_coef)
                    policy_loss = torch.max(-adv * ratio, -adv * clipped).mean()
                    critic_loss = value_loss(
                        value(mb_obs, policy.normalizer),
                        returns[rows],
                        old=values[rows],
                        clip=config.clip_value,
                    )
                    loss = config.vf_coef * critic_loss
                    if not warmup:
                        loss = loss + policy_loss - config.ent_coef * policy.entropy()
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    params = [p for group in optimizer.param_groups for p in group["params"]]
                    torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                    optimizer.step()
                    stats["policy"].append(float(policy_loss.detach()))
                    stats["value"].append(float(critic_loss.detach()))
                    stats["kl"].append(approx_kl)
                    stats["clipfrac"].append(
                        float(((ratio - 1).abs() > config.clip_coef).float().mean())
                    )
                if stopped:
                    break

            # 5. observation statistics, for the next iteration's normalizer
            if running:
                for key, stats_k in obs_stats.items():
                    stats_k.update(batch.obs[key][:, :, -1].flatten(0, 1).cpu())
                policy.normalizer = with_running_stats(policy.normalizer, obs_stats).to(device)

            # 6. log, evaluate, checkpoint
            seconds = time.perf_counter() - tick
            scalars = episode_figures(batch) | {
                "loss/policy": mean(stats["policy"]),
                "loss/value": mean(stats["value"]),
                "loss/approx_kl": mean(stats["kl"]),
                "loss/clipfrac": mean(stats["clipfrac"]),
                "loss/explained_variance": explained_variance(values, returns),
                "loss/kl_stop": float(stopped),
                "train/std": float(policy.std().detach().mean()),
                "train/entropy": float(policy.entropy().detach()),
                "train/lr": optimizer.param_groups[0]["lr"],
                "train/reward_scale": float(scaler.stats.std) if config.reward_scaling else 1.0,
                "time/env_steps_per_s": batch.env_steps / seconds,
                "time/iteration_s": seconds,
                "time/collect_s": collected - tick,
            }
            if session.due(config.eval_every):
                scalars |= session.evaluated(evaluation())
            session.log(batch.env_steps, scalars)
            if session.due(config.checkpoint_every):
                save()
        session.close(save, task=card.get("task"))
    finally:
        collector.close()
        evaluate.close()
    return session.result()


# -- ``robopolicy finetune --algo ppo`` ----------------------------------------------------------


@register_algorithm("ppo", PPOConfig, description="Gaussian PPO baseline (BC-initialized MLP)")
def finetune(
    config: PPOConfig,
    *,
    checkpoint: str | Path | None,
    rollouts: RolloutFactory,
    out: str | Path,
    card: dict[str, Any],
    progress: bool = True,
) -> dict[str, Any]:
    """PPO from ``checkpoint``: a ``gaussian`` checkpoint is fine-tuned as it is; any other policy
    (diffusion, flow) stands for its data: a Gaussian with the same To/Tp/Ta and observation keys
    is behaviour-cloned on ``config.bc_data`` or, when unset, on the checkpoint card's ``data``,
    then fine-tuned. Without a checkpoint: BC on ``bc_data`` when set, else from scratch."""
    policy = None
    if checkpoint is not None:
        loaded = load_policy(checkpoint, device=config.device)
        if isinstance(loaded, GaussianPolicy):
            policy = loaded
        else:
            data = config.bc_data or read_card(checkpoint).get("data")
            if not data:
                raise RobopolicyError(
                    f"{checkpoint} is a {loaded.type_name} policy: give bc_data=PATH (its "
                    "demonstrations) to clone the Gaussian baseline from"
                )
            window = {
                name: getattr(loaded.config, name)
                for name in ("obs_keys", "n_obs_steps", "horizon", "n_action_steps")
            }
            config = dataclasses.replace(
                config, bc_data=str(data), policy=dataclasses.replace(config.policy, **window)
            )
    result = train(config, rollouts, out, policy=policy, card=card, progress=progress)
    return result.as_dict()
