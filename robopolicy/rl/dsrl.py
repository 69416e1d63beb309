"""DSRL: SAC in the latent-noise space of a frozen diffusion or flow policy, in one file.

Wagenmaker et al., 2025, "Steering Your Diffusion Policy with Latent Space Reinforcement
Learning" (arXiv 2506.15799; reference code ``ajwagen/dsrl`` and its Stable-Baselines3 fork).
The base policy is never trained and is used only as ``base.sample(obs, noise=w)``, which is
deterministic given ``w`` (DDIM with eta 0, or the flow ODE, with ``steps`` steps). SAC
learns an actor that picks ``w``; the result is a ``steered`` policy checkpoint
(:mod:`robopolicy.policies.steered`): the frozen base plus the actor, which ``load_policy`` and
``robopolicy eval`` run like any other.

Symbols (``docs/DESIGN.md``): N envs, To observation steps, Tp predicted and Ta executed
actions per decision, Da action size, Ds one step's low-dim observation size, F = To·Ds the
actor's and critics' input (normalized by the base's normalizer), L = Tp·Da the flattened latent,
b the noise bound, E critics, B the SAC batch, U updates per iteration.

**The latent-action MDP.** A decision sees the To-step observation, picks ``w`` in (-b, b)^L,
and the environment runs the first Ta actions of ``base.sample(obs, noise=w)`` (fewer if the
episode ends). This is the paper's DSRL-SAC: the latent is the base's whole initial noise
(Tp, Da), squashed to ``b·tanh(.)`` (DSRL's ``action_magnitude``, 1.5 on most of its tasks).

**One iteration** (``decisions_per_iteration`` = T decisions in each of N envs):

1. act. During the warm-up (the first ``warmup_decisions`` decisions of the run) ``w`` is
   ``clamp(z, -b, b)`` with ``z ~ N(0, I)`` drawn from the run's seeded generator: the base
   policy's own behaviour, clipped to the actor's range as the reference's warm-up does, so
   every stored latent is one the actor can produce. Afterwards ``w = b·tanh(μ + σ·ε)`` from the
   actor. The base samples under ``torch.inference_mode`` for all N envs at once;
2. store each decision in the replay buffer (:class:`~robopolicy.rl.offpolicy.ReplayBuffer`, a
   ring of ``buffer_size`` decisions): its features
   x (F), latent w (L), the chunk reward ``R = Σ_{j<n} γ^j r_j`` over the n steps it executed,
   ``done`` (the episode terminated inside it), the discount ``γ^n`` and the next features x'
   (the next decision's observation, or the final observation at a truncation, which is
   bootstrapped). So γ is per environment step, as everywhere in :mod:`robopolicy.rl`;
3. once the warm-up is over, U = round(``utd_ratio`` · N · T) SAC updates, each on B decisions
   drawn uniformly from the buffer (indices and Gaussian draws for all U at once)::

       y      = R + γ^n (1 − done) (min_e Q̄_e(x', w') − α log π(w'|x')),   w' ~ π(·|x')
       critic = ½ Σ_e mean_B (Q_e(x, w) − y)²
       actor  = mean_B (α log π(w̃|x) − min_e Q_e(x, w̃)),   w̃ ~ π(·|x) reparameterized
       temp   = −mean_B (log α · (log π(w̃|x) + H̄))

   with the E critics (``num_critics``, LayerNorm after every hidden layer) evaluated as one
   batched module (:class:`~robopolicy.rl.offpolicy.QEnsemble`: weights (E, in, out), one
   ``matmul`` per layer for all of them), targets Q̄
   Polyak-averaged with τ after every update, log π measured on ``tanh(.)`` in (-1, 1)^L (the
   entropy target H̄ is per latent there, as in Stable-Baselines3), α = exp(log α) learned.
   The three losses share one backward pass and one Adam step: the actor's loss reaches the
   critics' weights only through w̃ (their ``requires_grad`` is off while it is built);
4. log every ``log_every`` env steps; evaluate the steered policy with the actor's
   deterministic latent ``b·tanh(μ)`` every ``eval_every`` env steps and at the end;
   checkpoint every ``checkpoint_every`` env steps and at the end (:mod:`robopolicy.rl.runs`,
   checkpoints named by env steps). The trainer state holds the critics, targets, optimizer,
   temperature, generator and the whole replay buffer (its filled part, safetensors: about
   4·(2F + L + 3) bytes per decision, 0.2 KB on ``arm-push``, 40 MB for a million env steps of
   Hopper), so a resumed run continues exactly where its checkpoint left off, save the episodes
   that were in flight (the collector restarts them).

**Before and after.** ``eval_before`` is the base policy sampling its own way through the same
deterministic sampler (``w ~ N(0, I)``, unclipped, the same draws at every evaluation); it is
also the first ``eval/*`` point of the curves. ``eval_after`` is the steered policy with the
deterministic latent, what ``robopolicy eval`` runs on the checkpoint.

**Defaults** are the reference configs' (``cfg/robomimic/dsrl_*.yaml``, ``cfg/gym/dsrl_*.yaml``):
2 LayerNorm critics and an actor of 3 tanh layers (128 wide as in its Hopper and Transport
configs; Robomimic used 2048), Adam 3e-4 for all, batch 256, τ 0.005, entropy target 0,
α from 1, noise bound 1.5, 4 envs, 5 updates per decision (its 20 gradient steps per vector step
of 4 envs), a warm-up of 6000 decisions (1501 vector steps of 4 envs), γ 0.99 per chunk of 4
(0.9975 per step here). Its base policies sample with 5 to 8 DDIM steps; ``steps`` is 10.

**On ``arm-push``** (``tests/rl/test_dsrl.py``, sized for CI): 8 envs, a warm-up of 800
decisions, 2 updates per decision on batches of 128, 64-wide networks, Adam 1e-3, α from 0.01,
τ 0.02, γ 0.99 per step, and the task's 0/1 success reward scaled by 10 (``reward_scale=10``:
values up to 10, beside which the entropy bonus stays small). The reference's Robomimic form,
−1 per step before success (``reward_offset=1``), learned more slowly here: every value must
first sink towards −1/(1−γ) through the slowly moving targets before latents can be told apart.
A flow policy cloned from imperfect demonstrations (0.14 success on 50 held-out episodes) steers
to 0.66–0.78 in 16k env steps over three seeds, about 40 s of CPU time; a diffusion policy
cloned the same way, from 0.10 to 0.62.

**What differs from the reference.** (a) The reference sums a chunk's rewards undiscounted and
discounts 0.99 per decision; here each step is discounted, so truncated chunks and other Ta
compare. (b) Its SAC (Stable-Baselines3) steps the temperature, then the critics, then the actor
against the just-updated critics; here one combined step uses the critics from before it.
(c) The paper's DSRL-NA variant (a critic on real actions, distilled into a latent critic through
noise aliasing), which its Gym and Robomimic configs use, is not implemented: it runs the base
policy inside every gradient step (for the targets and the distillation), which on a CPU costs
more than everything else here together; DSRL-SAC, the paper's general recipe and the one its
pi0 and Transport runs use, touches the base only to act.
"""

from __future__ import annotations

import copy
import functools
import math
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from robopolicy.errors import RobopolicyError
from robopolicy.policies.base import Policy
from robopolicy.policies.checkpoint import load_policy
from robopolicy.policies.steered import SteeredPolicy
from robopolicy.rl.advantages import discounted_chunk_rewards
from robopolicy.rl.dsrl_config import RESUMABLE_CHANGES, DSRLConfig
from robopolicy.rl.offpolicy import QEnsemble, ReplayBuffer
from robopolicy.rl.registry import register_algorithm
from robopolicy.rl.rollout import (
    Act,
    ActFn,
    Evaluator,
    Obs,
    RolloutBatch,
    RolloutCollector,
    RolloutFactory,
    executed_slice,
)
from robopolicy.rl.session import RunResult, RunSession, origin_card, torch_threads

# -- what the replay buffer keeps of a decision ---------------------------------------------------


def replay_rows(
    batch: RolloutBatch, features: Callable[[Obs], Tensor], config: DSRLConfig
) -> dict[str, Tensor]:
    """Every decision of ``batch`` (T, N) as M = T·N replay rows, t-major (module docstring,
    step 2): ``x`` and ``next_x`` (M, F) from ``features`` (raw observations -> (B, F)),
    ``w`` (M, L) the latent kept in ``extras["latent"]``, ``reward`` the discounted chunk reward
    of the (scaled, offset) rewards, ``done`` 1.0 after a termination, ``discount`` γ^n."""
    steps = batch.truncated.shape
    x = features({k: v.flatten(0, 1) for k, v in batch.obs.items()}).view(*steps, -1)
    next_x = torch.cat([x[1:], features(batch.next_obs)[None]], 0)
    if bool(batch.truncated.any()):  # bootstrap from the history the time limit cut off
        next_x[batch.truncated.to(x.device)] = features(batch.final_obs)
    executed = batch.executed.to(x.device)
    rewards = config.reward_scale * (batch.rewards.to(x.device) - config.reward_offset)
    rows = {
        "x": x,
        "w": batch.extras["latent"].to(x.device).flatten(2),
        "reward": discounted_chunk_rewards(rewards, executed, config.gamma),
        "done": batch.terminated.to(x.device).float(),
        "discount": config.gamma ** executed.sum(-1).float(),
        "next_x": next_x,
    }
    return {k: v.flatten(0, 1) for k, v in rows.items()}


# -- the run -----------------------------------------------------------------------------------


def train(
    config: DSRLConfig,
    base: Policy | None,
    rollouts: RolloutFactory,
    out: str | Path,
    *,
    card: dict[str, Any] | None = None,
    progress: bool = True,
) -> RunResult:
    """Steer ``base`` (a policy with a deterministic ``sample(obs, noise=...)``) with DSRL into
    ``out``, resuming from its ``latest`` checkpoint when there is one (then ``base`` may be
    None: the checkpoint holds it).

    The result's ``extra``: ``decisions`` and ``updates`` (counts), and ``timing``: seconds spent,
    summed over the run: ``actor`` (the actor or the warm-up draws while acting), ``base`` (the
    base's sampling while acting), ``env`` (the collector: stepping the envs), ``replay``
    (storing decisions), ``update`` (SAC updates), ``eval`` (evaluations)."""
    with torch_threads(config.torch_threads):
        session = RunSession("dsrl", out, config, RESUMABLE_CHANGES, SteeredPolicy)
        if session.finished:
            counts = ("decisions", "updates", "timing")
            return session.result(**{key: session.state[key] for key in counts})
        torch.manual_seed(config.seed)
        if session.policy is not None:
            steered = session.policy
        elif base is None:
            raise RobopolicyError("dsrl needs a base policy (a diffusion or flow checkpoint)")
        else:
            steered = SteeredPolicy.around(base, config.actor, config.steps)
        run = DSRLRun(session, steered, dict(card or {}))
        seed = config.seed + run.episodes  # the training seeds go on where they stopped
        with session.rollouts(rollouts, run.policy_config, seed=seed) as (collector, evaluator):
            run.loop(collector, evaluator, progress)
        return session.result(decisions=run.decisions, updates=run.updates, timing=run.timing)


class DSRLRun:
    """One invocation of a DSRL run: the steered policy (its frozen base and its actor), the
    critics and their targets, the temperature, the optimizer, the replay buffer, the generator
    of every draw and the counters (restored when resuming), and the steps of an iteration in
    the order :meth:`loop` runs them (module docstring)."""

    def __init__(self, session: RunSession, steered: SteeredPolicy, card: dict) -> None:
        self.session, self.card = session, card
        self.config = config = session.config
        self.device = device = torch.device(config.device)
        self.steered = steered = steered.to(device).train()
        self.actor, self.frozen = steered.actor, steered.base
        self.policy_config = c = steered.config
        self.bound, latent_dim = c.actor.noise_bound, c.latent_dim
        feature_dim = c.n_obs_steps * c.state_dim
        self.executed = executed_slice(steered)
        self.critic = QEnsemble(
            feature_dim + latent_dim,
            config.critic_hidden_dims,
            config.num_critics,
            config.critic_activation,
            config.critic_layer_norm,
        ).to(device)
        self.target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.tensor(
            math.log(config.init_alpha), device=device, requires_grad=True
        )
        self.optimizer = torch.optim.Adam(
            [
                {"params": list(self.actor.parameters()), "lr": config.actor_lr},
                {"params": list(self.critic.parameters()), "lr": config.critic_lr},
                {"params": [self.log_alpha], "lr": config.alpha_lr},
            ],
            fused=device.type in ("cpu", "cuda"),
        )
        self.buffer = ReplayBuffer(config.buffer_size, feature_dim, latent_dim, device)
        self.generator = torch.Generator(device).manual_seed(config.seed)
        self.decisions = self.updates = self.episodes = 0
        self.timing = dict.fromkeys(("actor", "base", "env", "replay", "update", "eval"), 0.0)
        if session.state is not None:
            self.restore(session.state)
        self.critic_params = list(self.critic.parameters())
        self.target_params = list(self.target.parameters())
        # what the next log reports: episodes that ended, SAC losses, what the latents did
        self.ended: dict[str, list[Tensor]] = defaultdict(list)
        self.losses: dict[str, list[Tensor]] = defaultdict(list)
        self.watch: dict[str, list[float]] = defaultdict(list)

    def loop(self, collector: RolloutCollector, evaluator: Evaluator, progress: bool) -> None:
        """Iterations until the budget is met, then the last checkpoint and the curves; each
        logs, evaluates and checkpoints once the env steps since the last time reach its
        ``*_every`` (and at the end)."""
        session, config, timing = self.session, self.config, self.timing
        cadence = config.cadence
        draws = torch.Generator(self.device).manual_seed(cadence.eval_seed)
        base = functools.partial(self.act_base, generator=draws)
        session.start(lambda: self.evaluation(evaluator, base), progress=progress)
        marks = dict.fromkeys(("log", "eval", "checkpoint"), session.env_steps)
        while session.running:
            # 1. act
            tick = time.perf_counter()
            acted = timing["actor"] + timing["base"]
            batch = collector.collect(self.act, config.decisions_per_iteration)
            timing["env"] += time.perf_counter() - tick - (timing["actor"] + timing["base"] - acted)
            # 2. store the decisions
            self.store(batch)
            session.collected(batch.env_steps)
            # 3. SAC updates, once the warm-up is over
            if self.decisions >= config.warmup_decisions and self.buffer.size >= config.batch_size:
                tock = time.perf_counter()
                n = round(config.utd_ratio * config.num_envs * config.decisions_per_iteration)
                self.update(n)
                self.updates += n
                timing["update"] += time.perf_counter() - tock

            # 4. log, evaluate, checkpoint (every so many env steps)
            env_steps, final = session.env_steps, session.final
            scalars: dict[str, float] = {}
            if final or env_steps - marks["log"] >= config.log_every:
                marks["log"] = env_steps
                scalars |= self.training_figures()
            if final or (cadence.eval_every and env_steps - marks["eval"] >= cadence.eval_every):
                marks["eval"] = env_steps
                scalars |= session.evaluated(self.evaluation(evaluator, self.act_steered))
            session.log(batch.env_steps, scalars)
            every = cadence.checkpoint_every
            if final or (every and env_steps - marks["checkpoint"] >= every):
                marks["checkpoint"] = env_steps
                self.save()
        session.close(self.save, task=self.card.get("task"))

    def act(self, obs: Obs) -> Act:
        """1. Warm-up: clipped Gaussian latents; then the actor's stochastic latent."""
        c, bound, tick = self.policy_config, self.bound, time.perf_counter()
        obs = {k: obs[k].to(self.device) for k in c.obs_keys}
        size = len(obs[c.obs_keys[0]])
        with torch.inference_mode():
            x = self.steered.features(obs)
            draw = torch.randn((size, c.latent_dim), generator=self.generator, device=self.device)
            if self.decisions < self.config.warmup_decisions:
                w = draw.clamp(-bound, bound)
            else:
                w, _ = self.actor.sample(x, draw)
            w = w.view(size, c.horizon, c.action_dim)
            sampled = time.perf_counter()
            chunk = self.frozen.sample(obs, noise=w, steps=c.steps)
            edge = self.frozen.normalizer.normalize(chunk, "action").abs() >= 0.999
        self.timing["actor"] += sampled - tick
        self.timing["base"] += time.perf_counter() - sampled
        self.watch["latent_abs"].append(float(w.abs().mean()))
        self.watch["latent_saturated"].append(float((w.abs() > 0.99 * bound).float().mean()))
        self.watch["action_at_data_edge"].append(float(edge.float().mean()))
        self.decisions += size
        return Act(chunk[:, self.executed].clone(), {"latent": w.clone()})

    def store(self, batch: RolloutBatch) -> None:
        """2. The batch's decisions into the replay buffer, and its ended episodes."""
        tock = time.perf_counter()
        self.buffer.add(replay_rows(batch, self.steered.features, self.config))
        self.timing["replay"] += time.perf_counter() - tock
        self.episodes += int(batch.episodes["return"].numel())
        for key, value in batch.episodes.items():
            self.ended[key].append(value)

    def update(self, n: int) -> None:
        """3. ``n`` SAC updates (module docstring)."""
        config, bound, actor, log_alpha = self.config, self.bound, self.actor, self.log_alpha
        size, latent_dim = config.batch_size, self.policy_config.latent_dim
        index = torch.randint(
            self.buffer.size, (n, size), generator=self.generator, device=self.device
        )
        data = self.buffer.gather(index)  # {field: (n, B, ...)}
        eps = torch.randn((n, 2, size, latent_dim), generator=self.generator, device=self.device)
        for u in range(n):
            x, w, next_x = data["x"][u], data["w"][u], data["next_x"][u]
            alpha = log_alpha.detach().exp()
            with torch.no_grad():
                next_w, next_log_prob = actor.sample(next_x, eps[u, 0])
                next_q = self.combine(self.target(next_x, next_w / bound)) - alpha * next_log_prob
                keep = data["discount"][u] * (1.0 - data["done"][u])
                y = data["reward"][u] + keep * next_q
            q = self.critic(x, w / bound)
            critic_loss = 0.5 * (q - y).pow(2).mean(1).sum()
            new_w, log_prob = actor.sample(x, eps[u, 1])
            for p in self.critic_params:
                p.requires_grad_(False)
            q_new = self.combine(self.critic(x, new_w / bound))
            for p in self.critic_params:
                p.requires_grad_(True)
            actor_loss = (alpha * log_prob - q_new).mean()
            alpha_loss = -(log_alpha * (log_prob.detach() + config.target_entropy)).mean()
            self.optimizer.zero_grad(set_to_none=True)
            (critic_loss + actor_loss + alpha_loss).backward()
            self.optimizer.step()
            with torch.no_grad():
                torch._foreach_lerp_(self.target_params, self.critic_params, config.tau)
            self.losses["critic"].append(critic_loss.detach())
            self.losses["actor"].append(actor_loss.detach())
            self.losses["alpha"].append(alpha_loss.detach())
            self.losses["entropy"].append(-log_prob.detach().mean())
            self.losses["q"].append(q.detach().mean())

    def combine(self, q: Tensor) -> Tensor:
        """(E, B) -> (B,): the ensemble's value."""
        return q.min(0).values if self.config.critic_combine == "min" else q.mean(0)

    def training_figures(self) -> dict[str, float]:
        """4. The means since the last log (then forgotten), time shares and update count."""
        scalars = _training_figures(
            self.ended, self.losses, self.watch, self.log_alpha, self.buffer.size
        )
        total = sum(self.timing.values())
        scalars |= {f"time/{k}_share": v / total for k, v in self.timing.items() if total}
        scalars |= {
            "time/env_steps_per_s": self.session.env_steps / self.session.seconds,
            "train/updates": self.updates,
        }
        for record in (self.ended, self.losses, self.watch):
            record.clear()
        return scalars

    def act_steered(self, obs: Obs) -> Act:
        """The steered policy as evaluated: the deterministic latent."""
        obs = {k: obs[k].to(self.device) for k in self.policy_config.obs_keys}
        with torch.inference_mode():
            chunk = self.steered.sample(obs)
        return Act(chunk[:, self.executed], {})

    def act_base(self, obs: Obs, *, generator: torch.Generator) -> Act:
        """The base policy sampling its own way: w ~ N(0, I) from ``generator``, unclipped."""
        c = self.policy_config
        obs = {k: obs[k].to(self.device) for k in c.obs_keys}
        shape = (len(obs[c.obs_keys[0]]), c.horizon, c.action_dim)
        with torch.inference_mode():
            w = torch.randn(shape, generator=generator, device=self.device)
            chunk = self.frozen.sample(obs, noise=w, steps=c.steps)
        return Act(chunk[:, self.executed], {})

    def evaluation(self, evaluator: Evaluator, act: ActFn) -> dict[str, float]:
        """The figures of ``act``, timed."""
        tick = time.perf_counter()
        self.steered.eval()
        figures = evaluator(act)
        self.steered.train()
        self.timing["eval"] += time.perf_counter() - tick
        return figures

    def save(self) -> Path:
        """A steered checkpoint, named by env steps, with all that a resume needs."""
        tree = {
            "decisions": self.decisions,
            "updates": self.updates,
            "episodes": self.episodes,
            "timing": self.timing,
            "critic": self.critic.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "log_alpha": self.log_alpha.detach(),
            "replay": self.buffer.state_dict(),
            "generator": self.generator.get_state(),
        }
        meta = self.card | {"eval_base": self.session.eval_before}
        return self.session.save(self.steered, tree, meta, index=self.session.env_steps)

    def restore(self, state: dict[str, Any]) -> None:
        """What :meth:`save` stored."""
        self.critic.load_state_dict(state["critic"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.buffer.load_state_dict(state["replay"])
        self.generator.set_state(state["generator"])
        self.decisions, self.updates = int(state["decisions"]), int(state["updates"])
        self.episodes, self.timing = int(state["episodes"]), dict(state["timing"])


def _training_figures(
    ended: dict[str, list[Tensor]],
    losses: dict[str, list[Tensor]],
    watch: dict[str, list[float]],
    log_alpha: Tensor,
    buffer_size: int,
) -> dict[str, float]:
    """Means since the last log: episodes that ended, SAC losses, what the latents did."""
    figures: dict[str, float] = {"train/alpha": float(log_alpha.detach().exp())}
    figures["train/buffer"] = float(buffer_size)
    if ended and sum(v.numel() for v in ended["return"]):
        episodes = {k: torch.cat(v).double() for k, v in ended.items()}
        figures |= {
            "train/episode_return": float(episodes["return"].mean()),
            "train/episode_length": float(episodes["length"].mean()),
            "train/score": float(episodes["score"].mean()),
            "train/success_rate": float(episodes["success"].mean()),
            "train/episodes": float(episodes["return"].numel()),
        }
    for name, values in losses.items():
        prefix = "train" if name in ("entropy", "q") else "loss"
        figures[f"{prefix}/{name}"] = float(torch.stack(values).mean())
    for name, values in watch.items():
        figures[f"train/{name}"] = sum(values) / len(values)
    return figures


# -- ``robopolicy finetune --algo dsrl`` ---------------------------------------------------------


@register_algorithm(
    "dsrl", DSRLConfig, description="DSRL: SAC over a frozen diffusion/flow policy's noise"
)
def finetune(
    config: DSRLConfig,
    *,
    checkpoint: str | Path | None,
    rollouts: RolloutFactory,
    out: str | Path,
    card: dict[str, Any],
    progress: bool = True,
) -> dict[str, Any]:
    """DSRL steering the policy of ``checkpoint`` (diffusion, flow, or any policy whose
    ``sample(obs, noise=...)`` is deterministic); writes ``steered`` checkpoints. Without a
    checkpoint only a resume of ``out`` is possible."""
    base = None
    if checkpoint is not None:
        base = load_policy(checkpoint, device=config.device)
        if isinstance(base, SteeredPolicy):
            raise RobopolicyError(
                f"{checkpoint} is already a steered policy: steer its base checkpoint, or run "
                "again with its run's --out to resume"
            )
    card = {
        **card,
        **origin_card(checkpoint, out, "dsrl", "a base policy checkpoint (diffusion or flow)"),
    }
    result = train(config, base, rollouts, out, card=card, progress=progress)
    return result.as_dict()
