"""What every RL run does around its algorithm, written once: resuming, rollouts, the cadence of
evaluations and checkpoints (the config's ``cadence``, :class:`robopolicy.cadence.CadenceConfig`),
the progress bar, the curves, the result.

An algorithm's ``train`` and its run class read, top to bottom::

    session = RunSession("dppo", out, config, RESUMABLE_CHANGES, DiffusionPolicy)
    if session.finished:                       # the budget was met by an earlier invocation
        return session.result()
    policy = session.policy or policy          # the resumed checkpoint's, else the caller's
    with session.rollouts(rollouts, policy.config) as (collector, evaluator):
        run = DPPORun(session, policy, evaluator, card)   # networks, ``session.state`` loaded
        run.loop(collector, progress)
    return session.result()

    # DPPORun.loop
    session.start(self.evaluation, progress=progress)  # curves, eval_before, the progress bar
    while session.running:
        batch = self.collect(collector)
        session.collected(batch.env_steps)
        ... the update, the iteration's scalars ...
        if session.due(config.cadence.eval_every):
            scalars |= session.evaluated(self.evaluation())
        session.log(batch.env_steps, scalars)
        if session.due(config.cadence.checkpoint_every):
            self.save()                        # session.save(policy, tree, card)
    session.close(self.save, task=card.get("task"))

The state every checkpoint stores besides the algorithm's own (:meth:`RunSession.save`):
``iteration``, ``env_steps``, ``elapsed_s``, ``eval_before`` and ``eval_after``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from robopolicy.config import to_dict
from robopolicy.errors import RobopolicyError
from robopolicy.policies.base import Policy
from robopolicy.policies.checkpoint import read_card
from robopolicy.rl.rollout import Evaluator, RolloutCollector, RolloutFactory
from robopolicy.rl.runs import RunDir
from robopolicy.runlog import RunLog

log = logging.getLogger(__name__)


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` intra-op threads, then restore the caller's count."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclasses.dataclass
class RunResult:
    """What a fine-tuning run did."""

    out: Path
    checkpoint: Path
    """The last checkpoint written (an ordinary policy checkpoint)."""
    iterations: int
    """Iterations of collection and update, over every invocation of the run."""
    env_steps: int
    seconds: float
    """Wall-clock seconds over every invocation of the run."""
    eval_before: dict[str, float]
    eval_after: dict[str, float]
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Figures of one algorithm (DSRL's update count and time shares, say)."""

    def as_dict(self) -> dict[str, Any]:
        """One flat JSON-ready dict (``extra``'s entries beside the others)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        extra = fields.pop("extra")
        return {k: str(v) if isinstance(v, Path) else v for k, v in fields.items()} | extra


def mean(values: list[float]) -> float:
    """The mean of a statistic over an iteration's minibatches (NaN when none ran)."""
    return sum(values) / len(values) if values else math.nan


def origin_card(
    checkpoint: str | Path | None, out: str | Path, algorithm: str, needs: str
) -> dict[str, Any]:
    """``data`` and ``base_checkpoint`` for a fine-tuned checkpoint's card: from ``checkpoint``,
    or, resuming without one, from the run's own latest checkpoint (without either: an error
    saying that ``algorithm`` ``needs`` a checkpoint such as "a diffusion checkpoint")."""
    if checkpoint is not None:
        return {
            "data": read_card(checkpoint).get("data"),
            "base_checkpoint": str(Path(checkpoint).resolve()),
        }
    latest = RunDir(out).latest() if Path(out).is_dir() else None
    if latest is None:
        raise RobopolicyError(f"{algorithm} needs {needs} to start from: give CKPT, not 'scratch'")
    card = read_card(latest)
    return {key: card.get(key) for key in ("data", "base_checkpoint")}


class RunSession:
    """One invocation of an RL run in ``out`` (module docstring).

    Opening it checks the config against the run's saved one (a resume may change only
    ``may_change``) and loads the latest checkpoint when there is one: ``policy`` (an instance
    of ``policy_type``, else an error naming the file) and ``state`` (its trainer state), both
    None for a fresh run.
    """

    def __init__(
        self,
        name: str,
        out: str | Path,
        config: Any,
        may_change: Iterable[str],
        policy_type: type[Policy],
    ) -> None:
        self.started = time.perf_counter()
        self.name, self.out, self.config = name, Path(out), config
        self.run = RunDir(self.out, keep_last=config.cadence.keep_checkpoints)
        self.run.check_config(to_dict(config), may_change=may_change)
        self.checkpoint = self.run.latest()
        self.policy: Any = None
        self.state: dict[str, Any] | None = None
        if self.checkpoint is not None:
            self.policy, self.state = RunDir.load(self.checkpoint, device=config.device)
            if not isinstance(self.policy, policy_type):
                raise RobopolicyError(
                    f"{self.checkpoint} holds a {type(self.policy).__name__}, not the "
                    f"{policy_type.__name__} that {name} trains"
                )
            log.info("resuming %s at %d env steps", self.checkpoint, self.state["env_steps"])
        state = self.state or {}
        self.iteration = int(state.get("iteration", 0))
        self.env_steps = int(state.get("env_steps", 0))
        self.elapsed = float(state.get("elapsed_s", 0.0))
        self.eval_before: dict[str, float] = dict(state.get("eval_before", {}))
        self.eval_after: dict[str, float] = dict(state.get("eval_after", self.eval_before))
        self.runlog: RunLog | None = None
        self.bar: tqdm | None = None

    # -- before the loop ---------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """The run has trained its budget already (nothing to do but report)."""
        return self.state is not None and self.env_steps >= self.config.total_env_steps

    @contextlib.contextmanager
    def rollouts(
        self, rollouts: RolloutFactory, policy_config: Any, *, seed: int | None = None
    ) -> Iterator[tuple[RolloutCollector, Evaluator]]:
        """The training collector (``num_envs``; ``seed`` or, by default, fresh seeds after each
        iteration so a resume never replays episodes) and the evaluator (``eval_*`` of the
        cadence), both closed when the block ends."""
        c, config = policy_config, self.config
        if seed is None:
            seed = config.seed + 1000 * config.num_envs * self.iteration
        collector = rollouts.collector(
            num_envs=config.num_envs,
            n_obs_steps=c.n_obs_steps,
            n_action_steps=c.n_action_steps,
            seed=seed,
        )
        evaluate = None
        try:
            evaluate = rollouts.evaluator(
                episodes=config.cadence.eval_episodes,
                n_obs_steps=c.n_obs_steps,
                n_action_steps=c.n_action_steps,
                seed=config.cadence.eval_seed,
                num_envs=config.cadence.eval_envs,
            )
            yield collector, evaluate
        finally:
            collector.close()
            if evaluate is not None:
                evaluate.close()

    def start(self, evaluation: Callable[[], dict[str, float]], *, progress: bool) -> None:
        """Open the curves (dropping any past the resumed step), evaluate the starting policy on
        a fresh run, and show the progress bar."""
        self.runlog = RunLog(self.out)
        self.runlog.truncate(self.env_steps)
        if not self.eval_before:
            scalars = self.evaluated(evaluation())
            self.eval_before = dict(self.eval_after)
            self.runlog.scalars(self.env_steps, scalars)
        total = self.config.total_env_steps
        self.bar = tqdm(
            total=total,
            initial=min(self.env_steps, total),
            desc=self.name,
            unit="step",
            disable=not progress,
        )

    # -- the loop --------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.env_steps < self.config.total_env_steps

    @property
    def final(self) -> bool:
        """The budget is met: this iteration is the last."""
        return self.env_steps >= self.config.total_env_steps

    def collected(self, env_steps: int) -> None:
        """Count an iteration's collection."""
        self.env_steps += env_steps
        self.iteration += 1

    def due(self, every: int) -> bool:
        """Whether something done every ``every`` iterations (0: only at the end) is due now."""
        return self.final or bool(every and self.iteration % every == 0)

    def evaluated(self, figures: dict[str, float]) -> dict[str, float]:
        """Record ``figures`` as the latest evaluation; returns them as ``eval/...`` scalars."""
        self.eval_after = dict(figures)
        return {f"eval/{k}": v for k, v in figures.items()}

    def log(self, env_steps: int, scalars: dict[str, float]) -> None:
        """Write the iteration's scalars (if any) and advance the bar by its ``env_steps``."""
        if scalars:
            self.runlog.scalars(self.env_steps, scalars)
        self.bar.update(min(env_steps, self.config.total_env_steps - self.bar.n))
        train = scalars.get("train/success_rate", math.nan)
        self.bar.set_postfix(
            train=f"{train:.2f}", eval=f"{self.eval_after.get('success_rate', math.nan):.2f}"
        )

    def save(
        self,
        policy: Policy,
        tree: dict[str, Any],
        card: dict[str, Any],
        *,
        index: int | None = None,
    ) -> Path:
        """Checkpoint ``policy`` with the algorithm's ``tree`` and the session's counters; the
        card gets ``algorithm``, ``env_steps`` and ``eval``. Named by ``index`` (default: the
        iteration)."""
        counters = {
            "iteration": self.iteration,
            "env_steps": self.env_steps,
            "elapsed_s": self.seconds,
            "eval_before": self.eval_before,
            "eval_after": self.eval_after,
        }
        meta = {
            **card,
            "algorithm": self.name,
            "env_steps": self.env_steps,
            "eval": self.eval_after,
        }
        index = self.iteration if index is None else index
        self.checkpoint = self.run.save(index, policy, tree | counters, meta)
        return self.checkpoint

    # -- after the loop ----------------------------------------------------------------------

    def close(self, save: Callable[[], Path], *, task: str = "") -> None:
        """Close the bar, checkpoint when no iteration did (a budget met by a fresh run's first
        evaluation), and draw the curves (titled with ``task``)."""
        self.bar.close()
        if self.checkpoint is None:
            save()
        self.runlog.plot(title=f"{self.name.upper()} {task or ''}".strip())
        self.runlog.close()

    @property
    def seconds(self) -> float:
        """Wall-clock seconds over every invocation of the run."""
        return self.elapsed + time.perf_counter() - self.started

    def result(self, **extra: Any) -> RunResult:
        """The run's result; ``extra`` adds an algorithm's own figures."""
        return RunResult(
            out=self.out,
            checkpoint=self.checkpoint,
            iterations=self.iteration,
            env_steps=self.env_steps,
            seconds=self.seconds,
            eval_before=self.eval_before,
            eval_after=self.eval_after,
            extra=extra,
        )
