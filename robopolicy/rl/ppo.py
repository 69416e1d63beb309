"""Gaussian PPO: the classic baseline on the shared on-policy core, in one file, top to bottom.

Symbols (``docs/DESIGN.md``): N envs, T decisions per env per iteration (``n_steps``), To
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
from typing import Any

import torch
from torch import Tensor

from robopolicy.errors import RobopolicyError
from robopolicy.policies.checkpoint import load_policy, read_card
from robopolicy.policies.gaussian import GaussianPolicy
from robopolicy.rl.advantages import (
    RunningMeanStd,
    explained_variance,
    normalize,
    with_running_stats,
)
from robopolicy.rl.bc import behaviour_clone
from robopolicy.rl.ppo_config import RESUMABLE_CHANGES, PPOConfig
from robopolicy.rl.registry import register_algorithm
from robopolicy.rl.rollout import (
    Act,
    Evaluator,
    Obs,
    RolloutBatch,
    RolloutCollector,
    RolloutFactory,
)
from robopolicy.rl.runs import episode_figures
from robopolicy.rl.session import RunResult, RunSession, mean, torch_threads
from robopolicy.rl.value import Critic, value_loss

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
        session = RunSession("ppo", out, config, RESUMABLE_CHANGES, GaussianPolicy)
        if session.finished:
            return session.result()
        torch.manual_seed(config.seed)
        policy, scratch = starting_policy(session, policy, progress)
        shapes = policy.config if policy else config.policy
        with session.rollouts(rollouts, shapes) as (collector, evaluator):
            if policy is None:  # from scratch: the task's shapes and action bounds
                spec = collector.spec
                policy = GaussianPolicy.untrained(
                    config.policy,
                    spec.obs_shapes,
                    spec.action_shape,
                    spec.action_low,
                    spec.action_high,
                )
            run = PPORun(session, policy, scratch, evaluator, dict(card or {}))
            run.loop(collector, progress)
        return session.result()


def starting_policy(
    session: RunSession, policy: GaussianPolicy | None, progress: bool
) -> tuple[GaussianPolicy | None, bool]:
    """Where the run starts: the resumed checkpoint's policy, ``policy``, a policy
    behaviour-cloned on ``bc_data``, or none yet (from scratch); and whether from scratch."""
    config = session.config
    if session.state is not None:
        return session.policy, bool(session.state["scratch"])
    if policy is None and config.bc_data:
        cloned = behaviour_clone(
            config.policy,
            config.bc_data,
            epochs=config.bc_epochs,
            batch_size=config.bc_batch_size,
            lr=config.bc_lr,
            seed=config.seed,
            progress=progress,
        )
        return cloned, False
    return policy, policy is None


class PPORun:
    """One invocation of a PPO run: the policy, the critic, their optimizer, the running
    observation statistics and the generator of the action noise (restored when resuming), and
    the steps of an iteration in the order :meth:`loop` runs them (module docstring)."""

    def __init__(
        self,
        session: RunSession,
        policy: GaussianPolicy,
        scratch: bool,
        evaluator: Evaluator,
        card: dict[str, Any],
    ) -> None:
        self.session, self.scratch, self.evaluator, self.card = session, scratch, evaluator, card
        self.config = config = session.config
        self.device = device = torch.device(config.device)
        self.policy = policy = policy.to(device).train()
        policy.normalizer.to(device)
        c = policy.config
        self.running = config.obs_normalization == "running" or (
            config.obs_normalization == "auto" and scratch
        )
        if self.running and any(policy.normalizer.modes[k] != "mean_std" for k in c.obs_keys):
            raise RobopolicyError("running observation statistics need mean_std normalization")
        self.critic = Critic(config, c, device)
        self.optimizer = torch.optim.Adam(
            [
                {"params": list(policy.parameters()), "lr": config.learning_rate},
                {"params": list(self.critic.net.parameters()), "lr": config.value_learning_rate},
            ],
            eps=1e-5,
            fused=device.type in ("cpu", "cuda"),
        )
        self.obs_stats = {k: RunningMeanStd(c.shapes[k]) for k in c.obs_keys}
        self.generator = torch.Generator().manual_seed(config.seed)
        if session.state is not None:
            self.critic.load_state_dict(session.state)
            self.optimizer.load_state_dict(session.state["optimizer"])
            for key, stats in self.obs_stats.items():
                stats.load_state_dict(session.state["obs_stats"][key])
            self.generator.set_state(session.state["generator"])

    def loop(self, collector: RolloutCollector, progress: bool) -> None:
        """Iterations until the budget is met, then the last checkpoint and the curves."""
        session, config, policy = self.session, self.config, self.policy
        session.start(self.evaluation, progress=progress)
        while session.running:
            tick = time.perf_counter()
            self.anneal()
            # 1. collect
            policy.eval()
            batch = collector.collect(self.act, config.n_steps).to(self.device)
            policy.train()
            collected = time.perf_counter()
            session.collected(batch.env_steps)
            # 2-3. rewards, values, advantages
            advantages, returns, values = self.critic.advantages(batch, policy.normalizer)
            # 4. minibatch epochs
            stats, stopped = self.update(batch, advantages, returns, values)
            # 5. observation statistics, for the next iteration's normalizer
            if self.running:
                self.update_obs_stats(batch)

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
                "train/lr": self.optimizer.param_groups[0]["lr"],
                "train/reward_scale": self.critic.reward_scale,
                "time/env_steps_per_s": batch.env_steps / seconds,
                "time/iteration_s": seconds,
                "time/collect_s": collected - tick,
            }
            if session.due(config.cadence.eval_every):
                scalars |= session.evaluated(self.evaluation())
            session.log(batch.env_steps, scalars)
            if session.due(config.cadence.checkpoint_every):
                self.save()
        session.close(self.save, task=self.card.get("task"))

    def anneal(self) -> None:
        """Both learning rates, annealed linearly to 0 over ``anneal_steps`` (``anneal_lr``)."""
        config = self.config
        horizon = config.anneal_steps or config.total_env_steps
        frac = max(0.0, 1.0 - self.session.env_steps / horizon) if config.anneal_lr else 1.0
        self.optimizer.param_groups[0]["lr"] = config.learning_rate * frac
        self.optimizer.param_groups[1]["lr"] = config.value_learning_rate * frac

    def act(self, obs: Obs) -> Act:
        """1. The stochastic policy: raw executed actions, and what the update needs again."""
        policy, c = self.policy, self.policy.config
        obs = {k: v.to(self.device) for k, v in obs.items() if k in c.obs_keys}
        n = len(next(iter(obs.values())))
        noise = torch.randn((n, c.horizon, c.action_dim), generator=self.generator)
        with torch.no_grad():
            raw, normalized = policy.sample_chunk(obs, noise.to(self.device))
            actions = normalized[:, policy.executed]
            log_prob = policy.log_prob(obs, actions)
        return Act(raw[:, policy.executed], {"action": actions, "log_prob": log_prob})

    def update(
        self, batch: RolloutBatch, advantages: Tensor, returns: Tensor, values: Tensor
    ) -> tuple[dict[str, list[float]], bool]:
        """4. Minibatch epochs: each minibatch's figures, and whether the KL stopped them."""
        config, policy = self.config, self.policy
        obs = {k: batch.obs[k].flatten(0, 1) for k in policy.config.obs_keys}
        actions = batch.extras["action"].flatten(0, 1)
        old_log_prob = batch.extras["log_prob"].flatten(0, 1)
        minibatch = math.ceil(config.num_envs * config.n_steps / config.num_minibatches)
        warmup = self.session.iteration <= config.critic_warmup_iterations
        stats: dict[str, list[float]] = {"policy": [], "value": [], "kl": [], "clipfrac": []}
        for _ in range(config.update_epochs):
            order = torch.randperm(len(actions), generator=self.generator).to(self.device)
            for rows in order.split(minibatch):
                mb_obs = {k: v[rows] for k, v in obs.items()}
                log_ratio = policy.log_prob(mb_obs, actions[rows]) - old_log_prob[rows]
                ratio = log_ratio.exp()
                with torch.no_grad():
                    approx_kl = float(((ratio - 1) - log_ratio).mean())
                if config.target_kl is not None and approx_kl > config.target_kl and not warmup:
                    return stats, True
                adv = normalize(advantages[rows]) if config.norm_adv else advantages[rows]
                clipped = ratio.clamp(1 - config.clip_coef, 1 + config.clip_coef)
                policy_loss = torch.max(-adv * ratio, -adv * clipped).mean()
                critic_loss = value_loss(
                    self.critic.net(mb_obs, policy.normalizer),
                    returns[rows],
                    old=values[rows],
                    clip=config.clip_value,
                )
                loss = config.vf_coef * critic_loss
                if not warmup:
                    loss = loss + policy_loss - config.ent_coef * policy.entropy()
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                params = [p for group in self.optimizer.param_groups for p in group["params"]]
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                self.optimizer.step()
                stats["policy"].append(float(policy_loss.detach()))
                stats["value"].append(float(critic_loss.detach()))
                stats["kl"].append(approx_kl)
                clipfrac = ((ratio - 1).abs() > config.clip_coef).float().mean()
                stats["clipfrac"].append(float(clipfrac))
        return stats, False

    def update_obs_stats(self, batch: RolloutBatch) -> None:
        """5. The running observation statistics, and the normalizer for the next iteration."""
        for key, stats in self.obs_stats.items():
            stats.update(batch.obs[key][:, :, -1].flatten(0, 1).cpu())
        normalizer = with_running_stats(self.policy.normalizer, self.obs_stats)
        self.policy.normalizer = normalizer.to(self.device)

    def act_deterministic(self, obs: Obs) -> Act:
        """The mean action (noise = 0), for evaluation."""
        c = self.policy.config
        obs = {k: v.to(self.device) for k, v in obs.items() if k in c.obs_keys}
        n = len(next(iter(obs.values())))
        zeros = torch.zeros((n, c.horizon, c.action_dim), device=self.device)
        with torch.no_grad():
            raw, _ = self.policy.sample_chunk(obs, zeros)
        return Act(raw[:, self.policy.executed], {})

    def evaluation(self) -> dict[str, float]:
        self.policy.eval()
        figures = self.evaluator(self.act_deterministic)
        self.policy.train()
        return figures

    def save(self) -> Path:
        """A checkpoint of the policy, with all that a resume needs."""
        tree = {
            "scratch": self.scratch,
            **self.critic.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "obs_stats": {k: s.state_dict() for k, s in self.obs_stats.items()},
            "generator": self.generator.get_state(),
        }
        return self.session.save(self.policy, tree, self.card)


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
