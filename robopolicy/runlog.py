"""What a long run leaves for a person to read: TensorBoard scalars, a JSONL, a PNG of curves.

    log = RunLog(out_dir)                 # appends when resuming into the same directory
    log.scalars(step, {"train/loss": 0.1, "eval/success": 0.4})
    log.plot()                            # out_dir/curves.png, one panel per scalar prefix
    log.close()

``scalars.jsonl`` is the source of truth (one JSON object per line, flushed per call), so a run
killed at any moment keeps its history; a resumed run drops lines past the step it resumes from
(:meth:`RunLog.truncate`) so curves never show a step twice.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from robopolicy.atomic import atomic_write_bytes

SCALARS = "scalars.jsonl"
CURVES = "curves.png"


class RunLog:
    """Scalars of one run in ``out_dir``: ``scalars.jsonl``, TensorBoard events, ``curves.png``."""

    def __init__(self, out_dir: str | Path, *, tensorboard: bool = True) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.out_dir / SCALARS
        self._file = self.path.open("a", encoding="utf-8")
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.out_dir / "tensorboard"))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Record ``values`` (name -> number) at ``step``; non-finite numbers are kept as null."""
        clean = {k: float(v) for k, v in values.items()}
        row = {"step": int(step), **{k: v if math.isfinite(v) else None for k, v in clean.items()}}
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self._writer is not None:
            for name, value in clean.items():
                self._writer.add_scalar(name, value, int(step))

    def history(self) -> dict[str, list[tuple[int, float]]]:
        """Every recorded scalar as (step, value) pairs, in the order recorded."""
        series: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for row in read_scalars(self.path):
            step = row.pop("step")
            for name, value in row.items():
                if value is not None:
                    series[name].append((step, value))
        return dict(series)

    def truncate(self, step: int) -> None:
        """Forget rows recorded after ``step`` (a resumed run repeats them)."""
        kept = [row for row in read_scalars(self.path) if row["step"] <= step]
        self._file.close()
        atomic_write_bytes(self.path, "".join(json.dumps(r) + "\n" for r in kept).encode())
        self._file = self.path.open("a", encoding="utf-8")

    def plot(self, path: str | Path | None = None, *, title: str = "") -> Path:
        """Write a PNG with one small panel per scalar, grouped by the name's prefix (before
        ``/``) in reading order: each curve gets its own axis, so a success rate is never
        flattened beside a return or a counter."""
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure

        path = Path(path or self.out_dir / CURVES)
        series = sorted(self.history().items(), key=lambda item: (item[0].split("/")[0], item[0]))
        columns = min(3, max(1, len(series)))
        rows = max(1, math.ceil(len(series) / columns))
        fig = Figure(figsize=(4 * columns, 2.4 * rows + (0.4 if title else 0)), dpi=100)
        for i, (name, points) in enumerate(series):
            ax = fig.add_subplot(rows, columns, i + 1)
            steps, values = zip(*points, strict=True)
            ax.plot(steps, values, marker="." if len(points) < 30 else None)
            ax.set_title(name, fontsize=9, loc="left")
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if i >= len(series) - columns:
                ax.set_xlabel("step", fontsize=8)
        if title:
            fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
        return path

    def close(self) -> None:
        self._file.close()
        if self._writer is not None:
            self._writer.close()

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_scalars(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``scalars.jsonl``; a torn last line (a kill mid-write) is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows
