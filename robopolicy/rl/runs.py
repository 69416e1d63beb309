"""The run directory every RL algorithm writes, and its checkpoints (resumable, never pickled).

    <out>/rl_config.json                   the algorithm's config (checked when resuming)
    <out>/scalars.jsonl, tensorboard/      curves against environment steps (:class:`RunLog`)
    <out>/curves.png                       at the end
    <out>/checkpoints/step-0000040/        iteration 40: a policy checkpoint (load_policy reads it)
        trainer_state/state.{json,safetensors}   what resuming needs: value net, optimizer,
                                                 RNG, statistics, counters
    <out>/checkpoints/latest -> step-…     the newest complete checkpoint (an atomic symlink)

Checkpoints are built in a hidden sibling and renamed into place, and ``latest`` is replaced by
``os.replace`` of a fresh link (:class:`robopolicy.train.checkpoints.CheckpointDir`), so a run
killed at any moment resumes from a complete checkpoint. The trainer state is a tree of tensors
and plain values (:func:`robopolicy.train.state.save_tree`): safetensors plus JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from robopolicy.atomic import atomic_write_json
from robopolicy.config import ConfigError, renamed
from robopolicy.policies.base import Policy
from robopolicy.policies.checkpoint import load_policy, save_policy
from robopolicy.rl.rollout import RolloutBatch
from robopolicy.train.checkpoints import LATEST, CheckpointDir
from robopolicy.train.state import load_tree, save_tree

CONFIG_FILE = "rl_config.json"
STATE_DIR = "trainer_state"


class RunDir:
    """One RL run's directory (module docstring)."""

    def __init__(self, out: str | Path, *, keep_last: int = 2) -> None:
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.checkpoints = CheckpointDir(self.out / "checkpoints", keep_last=keep_last)
        self.checkpoints.clean()  # what a killed writer left behind

    def check_config(self, config: dict[str, Any], *, may_change: Iterable[str] = ()) -> None:
        """Save ``config``, or check it against the saved one (read with the fields' current
        names, :func:`robopolicy.config.renamed`): a resumed run may change only the fields
        ``may_change`` (e.g. the budget); anything else is a ConfigError."""
        path = self.out / CONFIG_FILE
        if path.is_file():
            saved = renamed(json.loads(path.read_text(encoding="utf-8")))
            allowed = set(may_change)
            differ = [
                f"{key}: run has {saved.get(key)!r}, asked {value!r}"
                for key, value in config.items()
                if key not in allowed and saved.get(key) != value
            ]
            if differ:
                raise ConfigError(
                    f"{self.out} holds a run with another config; use a new --out or the same "
                    "settings (" + "; ".join(differ) + ")"
                )
        atomic_write_json(path, config)

    def latest(self) -> Path | None:
        """The newest complete checkpoint, or None."""
        return self.checkpoints.link(LATEST)

    def save(
        self, iteration: int, policy: Policy, state: dict[str, Any], card: dict[str, Any]
    ) -> Path:
        """Write checkpoint ``iteration`` (policy + trainer state), point ``latest`` at it and
        prune old ones; returns its path."""

        def fill(directory: Path) -> None:
            save_policy(policy, directory, card=card, overwrite=True)
            save_tree(directory / STATE_DIR, "state", state)

        path = self.checkpoints.write(iteration, fill)
        self.checkpoints.point(LATEST, iteration)
        self.checkpoints.prune()
        return path

    @staticmethod
    def load(path: Path, *, device: str = "cpu") -> tuple[Policy, dict[str, Any]]:
        """The policy and trainer state of checkpoint ``path``."""
        policy = load_policy(path, device=device)
        return policy, load_tree(path / STATE_DIR, "state")


def episode_figures(batch: RolloutBatch) -> dict[str, float]:
    """Mean return, length, score and success of the episodes that ended in ``batch`` (empty
    when none did)."""
    ep = batch.episodes
    if ep["return"].numel() == 0:
        return {}
    return {
        "train/episode_return": float(ep["return"].double().mean()),
        "train/episode_length": float(ep["length"].double().mean()),
        "train/score": float(ep["score"].double().mean()),
        "train/success_rate": float(ep["success"].double().mean()),
        "train/episodes": float(ep["return"].numel()),
    }
