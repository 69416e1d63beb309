"""DPPO (Ren et al., 2024): PPO through the denoising chain of a diffusion policy, one file.

Symbols (``docs/DESIGN.md``): N envs, T decisions per env per iteration (``n_steps``), To
observation steps, Tp predicted and Ta executed actions per decision, Da action size, k = ``steps``
denoising steps of the sampler per decision, K' = ``finetune_steps`` fine-tuned steps (the last K'
of the k), D = N·T decisions per iteration.

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
   normalized per minibatch, then multiplied by the denoising discount
   (:meth:`DPPORun.actor_step`);
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

Defaults and the ``arm-push`` settings, with their sources: :mod:`robopolicy.rl.dppo_config`.
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
from robopolicy.policies.diffusion import DiffusionPolicy
from robopolicy.rl.advantages import explained_variance, normalize, per_decision
from robopolicy.rl.dppo_config import RESUMABLE_CHANGES, DPPOConfig
from robopolicy.rl.registry import register_algorithm
from robopolicy.rl.rollout import (
    Act,
    Evaluator,
    Obs,
    RolloutBatch,
    RolloutCollector,
    RolloutFactory,
    executed_slice,
)
from robopolicy.rl.runs import episode_figures
from robopolicy.rl.session import RunResult, RunSession, mean, origin_card, torch_threads
from robopolicy.rl.value import Critic, value_loss
from robopolicy.sampling.samplers import gaussian_log_prob, step_std

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
    abar = policy.process.abars(policy.chain_levels(steps, sampler))
    return step_std(abar[:-1], abar[1:], sampler=sampler, eta=eta)


def explore(
    policy: DiffusionPolicy,
    frozen: DiffusionPolicy | None,
    obs: Obs,
    config: DPPOConfig,
    steps: int,
    generator: torch.Generator | None = None,
) -> Act:
    """One exploring decision for N observations (step 1), without gradients: the executed raw
    actions (N, Ta, Da) and, as extras, the chain's fine-tuned tail ``chain`` (N, K'+1, Tp, Da)
    (``x`` entering each of the last K' steps, then the result) and ``log_prob`` (N, K'), each
    tail step's DPPO log-probability. ``frozen`` runs the first k - K' steps."""
    ft, executed = config.finetune_steps, executed_slice(policy)
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


# -- the run ----------------------------------------------------------------------------------

STATISTICS = ("policy", "value", "approx_kl", "clipfrac", "ratio")
"""What the update records per minibatch, logged as ``loss/<name>`` (means over the iteration)."""


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
        session = RunSession("dppo", out, config, RESUMABLE_CHANGES, DiffusionPolicy)
        if session.finished:
            measured = session.state["eval_after_checkpoint"]
            return session.result(eval_after_checkpoint=dict(measured))
        torch.manual_seed(config.seed)
        policy = session.policy or policy
        if policy is None:
            raise RobopolicyError("dppo fine-tunes a diffusion policy: give a checkpoint")
        if not isinstance(policy, DiffusionPolicy):
            raise RobopolicyError(
                f"dppo fine-tunes a diffusion policy, not {type(policy).__name__}"
            )
        if policy.config.image_keys:
            raise RobopolicyError("dppo's critic reads low-dimensional observations only")
        policy = policy.to(config.device).train()
        policy.normalizer.to(config.device)
        c, ft = policy.config, config.finetune_steps
        k = config.steps or c.steps
        if k > c.num_train_timesteps or ft > k:
            raise RobopolicyError(
                f"need finetune_steps ({ft}) <= steps ({k}) <= the policy's "
                f"{c.num_train_timesteps} train timesteps"
            )
        policy.set_sampler(config.sampler, steps=k, eta=0.0)  # the evaluated, saved sampler
        with session.rollouts(rollouts, c) as (collector, evaluator):
            run = DPPORun(session, policy, evaluator, dict(card or {}))
            run.loop(collector, progress)
        return session.result(eval_after_checkpoint=run.eval_after_checkpoint)


class DPPORun:
    """One invocation of a DPPO run: the critic, optimizers and generator (restored when
    resuming) beside the policy, and the steps 1-5 of an iteration, which :meth:`loop` runs."""

    def __init__(
        self, session: RunSession, policy: DiffusionPolicy, evaluator: Evaluator, card: dict
    ) -> None:
        self.session, self.policy, self.evaluator, self.card = session, policy, evaluator, card
        self.config = c = session.config
        self.device = device = torch.device(c.device)
        self.k, self.ft = policy.config.steps, c.finetune_steps
        self.executed = executed_slice(policy)
        self.frozen = copy.deepcopy(policy).eval().requires_grad_(False)  # runs the first k − K'
        self.critic = Critic(c, policy.config, device)
        adam = functools.partial(torch.optim.Adam, fused=device.type in ("cpu", "cuda"))
        self.actor_optimizer = adam(policy.parameters(), lr=c.actor_lr)
        self.critic_optimizer = adam(self.critic.net.parameters(), lr=c.critic_lr)
        self.generator = torch.Generator(device).manual_seed(c.seed)
        self.clip = clip_schedule(
            self.ft, c.clip_ploss_coef_base, c.clip_ploss_coef, c.clip_ploss_coef_rate
        ).to(device)
        self.discount = denoising_discount(self.ft, c.gamma_denoising).to(device)
        self.timing = {"act": 0.0, "critic": 0.0}
        self.eval_after_checkpoint: dict[str, float] = {}  # measured by the last iteration
        if session.state is not None:
            self.frozen.load_state_dict(session.state["frozen"])
            self.critic.load_state_dict(session.state)
            self.actor_optimizer.load_state_dict(session.state["actor_optimizer"])
            self.critic_optimizer.load_state_dict(session.state["critic_optimizer"])
            self.generator.set_state(session.state["generator"])

    def loop(self, collector: RolloutCollector, progress: bool) -> None:
        """Iterations until the budget is met, then the last checkpoint and the curves."""
        session, cadence, timing = self.session, self.config.cadence, self.timing
        session.start(self.evaluation, progress=progress)
        while session.running:
            tick = time.perf_counter()
            batch = self.collect(collector)
            collected = time.perf_counter()
            session.collected(batch.env_steps)
            advantages, returns, values = self.advantages(batch)
            advantaged = time.perf_counter()
            stats, stopped = self.update(batch, advantages, returns, values)
            updated = time.perf_counter()

            # 5. log, evaluate, checkpoint
            scalars = episode_figures(batch) | {f"loss/{n}": mean(v) for n, v in stats.items()}
            scalars |= {
                "loss/explained_variance": explained_variance(values, returns),
                "loss/kl_stop": float(stopped),
                "train/reward_scale": self.critic.reward_scale,
                "time/iteration_s": updated - tick,
                "time/env_steps_per_s": batch.env_steps / (updated - tick),
                "time/collect_s": collected - tick,
                "time/collect_policy_s": timing["act"],
                "time/collect_env_s": collected - tick - timing["act"],
                "time/advantages_s": advantaged - collected,
                "time/update_s": updated - advantaged,
                "time/update_critic_s": timing["critic"],
            }
            if session.due(cadence.eval_every):
                scalars |= session.evaluated(self.evaluation())
            if session.final:  # the checkpoint's own policy: the evaluated one when K' = k
                same = self.ft == self.k
                after = session.eval_after if same else self.evaluation(composite=False)
                self.eval_after_checkpoint = dict(after)
                scalars |= {f"eval_checkpoint/{key}": v for key, v in after.items()}
            scalars["time/eval_s"] = time.perf_counter() - updated
            session.log(batch.env_steps, scalars)
            if session.due(cadence.checkpoint_every):
                self.save()
        session.close(self.save, task=self.card.get("task"))

    def collect(self, collector: RolloutCollector) -> RolloutBatch:
        """1. T decisions of the N envs (on fresh episodes with ``reset_every_iteration``)."""
        config = self.config
        if config.reset_every_iteration:
            collector.reset(config.seed + 1000 * config.num_envs * self.session.iteration)
            self.critic.scaler.returns.zero_()
        self.timing.update(act=0.0, critic=0.0)
        self.policy.eval()
        batch = collector.collect(self.act, config.n_steps).to(self.device)
        self.policy.train()
        return batch

    def act(self, obs: Obs) -> Act:
        """The exploring policy (:func:`explore`), timed."""
        tick = time.perf_counter()
        obs = {key: obs[key].to(self.device) for key in self.policy.config.obs_keys}
        out = explore(self.policy, self.frozen, obs, self.config, self.k, self.generator)
        self.timing["act"] += time.perf_counter() - tick
        return out

    def advantages(self, batch: RolloutBatch) -> tuple[Tensor, Tensor, Tensor]:
        """2-3. Advantages, returns and values, over decisions or env steps (``discount``)."""
        decisions = per_decision(batch) if self.config.discount == "decision" else batch
        return self.critic.advantages(decisions, self.policy.normalizer)

    def update(
        self, batch: RolloutBatch, advantages: Tensor, returns: Tensor, values: Tensor
    ) -> tuple[dict[str, list[float]], bool]:
        """4. Each minibatch's figures, and whether a minibatch's KL stopped the update."""
        config, ft, device, generator = self.config, self.ft, self.device, self.generator
        obs = {key: batch.obs[key].flatten(0, 1) for key in self.policy.config.obs_keys}
        chains = batch.extras["chain"].flatten(0, 1)  # (D, K'+1, Tp, Da)
        old_log_prob = batch.extras["log_prob"].flatten(0, 1)  # (D, K')
        decisions, pairs = chains.shape[0], chains.shape[0] * ft
        n_minibatches = max(1, pairs // config.batch_size)
        minibatch = min(config.batch_size, pairs)
        warmup = self.session.iteration <= config.critic_warmup_iterations
        stats: dict[str, list[float]] = {name: [] for name in STATISTICS}
        limit = math.inf if warmup or config.target_kl is None else config.target_kl
        for _ in range(config.update_epochs):
            order = torch.randperm(pairs, generator=generator, device=device)
            critic_order = torch.randperm(decisions, generator=generator, device=device)
            critic_parts = critic_order.tensor_split(n_minibatches)
            for b in range(n_minibatches):
                rows = order[b * minibatch : (b + 1) * minibatch]
                d, j = rows // ft, rows % ft
                if not warmup:  # the actor
                    adv = normalize(advantages[d]) if config.norm_adv else advantages[d]
                    figures = self.actor_step(obs, chains, old_log_prob, d, j, adv)
                    for name, figure in figures.items():
                        stats[name].append(figure)
                stats["value"].append(self.critic_step(obs, critic_parts[b], returns, values))
                if stats["approx_kl"] and stats["approx_kl"][-1] > limit:
                    return stats, True  # the KL stop
        return stats, False

    def actor_step(
        self, obs: Obs, chains: Tensor, old_log_prob: Tensor, d: Tensor, j: Tensor, adv: Tensor
    ) -> dict[str, float]:
        """A clipped-PPO step on B pairs (decision d, fine-tuned step j) (B,) with advantages
        ``adv`` (B,), discounted here; the minibatch's mean loss, approximate KL
        ``E[(ρ − 1) − log ρ]``, clipped fraction and ratio."""
        config, size = self.config, len(d)
        sums = dict.fromkeys(("policy", "approx_kl", "clipfrac", "ratio"), 0.0)
        self.actor_optimizer.zero_grad(set_to_none=True)
        for part in torch.arange(size, device=d.device).split(config.forward_batch_size):
            dp, jp = d[part], j[part]
            new_log_prob = step_log_prob(
                self.policy,
                {key: v[dp] for key, v in obs.items()},
                chains[dp, jp],
                chains[dp, jp + 1],
                jp + self.k - self.ft,  # the step's index in the k-step chain
                config,
                self.k,
            )
            log_ratio = new_log_prob - old_log_prob[dp, jp]
            ratio, eps, a = log_ratio.exp(), self.clip[jp], adv[part] * self.discount[jp]
            clipped = torch.minimum(torch.maximum(ratio, 1 - eps), 1 + eps)
            loss = torch.max(-a * ratio, -a * clipped).sum()
            (loss / size).backward()
            with torch.no_grad():
                sums["policy"] += float(loss)
                sums["approx_kl"] += float(((ratio - 1) - log_ratio).sum())
                sums["clipfrac"] += float(((ratio - 1).abs() > eps).sum())
                sums["ratio"] += float(ratio.sum())
        if config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.policy.parameters(), config.max_grad_norm)
        self.actor_optimizer.step()
        return {name: total / size for name, total in sums.items()}

    def critic_step(self, obs: Obs, rows: Tensor, returns: Tensor, values: Tensor) -> float:
        """One step of the critic on the decisions ``rows``, timed; returns its loss."""
        tick = time.perf_counter()
        loss = value_loss(
            self.critic.net({key: v[rows] for key, v in obs.items()}, self.policy.normalizer),
            returns[rows],
            old=values[rows],
            clip=self.config.clip_vloss_coef,
        )
        self.critic_optimizer.zero_grad(set_to_none=True)
        (self.config.vf_coef * loss).backward()
        self.critic_optimizer.step()
        self.timing["critic"] += time.perf_counter() - tick
        return float(loss.detach())

    def act_deterministic(self, obs: Obs, *, composite: bool = True) -> Act:
        """DPPO's deterministic sampler, the frozen copy running the first k − K' steps when
        ``composite`` (module docstring)."""
        obs = {key: obs[key].to(self.device) for key in self.policy.config.obs_keys}
        split = composite and self.ft < self.k
        with torch.inference_mode():
            chain = self.policy.sample_chain(
                obs,
                steps=self.k,
                sampler=self.config.sampler,
                eta=0.0,
                min_std=0.0,
                frozen=self.frozen if split else None,
                finetune_steps=self.ft if split else None,
                generator=self.generator,
            )
        return Act(chain.actions[:, self.executed], {})

    def evaluation(self, *, composite: bool = True) -> dict[str, float]:
        """:meth:`act_deterministic`'s figures (noise from ``eval_seed``; training's unshifted)."""
        self.policy.eval()
        saved = self.generator.get_state()
        self.generator.manual_seed(self.config.cadence.eval_seed)
        figures = self.evaluator(functools.partial(self.act_deterministic, composite=composite))
        self.generator.set_state(saved)
        self.policy.train()
        return figures

    def save(self) -> Path:
        """A checkpoint of the fine-tuned policy, with all that a resume needs."""
        tree = {
            **self.critic.state_dict(),
            "frozen": self.frozen.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "eval_after_checkpoint": self.eval_after_checkpoint,
        }
        facts = {"dppo": {"steps": self.k, "finetune_steps": self.ft}}
        return self.session.save(self.policy, tree, self.card | facts)


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
