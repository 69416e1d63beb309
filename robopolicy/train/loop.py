"""The pieces of a training run the loop in :mod:`robopolicy.train.trainer` drives: the policy
built from the data, the seeded data order, the validation loss, and :class:`RunState` (what a
checkpoint holds, and how it is written and read back)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from robopolicy.config import ConfigError, did_you_mean, to_dict
from robopolicy.data.dataset import SequenceDataset
from robopolicy.errors import DataError
from robopolicy.policies.base import Policy, PolicyConfig
from robopolicy.policies.checkpoint import WEIGHTS_FILE, load_policy, save_policy
from robopolicy.train.checkpoints import BEST, LATEST, STATE_DIR, CheckpointDir
from robopolicy.train.config import TrainConfig
from robopolicy.train.ema import Ema
from robopolicy.train.state import load_tree, rng_states, save_tree, set_rng_states

STATE_NAME = "state"
log = logging.getLogger(__name__)


def policy_type(config: PolicyConfig) -> str:
    """The registered name of ``config``'s policy type."""
    for name, cls in PolicyConfig.variants.items():
        if type(config) is cls:
            return name
    raise ConfigError(f"{type(config).__name__} is not a registered policy config")


def build_policy(config: PolicyConfig, dataset: SequenceDataset) -> Policy:
    """A fresh policy of ``config``'s type: shapes read from ``dataset``, the normalizer fitted
    on it (:func:`robopolicy.policies.build.make_policy`); a mismatch is a ConfigError."""
    from robopolicy.policies.build import make_policy

    try:
        return make_policy(config, dataset)
    except ValueError as exc:
        raise ConfigError(f"policy: {exc}") from exc


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The shuffled window order of ``epoch``: a pure function of ``(seed, epoch)``."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator)


@torch.no_grad()
def validation_loss(policy: Policy, val: SequenceDataset, config: TrainConfig) -> float:
    """Mean loss over the first ``val_batches`` batches of ``val`` in order, seeded."""
    size, n = config.batch_size, len(val)
    batches = -(-n // size)
    if config.val_batches is not None:
        batches = min(batches, config.val_batches)
    policy.eval()
    total, count = 0.0, 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        for b in range(batches):
            rows = list(range(b * size, min(n, (b + 1) * size)))
            total += float(policy.loss(val[rows])) * len(rows)
            count += len(rows)
    return total / max(count, 1)


@dataclasses.dataclass
class Progress:
    """Where the run is; saved in every checkpoint."""

    step: int = 0
    """Optimizer steps done."""
    epoch: int = 0
    """Epochs completed."""
    batch: int = 0
    """Batches done in the current epoch."""
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    """Latest value of every validation and evaluation figure."""
    best_value: float | None = None
    """The figure of the ``best`` checkpoint."""
    best_step: int | None = None
    """Its step."""


class RunState:
    """The policy, optimizer, EMA and progress of one run, and their checkpoints."""

    def __init__(
        self,
        config: TrainConfig,
        store: CheckpointDir,
        policy: Policy,
        optimizer: torch.optim.Optimizer,
        ema: Ema | None,
        card: dict[str, Any],
        dataset: SequenceDataset,
        *,
        has_eval: bool,
    ) -> None:
        self.config, self.store, self.policy = config, store, policy
        self.optimizer, self.ema, self.card = optimizer, ema, card
        self.has_eval = has_eval
        self.windows = len(dataset)
        self.data_path = str(dataset.path)
        self.steps_per_epoch = max(1, self.windows // config.batch_size)
        total = config.epochs * self.steps_per_epoch
        self.total_steps = min(total, config.max_steps) if config.max_steps else total
        self.progress = Progress()

    def eval_policy(self) -> Policy:
        """The policy that validation, evaluation and checkpoints use (EMA when on)."""
        return self.ema.model if self.ema is not None else self.policy.eval()

    def improves(self, new: dict[str, float]) -> bool:
        """Whether figures ``new`` (just measured) make this step the best so far."""
        p, key = self.progress, f"eval/{self.config.best_metric}"
        if self.has_eval:
            if not any(k.startswith("eval/") for k in new):
                return False
            if key not in new:
                names = [k.removeprefix("eval/") for k in new if k.startswith("eval/")]
                log.warning(
                    "best_metric: the evaluation reports no %r%s; best is not updated",
                    self.config.best_metric,
                    did_you_mean(self.config.best_metric, names),
                )
                return False
            value = new[key]
            better = p.best_value is None or value > p.best_value
        else:
            if "val/loss" not in new:
                return False
            value = new["val/loss"]
            better = p.best_value is None or value < p.best_value
        if better:
            p.best_value, p.best_step = value, p.step
        return better

    def save(self, new: dict[str, float], *, best: bool) -> Path:
        """Write the checkpoint of this step; move ``latest`` (and ``best``) to it; prune."""
        p = self.progress
        policy = self.eval_policy()
        card = {
            **self.card,
            "data": self.data_path,
            "policy": policy_type(policy.config),
            "step": p.step,
            "epoch": p.epoch,
            "metrics": dict(p.metrics),
            "measured_now": sorted(new),
            "train_config": to_dict(self.config),
        }
        tree = {
            "model": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "ema_updates": self.ema.updates if self.ema is not None else None,
            "progress": dataclasses.asdict(p),
            "windows": self.windows,
            "rng": rng_states(),
        }

        def fill(directory: Path) -> None:
            save_policy(policy, directory, card=card, overwrite=True)
            save_tree(directory / STATE_DIR, STATE_NAME, tree)

        path = self.store.write(p.step, fill)
        self.store.point(LATEST, p.step)
        if best:
            self.store.point(BEST, p.step)
        self.store.prune()
        self.policy.train()
        return path

    def restore(self, checkpoint: Path) -> None:
        """Load what :meth:`save` wrote (training weights, optimizer, EMA, progress, RNG)."""
        tree = load_tree(checkpoint / STATE_DIR, STATE_NAME)
        if tree["windows"] != self.windows:
            raise DataError(
                self.data_path,
                f"has {self.windows} training windows, the run resumed from {checkpoint} had "
                f"{tree['windows']}: the data changed; train into a new --out",
            )
        self.policy.load_state_dict(tree["model"])
        self.optimizer.load_state_dict(tree["optimizer"])
        if self.ema is not None:
            self.ema.model.load_state_dict(load_file(str(checkpoint / WEIGHTS_FILE)))
            self.ema.updates = int(tree["ema_updates"])
        self.progress = Progress(**tree["progress"])
        set_rng_states(tree["rng"])


def resume_policy(checkpoint: Path) -> Policy:
    """The policy of ``checkpoint`` (config and normalizer exactly as saved), in train mode."""
    return load_policy(checkpoint).train()
