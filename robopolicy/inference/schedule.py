"""Client-side action scheduling: timed chunks in, one action per control tick out. numpy only
(no torch), so it runs beside the torch-free :class:`~robopolicy.serve.PolicyClient`.

Shapes: T actions in a chunk, Da action size. Times are seconds on the executor's monotonic
clock (``../shared/DESIGN.md``, "Time"): a chunk carries the time its action ``start`` is due
(``due``) and the control ``period``, so action ``start + j`` is due at ``due + j * period``;
actions before ``start`` are history (the server's reply: ``start = To - 1``, ``due``,
``period``; :meth:`ActionChunk.from_reply`).

:class:`ActionScheduler` keeps one slot per control tick (``round((time - origin) / period)``):

- **stale actions are dropped**: :meth:`~ActionScheduler.next` discards every slot whose time is
  more than ``tolerance * period`` before ``now`` (counted in ``dropped``), then returns the
  earliest slot if it is due (within the tolerance of ``now``), else None (hold);
- **overlapping chunks** either replace (``blend="latest"``: the newest chunk's action, as for
  real-time chunking, whose chunks already agree with the committed prefix) or are averaged
  (``blend="ensemble"``, ACT's temporal ensembling, Zhao et al. 2023): the predictions for one
  tick, oldest first, get weights ``w_i = exp(-k i)`` normalized to sum 1 (``k = ensemble_k``;
  ACT's 0.01 is nearly uniform, larger k trusts older chunks more, negative k newer ones);
- **real-time chunking**: :meth:`~ActionScheduler.prefix` gives the actions already planned or
  executed for the ticks of a chunk about to be requested (the inpainting target of
  :func:`robopolicy.inference.inpaint.sample_with_prefix`) and how many of them are committed:
  the history, plus those due before the new chunk can arrive (``delay_steps``).
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import math
from typing import Any, Literal

import numpy as np


@dataclasses.dataclass(frozen=True)
class ActionChunk:
    """Actions (T, Da) with the time action ``start`` is due and the period between actions."""

    actions: np.ndarray
    due: float
    period: float
    start: int = 0

    def __post_init__(self) -> None:
        actions = np.asarray(self.actions, dtype=np.float64)
        if actions.ndim != 2 or not len(actions):
            raise ValueError(f"actions must be (T, Da) with T >= 1, got {actions.shape}")
        if not (self.period > 0 and math.isfinite(self.due)):
            raise ValueError(f"need a positive period and a finite due time: {self.period}")
        if not 0 <= self.start < len(actions):
            raise ValueError(f"start must index the chunk, got {self.start}")
        object.__setattr__(self, "actions", actions)

    @classmethod
    def from_reply(cls, actions: np.ndarray, info: dict[str, Any], row: int = 0) -> ActionChunk:
        """Row ``row`` of an ``infer`` reply (needs ``due``: send ``obs.timestamp``)."""
        if info.get("due") is None or not info.get("period"):
            raise ValueError("the reply has no due time or period (send timestamps; fps)")
        due = float(np.asarray(info["due"])[row])
        return cls(np.asarray(actions)[row], due, float(info["period"]), int(info["start"]))

    def time_of(self, index: int) -> float:
        """When action ``index`` is due."""
        return self.due + (index - self.start) * self.period


@dataclasses.dataclass(frozen=True)
class ScheduledAction:
    """What :meth:`ActionScheduler.next` returns."""

    action: np.ndarray
    """(Da,) the (blended) action."""
    due: float
    """Its time."""
    sources: int
    """How many chunks predicted it."""


@dataclasses.dataclass
class SchedulerConfig:
    """How :class:`ActionScheduler` merges chunks."""

    blend: Literal["latest", "ensemble"] = "latest"
    """``latest``: the newest chunk's action; ``ensemble``: ACT's weighted average."""
    ensemble_k: float = 0.01
    """k of the ensemble weights ``exp(-k i)``, i = 0 for the oldest prediction."""
    tolerance: float = 0.5
    """How far from ``now``, in periods, an action still counts as due (late or early)."""
    history: int = 64
    """Executed actions remembered (for real-time chunking prefixes)."""

    def __post_init__(self) -> None:
        if self.blend not in ("latest", "ensemble"):
            raise ValueError(f"blend must be latest or ensemble, got {self.blend!r}")
        if not (0 <= self.tolerance < 1 and math.isfinite(self.ensemble_k)):
            raise ValueError("tolerance must be in [0, 1) and ensemble_k finite")
        if self.history < 0:
            raise ValueError(f"history must be >= 0, got {self.history}")


class ActionScheduler:
    """Timed chunks in, the action due now out (module docstring)."""

    def __init__(self, config: SchedulerConfig | None = None) -> None:
        self.config = config or SchedulerConfig()
        self.period: float | None = None
        self.origin = 0.0
        self.dropped = 0
        self._slots: dict[int, list[tuple[int, np.ndarray]]] = {}
        self._done: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        self._chunks = 0

    def tick(self, time: float) -> int:
        """The control tick of ``time``."""
        if self.period is None:
            raise RuntimeError("no chunk yet: the period is unknown")
        return round((time - self.origin) / self.period)

    def add(self, chunk: ActionChunk) -> None:
        """Schedule the actions of ``chunk`` from its ``start`` on."""
        if self.period is None:
            self.period, self.origin = chunk.period, chunk.due
        elif not math.isclose(chunk.period, self.period, rel_tol=1e-6):
            raise ValueError(f"chunk period {chunk.period} differs from {self.period}")
        first = self.tick(chunk.due)
        seq, self._chunks = self._chunks, self._chunks + 1
        for j in range(chunk.start, len(chunk.actions)):
            slot = first + j - chunk.start
            if slot in self._done:
                continue  # already executed
            entries = self._slots.setdefault(slot, [])
            if self.config.blend == "latest":
                entries.clear()
            entries.append((seq, chunk.actions[j]))

    def pending(self) -> int:
        """Ticks with an action still to execute."""
        return len(self._slots)

    def next(self, now: float) -> ScheduledAction | None:
        """The action to execute at ``now``, or None when none is due (hold the last one).
        Drops the actions whose time has passed."""
        if self.period is None:
            return None
        late = now - self.config.tolerance * self.period
        for slot in sorted(self._slots):
            if self.origin + slot * self.period >= late:
                break
            self.dropped += 1
            del self._slots[slot]
        if not self._slots:
            return None
        slot = min(self._slots)
        due = self.origin + slot * self.period
        if due > now + self.config.tolerance * self.period:
            return None
        entries = self._slots.pop(slot)
        action = self._blend([a for _, a in sorted(entries, key=lambda e: e[0])])
        self._done[slot] = action
        while len(self._done) > self.config.history:
            self._done.popitem(last=False)
        return ScheduledAction(action, due, len(entries))

    def _blend(self, actions: list[np.ndarray]) -> np.ndarray:
        if len(actions) == 1:
            return actions[0].copy()
        weights = ensemble_weights(len(actions), self.config.ensemble_k)
        return np.tensordot(weights, np.stack(actions), axes=1)

    def prefix(self, due: float, start: int, delay_steps: int) -> tuple[np.ndarray, int]:
        """The inpainting target of a chunk about to be requested whose action ``start`` is due
        at ``due``: ``(prefix (L, Da), frozen)``. ``prefix[j]`` is the action executed or
        planned for that chunk's index j (L stops at the first index with neither); the first
        ``frozen = min(L, start + delay_steps)`` are committed (history and the actions due
        before the new chunk can arrive)."""
        if self.period is None:
            return np.zeros((0, 0)), 0
        first = self.tick(due) - start
        rows = []
        for j in itertools.count():
            slot = first + j
            if slot in self._done:
                rows.append(self._done[slot])
            elif slot in self._slots:
                entries = sorted(self._slots[slot], key=lambda e: e[0])
                rows.append(self._blend([a for _, a in entries]))
            else:
                break
        if not rows:
            return np.zeros((0, 0)), 0
        return np.stack(rows), min(len(rows), start + delay_steps)


def ensemble_weights(n: int, k: float) -> np.ndarray:
    """(n,) ACT's temporal-ensembling weights, oldest first: ``exp(-k i)`` normalized."""
    weights = np.exp(-k * np.arange(n))
    return weights / weights.sum()
