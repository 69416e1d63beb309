"""FPO: flow-matching policy gradients for a FlowPolicy, in one file, top to bottom.

McAllister et al., 2025, "Flow Matching Policy Gradients" (arXiv 2507.21053) with the changes of
its follow-up, Yi, Choi et al., 2026, "Flow Policy Gradients for Robot Control" (FPO++, arXiv
2602.02481). PPO's likelihood ratio, which a flow policy cannot compute, is replaced by a ratio of
conditional-flow-matching (CFM) losses at fixed (noise, time) pairs.

Symbols (``docs/DESIGN.md``): N envs, T decisions per env per iteration (``n_steps``), To
observation steps, Tp predicted and Ta executed actions per decision, Da action size, M = N·T
decisions per iteration, S (noise, time) pairs per decision (``n_samples``; the papers' N_mc).
The flow convention is the policy's (:mod:`robopolicy.policies.flow.model`): ``t = 1`` noise,
``t = 0`` data, ``x_t = t·eps + (1 − t)·a``, velocity target ``eps − a``, in normalized units.

One iteration:

1. collect T decisions of N envs. The policy *explores through the initial noise of its ODE
   only*: each decision integrates the flow from ``x_1 ~ N(0, I)`` (the papers' training
   rollouts; the reference code's ``sde_sigma`` and ``feather_std`` are 0 by default, and FPO++
   names initial noise as its exploration), no noise is added along the path or to the actions.
   Per decision it keeps the whole chunk a (Tp, Da) in raw units, and draws S pairs
   ``eps_i ~ N(0, I)`` (Tp, Da) and ``t_i ~ U(min_time, 1)`` (the reference draws t uniformly);
2. scale the per-step rewards by the running std of the discounted return (optional);
3. values at decision boundaries, bootstrap after truncations, chunk-aware GAE over environment
   steps (:mod:`robopolicy.rl.advantages`), advantages normalized over the batch;
4. the old per-pair losses ``L_old (M, S) = ℓ_θold(a, eps_i, t_i)``, computed before any update
   by :func:`pair_losses`, the very function the update calls, in the minibatches of the first
   epoch: so the first minibatch's ratio is exactly 1 (bit for bit, logged as
   ``loss/first_ratio_error``), not merely close;
5. ``update_epochs`` passes of shuffled minibatches: ``L_new`` for all M·S pairs of a minibatch
   in one batched forward (:meth:`FlowPolicy.cfm_loss` flattens decisions × pairs), the ratio,
   the clipped surrogate, the value loss, gradient clipping; stop when a minibatch's proxy KL
   (``mean((ρ − 1) − log ρ)`` of the FPO ratio) exceeds ``target_kl``;
6. log; evaluate every ``eval_every`` iterations; checkpoint every ``checkpoint_every``
   (:mod:`robopolicy.rl.runs`: atomic, resumable; the checkpoint is an ordinary flow policy).

**The ratio.** With ``ℓ_i = ‖v_θ(x_{t_i}, t_i) − (eps_i − a)‖²`` per pair:

- FPO (the paper, and the reference code's default ``average_losses_before_exp=True``) averages
  the losses over the S pairs, then exponentiates: one ratio per action,
  ``ρ = exp(mean_i ℓ_old,i − mean_i ℓ_new,i)``, clipped as a whole (``ratio="per_action"``);
- FPO++ gives each pair its own ratio ``ρ_i = exp(ℓ_old,i − ℓ_new,i)``, all sharing the action's
  advantage, each clipped on its own: the same gradient on-policy, a finer trust region after the
  first step, and lower gradient variance. It improved every task in FPO++, fine-tuning included;
  it is the default here (``ratio="per_sample"``).

**The trust region.** PPO's clipped surrogate (``trust_region="ppo"``, the default). FPO++'s
asymmetric ASPO (``"aspo"``) uses PPO clipping for positive advantages and SPO's
``ρA − |A| (ρ − 1)² / (2ε)`` for negative ones, which pulls ratios back instead of zeroing their
gradient; FPO++ found it critical from scratch but harmful when fine-tuning a cloned policy, and
disabled it for manipulation fine-tuning, as our default does.

**Stabilizers** (FPO++ appendix C.2; the reference's per-sample mode clips log-ratios to ±3):
the per-pair losses are clamped to ``cfm_loss_clamp`` before differences are taken, and the
log-ratios to ±``log_ratio_clamp`` before exponentiation. ``loss_reduction="sum"`` sums each
pair's squared error over the Tp·Da numbers of the chunk, as FPO++ does for action chunks (the
reference code, one action at a time, averages over Da); ``"mean"`` keeps the hook's mean.

**Evaluation with zero noise** (FPO++ "zero-sampling": it raised their cloned manipulation
policies from about 10% to over 70% success before any fine-tuning): the ``eval`` figures
integrate from ``x_1 = 0``, deterministic. A policy cloned from multimodal demonstrations can
do the opposite (zero noise lands between the modes), so ``eval_stochastic`` also evaluates the
stochastic policy (seeded noise, the same every evaluation) as ``stochastic_*`` figures, which is
what ``robopolicy eval`` measures.

**Independent of the integrator.** The ratio only evaluates the velocity network at the stored
``(a, eps_i, t_i)``; it never runs the ODE. Collection and evaluation may use Euler or midpoint
with any step count (``sampler``/``steps``, ``eval_sampler``/``eval_steps``), and the
checkpoint keeps the policy's own sampler settings.

**Defaults.** From the FPO reference code (``playground/src/flow_policy/fpo.py``): 8 pairs per
action, uniform t, exploration through the initial noise only, GAE λ 0.95, value-loss weight
0.25, advantage normalization, constant learning rates, no KL stop. From FPO++'s fine-tuning:
per-sample ratios, the PPO trust region, chunk-level (summed) losses, loss clamps, 4
minibatches. Tuned on ``arm-push`` from a policy cloned on imperfect demonstrations, where the
papers' values gained nothing in our runs of 20k to 40k environment steps: policy learning rate
1e-4 (the reference's 3e-4 with 16 epochs collapsed it to 0% success; FPO++'s fine-tuning 1e-5
barely moved it), 4 epochs, critic learning rate 1e-3 (DPPO's) after 2 critic-only iterations,
32 envs × 20 decisions per iteration, and clip 0.2: a pair's summed loss over Tp·Da numbers makes
its log-ratio noisy, and at 0.1 one seed of three did not improve the zero-noise success in 80k
steps; at 0.2 all three did. With these defaults, 60k steps took the zero-noise success from 0 to
0.72, 0.59 and 0.18 (seeds 0, 1, 2; 100 episodes) and the stochastic one from 0.13 to 0.44, 0.55
and 0.40 (``tests/rl/test_fpo.py`` runs seed 0).
"""

from __future__ import annotations

import copy
import functools
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from robopolicy.errors import RobopolicyError
from robopolicy.policies.checkpoint import load_policy
from robopolicy.policies.flow import FlowPolicy
from robopolicy.rl.advantages import explained_variance, normalize
from robopolicy.rl.fpo_config import RESUMABLE_CHANGES, FPOConfig
from robopolicy.rl.registry import register_algorithm
from robopolicy.rl.rollout import (
    Act,
    Evaluator,
    Obs,
    RolloutCollector,
    RolloutFactory,
    executed_slice,
)
from robopolicy.rl.runs import episode_figures
from robopolicy.rl.session import RunResult, RunSession, mean, origin_card, torch_threads
from robopolicy.rl.value import Critic, value_loss

# -- the FPO objective ------------------------------------------------------------------------


def pair_losses(
    policy: FlowPolicy,
    obs: Obs,
    chunks: Tensor,
    eps: Tensor,
    t: Tensor,
    *,
    reduction: str = "sum",
    clamp: float | None = None,
) -> Tensor:
    """(B, S) per-pair CFM losses ``ℓ(a, eps_i, t_i)``: the one path of both ``L_old`` and
    ``L_new`` (so that they agree bit for bit while the weights do).

    Args:
        obs: raw-unit observations (B, To, ...).
        chunks: (B, Tp, Da) raw-unit action chunks the policy took.
        eps: (B, S, Tp, Da) noise, normalized units. t: (B, S) times in [0, 1].
        reduction: ``sum`` or ``mean`` of the squared error over Tp·Da.
        clamp: upper bound of each loss (None: none).
    """
    losses = policy.cfm_loss(obs, chunks, eps, t)  # (B, S), mean over Tp·Da
    if reduction == "sum":
        losses = losses * (chunks.shape[-2] * chunks.shape[-1])
    return losses if clamp is None else losses.clamp(max=clamp)


def fpo_log_ratio(
    old: Tensor, new: Tensor, *, per_sample: bool = True, clamp: float | None = None
) -> Tensor:
    """``log ρ``: (B, S) per pair (FPO++) or (B, 1) per decision (FPO) from (B, S) losses.

    Per pair ``L_old,i − L_new,i``; per decision their mean (= mean L_old − mean L_new: average
    the losses, then exponentiate). Clamped to ±``clamp`` when given.
    """
    log_ratio = old - new
    if not per_sample:
        log_ratio = log_ratio.mean(-1, keepdim=True)
    return log_ratio if clamp is None else log_ratio.clamp(-clamp, clamp)


def batch_losses(
    policy: FlowPolicy, obs: Obs, pairs: dict[str, Tensor], rows: Tensor, config: FPOConfig
) -> Tensor:
    """(R, S) :func:`pair_losses` of the decisions ``rows`` (R,) of a flattened batch: ``obs``
    ``{key: (M, To, ...)}``, ``pairs`` ``{"chunk": (M, Tp, Da), "eps": (M, S, Tp, Da),
    "t": (M, S)}``. Both ``L_old`` and ``L_new`` come from here."""
    return pair_losses(
        policy,
        {k: v[rows] for k, v in obs.items()},
        pairs["chunk"][rows],
        pairs["eps"][rows],
        pairs["t"][rows],
        reduction=config.loss_reduction,
        clamp=config.cfm_loss_clamp,
    )


def surrogate(ratio: Tensor, advantages: Tensor, *, clip: float, trust_region: str) -> Tensor:
    """The objective ψ to maximize, per ratio: (B, K) from ratios (B, K) and advantages (B,).

    ``ppo``: ``min(ρA, clip(ρ, 1 ± ε) A)``. ``aspo``: that where ``A >= 0``, and SPO's
    ``ρA − |A| (ρ − 1)² / (2ε)`` where ``A < 0``.
    """
    adv = advantages[:, None].to(ratio.dtype)
    ppo = torch.min(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv)
    if trust_region == "ppo":
        return ppo
    if trust_region != "aspo":
        raise ValueError(f"trust_region must be ppo or aspo, got {trust_region!r}")
    spo = ratio * adv - adv.abs() / (2 * clip) * (ratio - 1) ** 2
    return torch.where(adv >= 0, ppo, spo)


def integrate_chunk(
    policy: FlowPolicy,
    obs: Obs,
    noise: Tensor,
    *,
    steps: int | None = None,
    method: str | None = None,
) -> Tensor:
    """(B, Tp, Da) raw-unit chunks integrated from ``noise`` (B, Tp, Da) with ``method`` and
    ``steps`` (the policy's when None) — without touching the policy's saved sampler settings."""
    cond = policy.encode(obs)
    x = policy.denoise(cond, noise.to(cond.device, torch.float32), sampler=method, steps=steps)
    return policy.to_actions(x)


# -- the run ----------------------------------------------------------------------------------


def train(
    config: FPOConfig,
    rollouts: RolloutFactory,
    out: str | Path,
    *,
    policy: FlowPolicy,
    card: dict[str, Any] | None = None,
    progress: bool = True,
) -> RunResult:
    """Fine-tune a copy of ``policy`` with FPO into ``out``, resuming from its ``latest``
    checkpoint when there is one (``policy`` then only anchors the ``train/drift`` curve: the
    distance of the weights from it, relative to its norm)."""
    if not isinstance(policy, FlowPolicy):
        raise RobopolicyError(f"fpo fine-tunes a flow policy, not a {type(policy).__name__}")
    if not policy.config.obs_keys:
        raise RobopolicyError("fpo's critic needs low-dimensional observation keys")
    with torch_threads(config.torch_threads):
        session = RunSession("fpo", out, config, RESUMABLE_CHANGES, FlowPolicy)
        if session.finished:
            return session.result()
        with session.rollouts(rollouts, policy.config) as (collector, evaluator):
            FPORun(session, policy, evaluator, dict(card or {})).loop(collector, progress)
        return session.result()


class FPORun:
    """One invocation of an FPO run: a copy of the policy (the caller's stays as it was; in eval
    mode: no stochastic layers, so old and new losses compare alike), the critic, the optimizer
    and the generator of every draw (restored when resuming), and the steps of an iteration in
    the order :meth:`loop` runs them (module docstring)."""

    def __init__(
        self, session: RunSession, policy: FlowPolicy, evaluator: Evaluator, card: dict
    ) -> None:
        self.session, self.evaluator, self.card = session, evaluator, card
        self.config = c = session.config
        self.device = device = torch.device(c.device)
        self.anchor = torch.cat([p.detach().flatten() for p in policy.parameters()]).to(device)
        self.policy = (session.policy or copy.deepcopy(policy)).to(device).eval()
        self.policy.normalizer.to(device)
        pc = self.policy.config
        self.keys, self.executed = (*pc.obs_keys, *pc.image_keys), executed_slice(self.policy)
        self.chunk_shape = (pc.horizon, pc.action_dim)  # (Tp, Da)
        torch.manual_seed(c.seed)
        self.critic = Critic(c, pc, device)
        self.actor_params = list(self.policy.parameters())
        self.critic_params = list(self.critic.net.parameters())
        self.optimizer = torch.optim.Adam(
            [
                {"params": self.actor_params, "lr": c.learning_rate},
                {"params": self.critic_params, "lr": c.value_learning_rate},
            ],
            eps=1e-5,
        )
        self.generator = torch.Generator().manual_seed(c.seed)
        self.updates = 0
        if session.state is not None:
            self.critic.load_state_dict(session.state)
            self.optimizer.load_state_dict(session.state["optimizer"])
            self.generator.set_state(session.state["generator"])
            self.updates = int(session.state["updates"])

    def loop(self, collector: RolloutCollector, progress: bool) -> None:
        """Iterations until the budget is met, then the last checkpoint and the curves."""
        session, config = self.session, self.config
        session.start(self.evaluation, progress=progress)
        while session.running:
            tick = time.perf_counter()
            # 1. collect
            batch = collector.collect(self.act, config.n_steps).to(self.device)
            session.collected(batch.env_steps)
            collected = time.perf_counter()
            # 2-3. rewards, values, advantages (normalized over the whole batch)
            advantages, returns, values = self.critic.advantages(batch, self.policy.normalizer)
            if config.norm_adv:
                advantages = normalize(advantages)
            obs = {k: batch.obs[k].flatten(0, 1) for k in self.keys}
            pairs = {k: batch.extras[k].flatten(0, 1) for k in ("chunk", "eps", "t")}
            # 4. the old per-pair losses, in the first epoch's minibatches
            first_order, old_losses = self.old_losses(obs, pairs)
            prepared = time.perf_counter()
            # 5. minibatch epochs
            stats, figures = self.update(obs, pairs, first_order, old_losses, advantages, returns)
            updated = time.perf_counter()

            # 6. log, evaluate, checkpoint
            params = torch.cat([p.detach().flatten() for p in self.policy.parameters()])
            scalars = episode_figures(batch) | {
                "loss/policy": mean(stats["policy"]),
                "loss/value": mean(stats["value"]),
                "loss/approx_kl": mean(stats["kl"]),
                "loss/clipfrac": mean(stats["clipfrac"]),
                "loss/ratio_min": min(stats["ratio_min"], default=math.nan),
                "loss/ratio_max": max(stats["ratio_max"], default=math.nan),
                "loss/first_ratio_error": figures["first_ratio_error"],
                "loss/explained_variance": explained_variance(values, returns),
                "loss/kl_stop": figures["kl_stop"],
                "loss/epochs": figures["epochs"],
                "train/cfm_loss": float(old_losses.mean()),
                "train/drift": float((params - self.anchor).norm() / self.anchor.norm()),
                "train/updates": float(self.updates),
                "train/reward_scale": self.critic.reward_scale,
                "time/iteration_s": updated - tick,
                "time/env_steps_per_s": batch.env_steps / (updated - tick),
                "time/collect_s": collected - tick,
                "time/prepare_s": prepared - collected,
                "time/update_s": updated - prepared,
            }
            if session.due(config.cadence.eval_every):
                scalars |= session.evaluated(self.evaluation())
            scalars["time/eval_s"] = time.perf_counter() - updated
            session.log(batch.env_steps, scalars)
            if session.due(config.cadence.checkpoint_every):
                self.save()
        session.close(self.save, task=self.card.get("task"))

    def act(self, obs: Obs) -> Act:
        """1. The stochastic policy (random initial noise), and the S (eps, t) pairs per chunk."""
        c, generator, samples = self.policy.config, self.generator, self.config.n_samples
        obs = {k: obs[k].to(self.device) for k in self.keys}
        n = obs[self.keys[0]].shape[0]
        noise = torch.randn((n, *self.chunk_shape), generator=generator)
        eps = torch.randn((n, samples, *self.chunk_shape), generator=generator)
        t = c.min_time + (1 - c.min_time) * torch.rand((n, samples), generator=generator)
        with torch.no_grad():
            chunk = integrate_chunk(
                self.policy,
                obs,
                noise,
                steps=self.config.steps,
                method=self.config.sampler,
            )
        return Act(chunk[:, self.executed], {"chunk": chunk, "eps": eps, "t": t})

    def old_losses(self, obs: Obs, pairs: dict[str, Tensor]) -> tuple[list[Tensor], Tensor]:
        """4. The first epoch's minibatches (decision rows) and the old per-pair losses (M, S),
        computed in those minibatches by the function that computes the new ones."""
        decisions = self.config.num_envs * self.config.n_steps
        first_order = self.minibatches()
        old_losses = torch.empty(decisions, self.config.n_samples, device=self.device)
        with torch.no_grad():
            for rows in first_order:
                old_losses[rows] = batch_losses(self.policy, obs, pairs, rows, self.config)
        return first_order, old_losses

    def minibatches(self) -> list[Tensor]:
        """The M decisions in a fresh shuffled order, split in ``num_minibatches``."""
        decisions = self.config.num_envs * self.config.n_steps
        order = torch.randperm(decisions, generator=self.generator).to(self.device)
        return order.split(math.ceil(decisions / self.config.num_minibatches))

    def update(
        self,
        obs: Obs,
        pairs: dict[str, Tensor],
        first_order: list[Tensor],
        old_losses: Tensor,
        advantages: Tensor,
        returns: Tensor,
    ) -> tuple[dict[str, list[float]], dict[str, float]]:
        """5. Minibatch epochs (the first in ``first_order``): each minibatch's figures, and the
        first ratio's distance from 1, whether the KL stopped the update, and the epochs run."""
        config = self.config
        warmup = self.session.iteration <= config.critic_warmup_iterations
        stats: dict[str, list[float]] = {
            k: [] for k in ("policy", "value", "kl", "clipfrac", "ratio_min", "ratio_max")
        }
        first_error, stopped, epochs = math.nan, False, 0
        for epoch in range(config.update_epochs):
            for rows in first_order if epoch == 0 else self.minibatches():
                log_ratio = fpo_log_ratio(
                    old_losses[rows],
                    batch_losses(self.policy, obs, pairs, rows, config),
                    per_sample=config.ratio == "per_sample",
                    clamp=config.log_ratio_clamp,
                )
                ratio = log_ratio.exp()
                with torch.no_grad():
                    approx_kl = float(((ratio - 1) - log_ratio).mean())
                    if math.isnan(first_error):
                        first_error = float((ratio - 1).abs().max())
                if config.target_kl is not None and approx_kl > config.target_kl and not warmup:
                    stopped = True
                    break
                psi = surrogate(
                    ratio, advantages[rows], clip=config.clip_coef, trust_region=config.trust_region
                )
                policy_loss = -psi.mean()
                critic_loss = value_loss(
                    self.critic.net({k: v[rows] for k, v in obs.items()}, self.policy.normalizer),
                    returns[rows],
                )
                self.step(config.value_coef * critic_loss + (0 if warmup else policy_loss))
                stats["policy"].append(float(policy_loss.detach()))
                stats["value"].append(float(critic_loss.detach()))
                stats["kl"].append(approx_kl)
                clipped = ((ratio.detach() - 1).abs() > config.clip_coef).float().mean()
                stats["clipfrac"].append(float(clipped))
                stats["ratio_min"].append(float(ratio.detach().min()))
                stats["ratio_max"].append(float(ratio.detach().max()))
            epochs = epoch + 1
            if stopped:
                break
        return stats, {
            "first_ratio_error": first_error,
            "kl_stop": float(stopped),
            "epochs": epochs,
        }

    def step(self, loss: Tensor) -> None:
        """One Adam step of the policy and the critic on ``loss``, each gradient clipped alone."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.actor_params, self.config.max_grad_norm)
            torch.nn.utils.clip_grad_norm_(self.critic_params, self.config.max_grad_norm)
        self.optimizer.step()
        self.updates += 1

    def act_evaluated(self, obs: Obs, *, noise: torch.Generator | None = None) -> Act:
        """The evaluated policy: integrated from zero noise, or from noise drawn from ``noise``."""
        obs = {k: obs[k].to(self.device) for k in self.keys}
        shape = (obs[self.keys[0]].shape[0], *self.chunk_shape)
        x1 = torch.zeros(shape) if noise is None else torch.randn(shape, generator=noise)
        with torch.no_grad():
            chunk = integrate_chunk(
                self.policy, obs, x1, steps=self.config.eval_steps, method=self.config.eval_sampler
            )
        return Act(chunk[:, self.executed], {})

    def evaluation(self) -> dict[str, float]:
        """Zero-noise figures; with ``eval_stochastic``, ``stochastic_*`` ones as well (the
        noise seeded alike at every evaluation)."""
        figures = self.evaluator(self.act_evaluated)
        if self.config.eval_stochastic:
            noise = torch.Generator().manual_seed(self.config.cadence.eval_seed)
            stochastic = self.evaluator(functools.partial(self.act_evaluated, noise=noise))
            figures |= {f"stochastic_{k}": v for k, v in stochastic.items()}
        return figures

    def save(self) -> Path:
        """A checkpoint of the fine-tuned policy, with all that a resume needs."""
        tree = {
            "updates": self.updates,
            **self.critic.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
        }
        return self.session.save(self.policy, tree, self.card)


# -- ``robopolicy finetune --algo fpo`` ----------------------------------------------------------


@register_algorithm(
    "fpo", FPOConfig, description="FPO/FPO++ flow policy gradients (fine-tunes a flow checkpoint)"
)
def finetune(
    config: FPOConfig,
    *,
    checkpoint: str | Path | None,
    rollouts: RolloutFactory,
    out: str | Path,
    card: dict[str, Any],
    progress: bool = True,
) -> dict[str, Any]:
    """FPO from a ``flow`` checkpoint (a behaviour-cloned policy); writes flow checkpoints."""
    if checkpoint is None:
        raise RobopolicyError("fpo fine-tunes a flow policy: give its checkpoint, not 'scratch'")
    policy = load_policy(checkpoint, device=config.device)
    if not isinstance(policy, FlowPolicy):
        raise RobopolicyError(f"fpo needs a flow checkpoint; {checkpoint} is {policy.type_name}")
    card = {**card, **origin_card(checkpoint, out, "fpo", "a flow checkpoint")}
    result = train(config, rollouts, out, policy=policy, card=card, progress=progress)
    return result.as_dict()
