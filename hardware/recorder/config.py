"""``RecorderConfig``: where and how the recorder writes."""

from __future__ import annotations

import dataclasses
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class RecorderConfig:
    """Settings of one recording session (the setup — robot, cameras, fps — is separate)."""

    path: Path
    """The episode store (a zarr directory); created when absent, resumed when present."""
    queue_frames: int = 64
    """Frames the control loop may be ahead of the writer; past that a frame is dropped
    (counted) rather than making the loop wait."""
    task: str | None = None
    """Natural-language task of the episodes, stored as the store's task 0."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        if self.queue_frames < 1:
            raise ValueError(f"queue_frames must be >= 1, got {self.queue_frames}")
        if self.task is not None and not self.task.strip():
            raise ValueError("task must be None or non-empty text")
