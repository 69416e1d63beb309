"""FPO: flow-matching policy gradients for a FlowPolicy, in one file, top to bottom.

McAllister et al., 2025, "Flow Matching Policy Gradients" (arXiv 2507.21053) with the changes of
its follow-up, Yi, Choi et al., 2026, "Flow Policy Gradients for Robot Control" (FPO++, arXiv
2602.02481). PPO's likelihood ratio, which a flow policy cannot compute, is replaced by a ratio of
conditional-flow-matching (CFM) losses at fixed (noise, time) pairs.

Symbols (``../shared/DESIGN.md``): N envs, T decisions per env per iteration (``n_steps``), To
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
with any step count (``sampler``/``sampling_steps``, ``eval_sampler``/``eval_steps``), and the
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
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from robopolicy.errors import RobopolicyError
from robopolicy.policies.checkpoint import load_policy
from robopolicy.policies.flow import FlowPolicy
from robopolicy.rl.advantages import RewardScaler, batch_advantages, explained_variance, normalize
from robopolicy.rl.fpo_config import RESUMABLE_CHANGES, FPOConfig
from robopolicy.rl.registry import register_algorithm
from robopolicy.rl.rollout import Act, Obs, RolloutFactory
from robopolicy.rl.runs import episode_figures
from robopolicy.rl.session import RunResult, RunSession, mean, origin_card, torch_threads
from robopolicy.rl.value import ValueNetwork, value_loss

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
    x = policy.integrate(cond, noise.to(cond.device, torch.float32), steps=steps, method=method)
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
    with torch_threads(config.torch_threads):
        return _train(config, rollouts, Path(out), policy, dict(card or {}), progress)


def _train(
    config: FPOConfig,
    rollouts: RolloutFactory,
    out: Path,
    policy: FlowPolicy,
    card: dict[str, Any],
    progress: bool,
) -> RunResult:
    if not isinstance(policy, FlowPolicy):
        raise RobopolicyError(f"fpo fine-tunes a flow policy, not a {type(policy).__name__}")
    c = policy.config
    if not c.obs_keys:
        raise RobopolicyError("fpo's critic needs low-dimensional observation keys")
    session = RunSession("fpo", out, config, RESUMABLE_CHANGES, FlowPolicy)
    if session.finished:
        return session.result()
    device = torch.device(config.device)
    anchor = torch.cat([p.detach().flatten() for p in policy.parameters()]).to(device)
    # a copy: the caller's stays as it was; eval mode: no stochastic layers, so old and new
    # losses compare alike
    policy = (session.policy or copy.deepcopy(policy)).to(device).eval()
    policy.normalizer.to(device)
    state = session.state
    first, ta, tp, da = c.n_obs_steps - 1, c.n_action_steps, c.horizon, c.action_dim
    collector, evaluate = session.rollouts(rollouts, c)
    try:
        # -- the critic, optimizer and statistics ----------------------------------------------
        torch.manual_seed(config.seed)
        value = ValueNetwork(
            config.value, obs_keys=c.obs_keys, n_obs_steps=c.n_obs_steps, state_dim=c.state_dim
        ).to(device)
        actor_params, critic_params = list(policy.parameters()), list(value.parameters())
        optimizer = torch.optim.Adam(
            [
                {"params": actor_params, "lr": config.learning_rate},
                {"params": critic_params, "lr": config.value_learning_rate},
            ],
            eps=1e-5,
        )
        scaler = RewardScaler(config.num_envs, config.gamma, clip=config.reward_clip)
        generator = torch.Generator().manual_seed(config.seed)
        updates = 0
        if state is not None:
            value.load_state_dict(state["value"])
            optimizer.load_state_dict(state["optimizer"])
            scaler.stats.load_state_dict(state["reward_stats"])  # per-env returns restart at 0
            generator.set_state(state["generator"])
            updates = int(state["updates"])
        keys = (*c.obs_keys, *c.image_keys)

        # -- acting ------------------------------------------------------------------------------
        def act(obs: Obs) -> Act:
            """The stochastic policy (random initial noise), and the S (eps, t) pairs per chunk."""
            obs = {k: obs[k].to(device) for k in keys}
            n = obs[keys[0]].shape[0]
            noise = torch.randn((n, tp, da), generator=generator)
            eps = torch.randn((n, config.n_samples, tp, da), generator=generator)
            t = c.min_time + (1 - c.min_time) * torch.rand(
                (n, config.n_samples), generator=generator
            )
            with torch.no_grad():
                chunk = integrate_chunk(
                    policy, obs, noise, steps=config.sampling_steps, method=config.sampler
                )
            return Act(chunk[:, first : first + ta], {"chunk": chunk, "eps": eps, "t": t})

        def acting_with(draw: Any) -> Any:
            def act_eval(obs: Obs) -> Act:
                obs = {k: obs[k].to(device) for k in keys}
                noise = draw(obs[keys[0]].shape[0])
                with torch.no_grad():
                    chunk = integrate_chunk(
                        policy, obs, noise, steps=config.eval_steps, method=config.eval_sampler
                    )
                return Act(chunk[:, first : first + ta], {})

            return act_eval

        def evaluation() -> dict[str, float]:
            """Zero-noise figures; with ``eval_stochastic``, ``stochastic_*`` ones as well (the
            noise seeded alike at every evaluation)."""
            figures = evaluate(acting_with(lambda n: torch.zeros(n, tp, da)))
            if config.eval_stochastic:
                noise = torch.Generator().manual_seed(config.eval_seed)
                stochastic = evaluate(
                    acting_with(lambda n: torch.randn(n, tp, da, generator=noise))
                )
                figures |= {f"stochastic_{k}": v for k, v in stochastic.items()}
            return figures

        def save() -> Path:
            tree = {
                "updates": updates,
                "value": value.state_dict(),
                "optimizer": optimizer.state_dict(),
                "reward_stats": scaler.stats.state_dict(),
                "generator": generator.get_state(),
            }
            return session.save(policy, tree, card)

        # -- the loop ----------------------------------------------------------------------------
        session.start(evaluation, progress=progress)
        decisions = config.num_envs * config.n_steps
        minibatch = math.ceil(decisions / config.num_minibatches)
        while session.running:
            tick = time.perf_counter()

            # 1. collect
            batch = collector.collect(act, config.n_steps).to(device)
            session.collected(batch.env_steps)
            collected = time.perf_counter()

            # 2-3. rewards, values, advantages (normalized over the whole batch)
            advantages, returns, values = batch_advantages(
                batch,
                lambda obs: value.batched(obs, policy.normalizer),
                gamma=config.gamma,
                lam=config.gae_lambda,
                scaler=scaler if config.reward_scaling else None,
            )
            if config.norm_adv:
                advantages = normalize(advantages)
            obs = {k: batch.obs[k].flatten(0, 1) for k in keys}
            pairs = {k: batch.extras[k].flatten(0, 1) for k in ("chunk", "eps", "t")}

            # 4. the old per-pair losses, in the first epoch's minibatches
            first_order = torch.randperm(decisions, generator=generator).to(device).split(minibatch)
            old_losses = torch.empty(decisions, config.n_samples, device=device)
            with torch.no_grad():
                for rows in first_order:
                    old_losses[rows] = batch_losses(policy, obs, pairs, rows, config)
            prepared = time.perf_counter()

            # 5. minibatch epochs
            warmup = session.iteration <= config.critic_warmup_iterations
            stats: dict[str, list[float]] = {
                k: [] for k in ("policy", "value", "kl", "clipfrac", "ratio_min", "ratio_max")
            }
            first_error, stopped, epochs = math.nan, False, 0
            for epoch in range(config.update_epochs):
                order = (
                    first_order
                    if epoch == 0
                    else torch.randperm(decisions, generator=generator).to(device).split(minibatch)
                )
                for rows in order:
                    log_ratio = fpo_log_ratio(
                        old_losses[rows],
                        batch_losses(policy, obs, pairs, rows, config),
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
                        ratio,
                        advantages[rows],
                        clip=config.clip_coef,
                        trust_region=config.trust_region,
                    )
                    policy_loss = -psi.mean()
                    critic_loss = value_loss(
                        value({k: v[rows] for k, v in obs.items()}, policy.normalizer),
                        returns[rows],
                    )
                    loss = config.value_coef * critic_loss + (0 if warmup else policy_loss)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if config.max_grad_norm is not None:
                        torch.nn.utils.clip_grad_norm_(actor_params, config.max_grad_norm)
                        torch.nn.utils.clip_grad_norm_(critic_params, config.max_grad_norm)
                    optimizer.step()
                    updates += 1
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
            updated = time.perf_counter()

            # 6. log, evaluate, checkpoint
            params = torch.cat([p.detach().flatten() for p in policy.parameters()])
            scalars = episode_figures(batch) | {
                "loss/policy": mean(stats["policy"]),
                "loss/value": mean(stats["value"]),
                "loss/approx_kl": mean(stats["kl"]),
                "loss/clipfrac": mean(stats["clipfrac"]),
                "loss/ratio_min": min(stats["ratio_min"], default=math.nan),
                "loss/ratio_max": max(stats["ratio_max"], default=math.nan),
                "loss/first_ratio_error": first_error,
                "loss/explained_variance": explained_variance(values, returns),
                "loss/kl_stop": float(stopped),
                "loss/epochs": float(epochs),
                "train/cfm_loss": float(old_losses.mean()),
                "train/drift": float((params - anchor).norm() / anchor.norm()),
                "train/updates": float(updates),
                "train/reward_scale": float(scaler.stats.std) if config.reward_scaling else 1.0,
                "time/iteration_s": updated - tick,
                "time/env_steps_per_s": batch.env_steps / (updated - tick),
                "time/collect_s": collected - tick,
                "time/prepare_s": prepared - collected,
                "time/update_s": updated - prepared,
            }
            if session.due(config.eval_every):
                scalars |= session.evaluated(evaluation())
            scalars["time/eval_s"] = time.perf_counter() - updated
            session.log(batch.env_steps, scalars)
            if session.due(config.checkpoint_every):
                save()
        session.close(save, task=card.get("task"))
    finally:
        collector.close()
        evaluate.close()
    return session.result()


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
