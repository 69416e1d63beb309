"""When a run evaluates and checkpoints: one config shared by behaviour cloning and every RL
algorithm.

Each owner holds it as a field ``cadence`` with its own defaults, spelled flat (``eval_every=0``
on the command line and in the run's saved config, :data:`robopolicy.config.FLAT`), and names the
unit its ``*_every`` fields count: iterations (PPO, DPPO, FPO), environment steps (DSRL), epochs
and optimizer steps (behaviour cloning).
"""

from __future__ import annotations

import dataclasses

RESUMABLE = ("eval_every", "checkpoint_every", "keep_checkpoints")
"""The fields a resumed run may change: they decide when, never what, it computes."""


@dataclasses.dataclass
class CadenceConfig:
    """Evaluations and checkpoints of a run. Defaults: the on-policy RL algorithms' (PPO, DPPO)."""

    eval_every: int = 10
    """Evaluate every this many units of the owner's (its ``cadence`` docstring names them), and
    at the end (RL also before training); 0: only then."""
    eval_episodes: int = 10
    """Episodes per evaluation (seeds ``eval_seed …``)."""
    eval_seed: int = 100_000
    """First evaluation seed, apart from the training seeds (Diffusion Policy tests from
    100000)."""
    eval_envs: int = 5
    """Environments evaluating in parallel."""
    checkpoint_every: int = 10
    """Checkpoint every this many units of the owner's, and at the end; 0: only at the end
    (and, in behaviour cloning, after every evaluation)."""
    keep_checkpoints: int = 2
    """Newest checkpoints kept (besides those a link such as ``best`` names)."""

    def __post_init__(self) -> None:
        for name in ("eval_episodes", "eval_envs", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("eval_every", "eval_seed", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
