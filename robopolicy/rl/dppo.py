"""DPPO (Ren et al., 2024): PPO through the denoising chain of a diffusion policy, one file.

Symbols (``../shared/DESIGN.md``): N envs, T decisions per env per iteration (``n_steps``), To
observation steps, Tp predicted and Ta executed actions per decision, Da action size, k denoising
steps of the sampler, K' = ``ft_denoising_steps`` fine-tuned steps (the last K' of the k), D = N·T
decisions per iteration.

**The two-level MDP.** Every denoising step ``x_i -> x_{i+1}`` of the chain is a Gaussian policy
step ``N(mean_i(x_i, obs), std_i^2)``; the environment's decision is the chain's last ``x``. The
reward of a decision reaches every denoising step of its chain, discounted by
``gamma_denoising^(K' - 1 - j)`` for fine-tuned step j = 0 … K'-1 (j = K'-1 the last, cleanest
step), so the policy gradient of one decision is a sum over its K' steps, each an ordinary PPO
term with the decision's advantage. Only the last K' steps are fine-tuned: a frozen copy of the
behaviour-cloned policy runs the first k − K' (their log-probabilities do not depend on the
weights being trained).

One iteration:

1. collect T decisions of N envs: :meth:`DiffusionPolicy.sample_chain` with the sampling std
   floored at ``min_sampling_denoising_std`` (exploration; DDIM runs with ``ddim_eta``), each
   standard-normal draw clipped to ±``randn_clip_value``, the frozen copy running the early
   steps. Kept per decision: the chain's last K' + 1 ``x`` (D, K'+1, Tp, Da) and each fine-tuned
   step's old log-probability (D, K');
2. rewards per decision (DPPO discounts once per decision, γ on the chunk's summed reward) or per
   environment step (``discount``), scaled by the running std of the discounted return;
3. values at decision boundaries, bootstrap after truncations, GAE → advantages and returns
   (:mod:`robopolicy.rl.advantages`);
4. ``update_epochs`` passes over the D·K' (decision, denoising step) pairs in shuffled
   minibatches of ``batch_size``: the new log-probability of each pair's step (batched forwards
   of the denoiser, ``forward_batch_size`` pairs each, their gradients accumulated), the ratio
   clipped to 1 ± ε_j, ε_j growing from ``clip_ploss_coef_base`` at j = 0 to
   ``clip_ploss_coef`` at j = K'-1 as ``(e^{rate·j/(K'-1)} − 1)/(e^rate − 1)``; advantages
   normalized per minibatch, then multiplied by the denoising discount (:func:`actor_step`);
   the critic takes one step per minibatch too; the update stops once a minibatch's
   approximate KL passes ``target_kl``. The first ``critic_warmup_iterations`` train the critic
   only;
5. log; evaluate with the deterministic sampler every ``eval_every`` iterations; checkpoint every
   ``checkpoint_every`` (layout and resume in :mod:`robopolicy.rl.runs`).

**Log-probabilities** are DPPO's: a step's std is the sampler's own (DDPM's posterior std, or
``eta`` times it for DDIM), floored at ``min_logprob_denoising_std``; per action element the
log-density is clipped to [-5, 2] (``logprob_clip``) and averaged over the executed actions
``[To - 1, To - 1 + Ta)`` of the chunk and Da (DPPO's ``reward_horizon``). The old values are
recorded at collection, with the same weights that the first minibatch recomputes them with
(DPPO recomputes them after collection; the numbers agree to float rounding).

**Evaluation** uses DPPO's deterministic sampler: DDPM's ancestral chain with the sampler's own
std (no floor where DPPO floors it at 1e-3; none on the last step), or DDIM with eta 0 — the
frozen copy running the first k − K' steps as in training. The checkpoint is an ordinary
``diffusion`` checkpoint with the fine-tuned weights and that sampler configured (``robopolicy
eval`` runs it with the fine-tuned weights at *every* step: identical to the evaluation here when
K' = k, close to it otherwise; ``eval_after_checkpoint`` in the report measures that policy too
when K' < k).

**Where this departs from DPPO's code** (``irom-princeton/dppo``, ``agent/finetune/
train_ppo_diffusion_agent.py``, ``model/diffusion/diffusion_ppo.py``): the critic takes its
minibatches over decisions (D / #minibatches each, every observation once per epoch) instead of
re-reading the observation of each (decision, step) pair up to K' times — the same number of
critic steps with the same expected gradient, at a tenth of the cost; env steps count what ran
(an episode that ends inside a chunk skips the chunk's remaining actions); the learning rates are
constant (DPPO's cosine schedules in its configs have ``min_lr = lr``); with K' = 1 the clip is
``clip_ploss_coef`` (DPPO's formula divides by K' − 1); evaluation is a separate set of
fixed-seed episodes rather than every tenth iteration's training rollouts.

Defaults are DPPO's Hopper fine-tuning (``cfg/gym/finetune/hopper-v2/ft_ppo_diffusion_mlp.yaml``:
40 envs × 500 decisions × Ta 4 = 80k env steps per iteration, k = 20, K' = 10, γ 0.99 per decision,
λ 0.95, lr 1e-4 / 1e-3, 5 epochs of 50k-pair minibatches, ε 0.01 throughout, σ floors 0.1, KL
stop 1). Its robomimic settings differ in ``update_epochs=10 clip_ploss_coef_base=0.001
gamma=0.999 batch_size=7500 critic_warmup_iterations=2``; its DDIM variant (furniture) is
``sampler=ddim denoising_steps=K' ft_denoising_steps=K' ddim_eta=1
min_sampling_denoising_std=0.04``.

**On arm-push** (``tests/rl/test_dppo.py``: a policy cloned on imperfect demonstrations, about
10% success, reward 1 on success only) those settings need far more than a CI budget, and the
cheaper ones tried were unreliable: with 20 to 32 envs per iteration, lr 1e-3 to 3e-3, K' = 5 of
10, a log-probability floor of 0.3 or sampling floors of 0.01 or 0.1, many seeds lost the few
successes within 15k steps and never found them again. The test's settings raised four of five
seeds within 80k steps (0.08 to 0.42, 0.28, 0.38, 0.44 and 0.03 over 200 episodes, seeds 0-4):
64 envs × 20 decisions per iteration (about six successes per batch at the start), two
critic-only iterations, lr 1e-3 with ε from 0.02 to 0.1 over 10 epochs of two minibatches (5
epochs lost a seed too), and the furniture configs' sampling floor 0.04 (with 0.1 the policy
came to rely on noise that the evaluation removes: 0.32 success while training against 0.15
evaluated). Halving the learning rate kept all five seeds but gained less (0.16 to 0.48).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from robopolicy.errors import RobopolicyError
from robopolicy.policies.checkpoint import load_policy
from robopolicy.policies.diffusion import DiffusionPolicy
from robopolicy.policies.diffusion.schedulers import gaussian_log_prob
from robopolicy.rl.advantages import (
    RewardScaler,
    batch_advantages,
    explained_variance,
    normalize,
)
from robopolicy.rl.dppo_config import RESUMABLE_CHANGES, DPPOConfig
from robopolicy.rl.registry import register_algorithm
from robopolicy.rl.rollout import Act, Obs, RolloutBatch, RolloutFactory
from robopolicy.rl.runs import episode_figures
from robopolicy.rl.session import RunResult, RunSession, mean, origin_card, torch_threads
from robopolicy.rl.value import ValueNetwork, value_loss

# -- the pieces of the objective -----------------------------------------------------------


def clip_schedule(ft_steps: int, base: float, final: float, rate: float) -> Tensor:
    """(K',) the ratio clip ε_j of fine-tuned step j: ``base`` at j = 0 growing exponentially
    to ``final`` at j = K' − 1; ``final`` when K' = 1."""
    if ft_steps == 1:
        return torch.tensor([final])
    t = torch.arange(ft_steps, dtype=torch.float64) / (ft_steps - 1)
    grown = base + (final - base) * torch.expm1(rate * t) / math.expm1(rate)
    return grown.float()


def denoising_discount(ft_steps: int, gamma_denoising: float) -> Tensor:
    """(K',) ``gamma_denoising^(K' - 1 - j)``: 1 for the last step, smaller for earlier ones."""
    return gamma_denoising ** torch.arange(ft_steps - 1, -1, -1, dtype=torch.float32)


def dppo_log_prob(per_element: Tensor, executed: slice, clip: tuple[float, float]) -> Tensor:
    """(B,) DPPO's log-probability of a denoising step from its per-element log-densities
    (B, Tp, Da): clipped to ``clip``, averaged over the executed actions and Da."""
    return per_element[:, executed].clamp(*clip).mean((1, 2))


def step_stds(policy: DiffusionPolicy, steps: int, sampler: str, eta: float) -> Tensor:
    """(k,) the std each step of the k-step sampler draws with, before any floor (it depends on
    the schedule only, never on the weights)."""
    timesteps = policy.scheduler.timesteps(steps)
    previous = policy.scheduler.previous(timesteps)
    zeros = torch.zeros((steps, policy.config.horizon, policy.config.action_dim))
    zeros = zeros.to(timesteps.device)
    _, std = policy.scheduler.step(zeros, zeros, timesteps, previous, sampler=sampler, eta=eta)
    return std


def executed_slice(policy: DiffusionPolicy) -> slice:
    """The actions of a chunk that run: ``[To - 1, To - 1 + Ta)``."""
    c = policy.config
    return slice(c.n_obs_steps - 1, c.n_obs_steps - 1 + c.n_action_steps)


def explore(
    policy: DiffusionPolicy,
    frozen: DiffusionPolicy | None,
    obs: Obs,
    config: DPPOConfig,
    steps: int,
    generator: torch.Generator | None = None,
) -> Act:
    """One exploring decision for N observations, without gradients.

    Returns the executed raw actions (N, Ta, Da) and, as extras, the chain's fine-tuned tail
    ``chain`` (N, K'+1, Tp, Da) — ``x`` entering each of the last K' steps, then the result — and
    ``log_prob`` (N, K'), each tail step's DPPO log-probability. ``frozen`` runs the first
    k - K' steps (None when K' = k).
    """
    ft, executed = config.ft_denoising_steps, executed_slice(policy)
    with torch.inference_mode():
        chain = policy.sample_chain(
            obs,
            steps=steps,
            sampler=config.sampler,
            eta=config.ddim_eta,
            min_std=config.min_sampling_denoising_std,
            logprob_min_std=config.min_logprob_denoising_std,
            noise_clip=config.randn_clip_value,
            frozen=frozen if ft < steps else None,
            finetune_steps=ft,
            generator=generator,
        )
        std = step_stds(policy, steps, config.sampler, config.ddim_eta)[steps - ft :]
        std = std.clamp(min=config.min_logprob_denoising_std)
        tail, n = chain.x[:, steps - ft :], chain.x.shape[0]
        per_element = gaussian_log_prob(
            tail[:, 1:].flatten(0, 1),
            chain.mean[:, steps - ft :].flatten(0, 1),
            std.repeat(n),
            reduce="none",
        )
        log_prob = dppo_log_prob(per_element, executed, config.logprob_clip).view(n, ft)
    return Act(chain.actions[:, executed], {"chain": tail, "log_prob": log_prob})


def step_log_prob(
    policy: DiffusionPolicy,
    obs: Obs,
    x_prev: Tensor,
    x_next: Tensor,
    index: Tensor,
    config: DPPOConfig,
    steps: int,
) -> Tensor:
    """(B,) DPPO log-probability of B stored denoising steps ``x_prev -> x_next`` (B, Tp, Da),
    step ``index`` (B,) of the k-step chain, under the current weights (with gradients)."""
    per_element = policy.chain_log_prob(
        obs,
        x_prev,
        x_next,
        index,
        steps=steps,
        sampler=config.sampler,
        eta=config.ddim_eta,
        min_std=config.min_logprob_denoising_std,
        reduce="none",
    )
    return dppo_log_prob(per_element, executed_slice(policy), config.logprob_clip)


def actor_step(
    policy: DiffusionPolicy,
    optimizer: torch.optim.Optimizer,
    config: DPPOConfig,
    obs: Obs,
    x_prev: Tensor,
    x_next: Tensor,
    index: Tensor,
    old_log_prob: Tensor,
    advantages: Tensor,
    clip: Tensor,
    steps: int,
) -> dict[str, float]:
    """One clipped-PPO step of the fine-tuned weights on a minibatch of B (decision, denoising
    step) pairs: the transitions ``x_prev -> x_next`` (B, Tp, Da) at chain index ``index`` (B,)
    with their old log-probabilities, (normalized, discounted) advantages and clip ε_j, each
    (B,). The minibatch's gradient accumulates over slices of ``forward_batch_size`` pairs.

    Returns the minibatch means of the loss (``policy``), the approximate KL ``E[(ρ − 1) − log
    ρ]`` (``kl``), the clipped fraction (``clipfrac``) and the ratio (``ratio``).
    """
    size = len(index)
    sums = dict.fromkeys(("policy", "kl", "clipfrac", "ratio"), 0.0)
    optimizer.zero_grad(set_to_none=True)
    for part in torch.arange(size, device=index.device).split(config.forward_batch_size):
        new_log_prob = step_log_prob(
            policy,
            {key: v[part] for key, v in obs.items()},
            x_prev[part],
            x_next[part],
            index[part],
            config,
            steps,
        )
        log_ratio = new_log_prob - old_log_prob[part]
        ratio, eps, adv = log_ratio.exp(), clip[part], advantages[part]
        clipped = torch.minimum(torch.maximum(ratio, 1 - eps), 1 + eps)
        loss = torch.max(-adv * ratio, -adv * clipped).sum()
        (loss / size).backward()
        with torch.no_grad():
            sums["policy"] += float(loss)
            sums["kl"] += float(((ratio - 1) - log_ratio).sum())
            sums["clipfrac"] += float(((ratio - 1).abs() > eps).sum())
            sums["ratio"] += float(ratio.sum())
    if config.max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
    optimizer.step()
    return {name: total / size for name, total in sums.items()}


# -- the run ----------------------------------------------------------------------------------


def train(
    config: DPPOConfig,
    rollouts: RolloutFactory,
    out: str | Path,
    *,
    policy: DiffusionPolicy | None = None,
    card: dict[str, Any] | None = None,
    progress: bool = True,
) -> RunResult:
    """Fine-tune ``policy`` (a behaviour-cloned diffusion policy) with DPPO into ``out``,
    resuming from its ``latest`` checkpoint when there is one (``policy`` may then be None).

    The result's ``extra`` holds ``eval_after_checkpoint``: the saved checkpoint's own policy
    (fine-tuned weights at every step), measured at the end when K' < k; ``eval_after``
    otherwise."""
    with torch_threads(config.torch_threads):
        return _train(config, rollouts, Path(out), policy, dict(card or {}), progress)


def _train(
    config: DPPOConfig,
    rollouts: RolloutFactory,
    out: Path,
    policy: DiffusionPolicy | None,
    card: dict[str, Any],
    progress: bool,
) -> RunResult:
    session = RunSession("dppo", out, config, RESUMABLE_CHANGES, DiffusionPolicy)
    state = session.state
    if session.finished:
        return session.result(eval_after_checkpoint=dict(state["eval_after_checkpoint"]))
    device = torch.device(config.device)

    # -- the policy, its frozen copy ---------------------------------------------------------
    torch.manual_seed(config.seed)
    policy = session.policy or policy
    if policy is None:
        raise RobopolicyError("dppo fine-tunes a diffusion policy: give a checkpoint")
    if not isinstance(policy, DiffusionPolicy):
        raise RobopolicyError(f"dppo fine-tunes a diffusion policy, not {type(policy).__name__}")
    if policy.config.image_keys:
        raise RobopolicyError("dppo's critic reads low-dimensional observations only")
    policy = policy.to(device).train()
    policy.normalizer.to(device)
    c = policy.config
    k = config.denoising_steps or c.inference_steps
    ft = config.ft_denoising_steps
    if k > c.num_train_timesteps or ft > k:
        raise RobopolicyError(
            f"need ft_denoising_steps ({ft}) <= denoising_steps ({k}) <= the policy's "
            f"{c.num_train_timesteps} train timesteps"
        )
    # the checkpoint's own sampler becomes the deterministic one evaluated here
    policy.set_sampler(config.sampler, steps=k, eta=0.0)
    frozen = copy.deepcopy(policy).eval().requires_grad_(False)
    if state is not None:
        frozen.load_state_dict(state["frozen"])
    collector, evaluate = session.rollouts(rollouts, c)
    try:
        # -- the critic, optimizers, statistics --------------------------------------------------
        value = ValueNetwork(
            config.value, obs_keys=c.obs_keys, n_obs_steps=c.n_obs_steps, state_dim=c.state_dim
        ).to(device)
        fused = device.type in ("cpu", "cuda")
        actor_optimizer = torch.optim.Adam(policy.parameters(), lr=config.actor_lr, fused=fused)
        critic_optimizer = torch.optim.Adam(value.parameters(), lr=config.critic_lr, fused=fused)
        scaler = RewardScaler(config.num_envs, config.gamma, clip=config.reward_clip)
        generator = torch.Generator(device).manual_seed(config.seed)
        eval_after_checkpoint: dict[str, float] = {}
        if state is not None:
            value.load_state_dict(state["value"])
            actor_optimizer.load_state_dict(state["actor_optimizer"])
            critic_optimizer.load_state_dict(state["critic_optimizer"])
            scaler.stats.load_state_dict(state["reward_stats"])  # per-env returns restart at 0
            generator.set_state(state["generator"])

        # -- acting ------------------------------------------------------------------------------
        executed = executed_slice(policy)
        first_ft = k - ft  # index of the first fine-tuned step in the k-step chain
        timing = {"act": 0.0, "critic": 0.0}

        def act(obs: Obs) -> Act:
            """The exploring policy (:func:`explore`), timed."""
            tick = time.perf_counter()
            obs = {key: obs[key].to(device) for key in c.obs_keys}
            out = explore(policy, frozen, obs, config, k, generator)
            timing["act"] += time.perf_counter() - tick
            return out

        def act_deterministic(obs: Obs, *, composite: bool = True) -> Act:
            """DPPO's deterministic sampler (ancestral DDPM, or DDIM with eta 0); the frozen copy
            runs the early steps unless ``composite`` is False."""
            obs = {key: obs[key].to(device) for key in c.obs_keys}
            with torch.inference_mode():
                split = composite and ft < k
                chain = policy.sample_chain(
                    obs,
                    steps=k,
                    sampler=config.sampler,
                    eta=0.0,
                    min_std=0.0,
                    frozen=frozen if split else None,
                    finetune_steps=ft if split else None,
                    generator=generator,
                )
            return Act(chain.actions[:, executed], {})

        def evaluation(*, composite: bool = True) -> dict[str, float]:
            policy.eval()
            # evaluation draws from its own generator, so it does not shift training's noise
            saved = generator.get_state()
            generator.manual_seed(config.eval_seed)
            figures = evaluate(lambda obs: act_deterministic(obs, composite=composite))
            generator.set_state(saved)
            policy.train()
            return figures

        def save() -> Path:
            tree = {
                "value": value.state_dict(),
                "frozen": frozen.state_dict(),
                "actor_optimizer": actor_optimizer.state_dict(),
                "critic_optimizer": critic_optimizer.state_dict(),
                "reward_stats": scaler.stats.state_dict(),
                "generator": generator.get_state(),
                "eval_after_checkpoint": eval_after_checkpoint,  # set by the final iteration
            }
            facts = {"dppo": {"denoising_steps": k, "ft_denoising_steps": ft}}
            return session.save(policy, tree, card | facts)

        # -- the loop ----------------------------------------------------------------------------
        session.start(evaluation, progress=progress)
        clip_eps = clip_schedule(
            ft, config.clip_ploss_coef_base, config.clip_ploss_coef, config.clip_ploss_coef_rate
        ).to(device)
        discount = denoising_discount(ft, config.gamma_denoising).to(device)
        while session.running:
            tick = time.perf_counter()

            # 1. collect
            if config.reset_every_iteration:
                collector.reset(config.seed + 1000 * config.num_envs * session.iteration)
                scaler.returns.zero_()
            timing.update(act=0.0, critic=0.0)
            policy.eval()
            batch = collector.collect(act, config.n_steps).to(device)
            policy.train()
            collected = time.perf_counter()
            session.collected(batch.env_steps)

            # 2-3. rewards, values, advantages (a chunk is one step of DPPO's MDP: its summed
            # reward, γ once; or γ per environment step)
            advantages, returns, values = batch_advantages(
                per_decision(batch) if config.discount == "decision" else batch,
                lambda obs: value.batched(obs, policy.normalizer),
                gamma=config.gamma,
                lam=config.gae_lambda,
                scaler=scaler if config.reward_scaling else None,
            )
            advantaged = time.perf_counter()

            # 4. minibatch epochs over (decision, denoising step) pairs
            obs = {key: batch.obs[key].flatten(0, 1) for key in c.obs_keys}
            chains = batch.extras["chain"].flatten(0, 1)  # (D, K'+1, Tp, Da)
            old_log_prob = batch.extras["log_prob"].flatten(0, 1)  # (D, K')
            decisions = chains.shape[0]
            pairs = decisions * ft
            n_minibatches = max(1, pairs // config.batch_size)
            minibatch = min(config.batch_size, pairs)
            warmup = session.iteration <= config.critic_warmup_iterations
            stats: dict[str, list[float]] = {
                k_: [] for k_ in ("policy", "value", "kl", "clipfrac", "ratio")
            }
            stopped = False
            for _ in range(config.update_epochs):
                order = torch.randperm(pairs, generator=generator, device=device)
                critic_order = torch.randperm(decisions, generator=generator, device=device)
                critic_parts = critic_order.tensor_split(n_minibatches)
                for b in range(n_minibatches):
                    rows = order[b * minibatch : (b + 1) * minibatch]
                    d, j = rows // ft, rows % ft
                    if not warmup:  # the actor; advantages normalized, then discounted
                        adv = normalize(advantages[d]) if config.norm_adv else advantages[d]
                        figures = actor_step(
                            policy,
                            actor_optimizer,
                            config,
                            {key: v[d] for key, v in obs.items()},
                            chains[d, j],
                            chains[d, j + 1],
                            j + first_ft,
                            old_log_prob[d, j],
                            adv * discount[j],
                            clip_eps[j],
                            k,
                        )
                        for name, figure in figures.items():
                            stats[name].append(figure)
                    # the critic: its own minibatch of decisions
                    critic_tick = time.perf_counter()
                    vrows = critic_parts[b]
                    critic_loss = value_loss(
                        value({key: v[vrows] for key, v in obs.items()}, policy.normalizer),
                        returns[vrows],
                        old=values[vrows],
                        clip=config.clip_vloss_coef,
                    )
                    critic_optimizer.zero_grad(set_to_none=True)
                    (config.vf_coef * critic_loss).backward()
                    critic_optimizer.step()
                    timing["critic"] += time.perf_counter() - critic_tick
                    stats["value"].append(float(critic_loss.detach()))
                    if not warmup and config.target_kl is not None:
                        stopped = stats["kl"][-1] > config.target_kl
                        if stopped:
                            break
                if stopped:
                    break
            updated = time.perf_counter()

            # 5. log, evaluate, checkpoint
            scalars = episode_figures(batch) | {
                "loss/policy": mean(stats["policy"]),
                "loss/value": mean(stats["value"]),
                "loss/approx_kl": mean(stats["kl"]),
                "loss/clipfrac": mean(stats["clipfrac"]),
                "loss/ratio": mean(stats["ratio"]),
                "loss/explained_variance": explained_variance(values, returns),
                "loss/kl_stop": float(stopped),
                "train/reward_scale": float(scaler.stats.std) if config.reward_scaling else 1.0,
                "time/iteration_s": updated - tick,
                "time/env_steps_per_s": batch.env_steps / (updated - tick),
                "time/collect_s": collected - tick,
                "time/collect_policy_s": timing["act"],
                "time/collect_env_s": collected - tick - timing["act"],
                "time/advantages_s": advantaged - collected,
                "time/update_s": updated - advantaged,
                "time/update_critic_s": timing["critic"],
            }
            if session.due(config.eval_every):
                scalars |= session.evaluated(evaluation())
            if session.final:
                eval_after_checkpoint = (
                    evaluation(composite=False) if ft < k else dict(session.eval_after)
                )
                scalars |= {f"eval_checkpoint/{k}": v for k, v in eval_after_checkpoint.items()}
            scalars["time/eval_s"] = time.perf_counter() - updated
            session.log(batch.env_steps, scalars)
            if session.due(config.checkpoint_every):
                save()
        session.close(save, task=card.get("task"))
    finally:
        collector.close()
        evaluate.close()
    return session.result(eval_after_checkpoint=eval_after_checkpoint)


def per_decision(batch: RolloutBatch) -> RolloutBatch:
    """``batch`` with each chunk one step: its rewards summed undiscounted (DPPO's MDP)."""
    return dataclasses.replace(
        batch,
        rewards=(batch.rewards * batch.executed).sum(-1, keepdim=True),
        executed=torch.ones_like(batch.executed[..., :1]),
        dones=batch.dones.any(-1, keepdim=True),
    )


# -- ``robopolicy finetune --algo dppo`` ---------------------------------------------------------


@register_algorithm(
    "dppo", DPPOConfig, description="DPPO: PPO through the denoising chain of a diffusion policy"
)
def finetune(
    config: DPPOConfig,
    *,
    checkpoint: str | Path | None,
    rollouts: RolloutFactory,
    out: str | Path,
    card: dict[str, Any],
    progress: bool = True,
) -> dict[str, Any]:
    """DPPO from the ``diffusion`` checkpoint ``checkpoint`` (a run in ``out`` resumes)."""
    policy = None
    if checkpoint is not None:
        policy = load_policy(checkpoint, device=config.device)
        if not isinstance(policy, DiffusionPolicy):
            raise RobopolicyError(
                f"{checkpoint} is a {policy.type_name} policy; dppo fine-tunes diffusion policies"
            )
    card = {**card, **origin_card(checkpoint, out, "dppo", "a diffusion checkpoint")}
    result = train(config, rollouts, out, policy=policy, card=card, progress=progress)
    return result.as_dict()
