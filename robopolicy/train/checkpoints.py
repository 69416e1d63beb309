"""The checkpoints of a training run, written so that a kill at any moment leaves them usable.

    <out>/checkpoints/step-0001200/     one checkpoint (a policy checkpoint plus trainer state)
        config.json model.safetensors normalizer.* card.json    robopolicy.load_policy reads it
        trainer_state/state.{safetensors,json}                  what resuming needs
    <out>/checkpoints/latest -> step-0001200   the newest complete checkpoint
    <out>/checkpoints/best   -> step-0000800   the best by evaluation (else validation loss)

A checkpoint is built in a hidden sibling directory, every file fsynced, and renamed into place
(``robopolicy.atomic.staged_directory``); ``latest`` and ``best`` are relative symlinks replaced
by ``os.replace`` of a fresh link, so each names a complete checkpoint at every instant
(``docs/RELIABILITY.md`` R14). Pruning keeps the newest ``keep_last`` checkpoints and the
targets of both links, and renames a victim to a hidden name before deleting it, so a half-deleted
directory never looks like a checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from robopolicy.atomic import staged_directory

LATEST, BEST = "latest", "best"
STATE_DIR = "trainer_state"
_STEP = re.compile(r"^step-(\d+)$")


def step_name(step: int) -> str:
    """Directory name of the checkpoint at ``step``."""
    return f"step-{step:07d}"


class CheckpointDir:
    """The ``checkpoints`` directory of one run."""

    def __init__(self, root: str | Path, *, keep_last: int = 3) -> None:
        self.root = Path(root)
        self.keep_last = keep_last

    def steps(self) -> list[int]:
        """Steps of the complete checkpoints present, ascending."""
        if not self.root.is_dir():
            return []
        found = (_STEP.match(p.name) for p in self.root.iterdir() if p.is_dir())
        return sorted(int(m.group(1)) for m in found if m)

    def link(self, name: str) -> Path | None:
        """The checkpoint ``latest`` or ``best`` names, or None."""
        path = self.root / name
        return path.resolve() if path.is_symlink() and path.resolve().is_dir() else None

    def write(self, step: int, fill: Callable[[Path], None]) -> Path:
        """Build checkpoint ``step`` by ``fill(directory)`` and move it into place, atomically."""
        path = self.root / step_name(step)
        with staged_directory(path, overwrite=True) as staging:
            fill(staging)
            _fsync_tree(staging)
        return path

    def point(self, name: str, step: int) -> None:
        """Make link ``name`` name checkpoint ``step`` (atomically replacing the old link)."""
        target = step_name(step)
        if not (self.root / target).is_dir():
            raise FileNotFoundError(self.root / target)
        tmp = self.root / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
        os.symlink(target, tmp)
        try:
            os.replace(tmp, self.root / name)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync(self.root)

    def prune(self) -> list[int]:
        """Delete checkpoints beyond the newest ``keep_last`` that no link names; return them."""
        steps = self.steps()
        linked = {p.name for p in (self.link(LATEST), self.link(BEST)) if p is not None}
        victims = [s for s in steps[: -self.keep_last] if step_name(s) not in linked]
        for step in victims:
            doomed = self.root / f".{step_name(step)}.deleting-{uuid.uuid4().hex[:8]}"
            os.replace(self.root / step_name(step), doomed)
            shutil.rmtree(doomed, ignore_errors=True)
        return victims

    def clean(self) -> None:
        """Remove what a killed writer left: staging, half-deleted and temporary entries."""
        if not self.root.is_dir():
            return
        for path in self.root.iterdir():
            if path.name.startswith("."):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """fsync every file and directory under ``root`` (so the rename publishes durable data)."""
    for directory, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                _fsync(Path(directory) / name)
        _fsync(Path(directory))
