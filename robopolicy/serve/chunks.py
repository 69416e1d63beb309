"""Action chunks on the executor's clock: the timed chunk, the overdue rule and the plan.

numpy only (no torch): it runs beside the torch-free :class:`~robopolicy.serve.PolicyClient`,
in the control daemon (:mod:`hardware.daemon`) and in the client's
:class:`~robopolicy.serve.client.PolicyDriver`.

Shapes: T actions in a chunk, Da action size, N knots in a plan. Times are seconds on the
executor's monotonic clock (``docs/DESIGN.md``, "Time"). A :class:`Chunk` carries the time its
action ``start`` is due (``due``) and the control ``period``: action ``start + j`` is due at
``due + j * period``; actions before ``start`` are history (in a server reply ``start`` is
To - 1 and ``due`` the newest observation's sensing time, ``protocol.md``).

- **Overdue actions are dropped, never executed** (:func:`overdue`): an action whose time is
  more than the plan's slack (``tolerance`` periods, 0 for the daemon) and :data:`TIME_EPS`
  before now. :meth:`Plan.add` drops a chunk's overdue actions and counts them;
  :meth:`Plan.next` drops the knots it did not take in time.
- **The plan** is what a consumer executes: knots ``(time, action)``. A chunk joins it with
  ``blend="latest"`` (its actions still to come replace the plan's; a consumer that samples
  passes the command it executes, which becomes the first knot) or ``"ensemble"`` (ACT's
  temporal ensembling, Zhao et al. 2023: the predictions of one tick, oldest first, weigh
  ``exp(-k i)`` normalized; ACT's k = 0.01 is nearly uniform, larger k trusts older chunks
  more, negative k newer ones). A consumer either **samples** it at any time
  (:meth:`Plan.sample`: linear between knots or zero-order hold; the daemon, every control
  tick) or **takes** one knot per policy tick (:meth:`Plan.next`: each knot at most once; a
  script stepping an environment). :meth:`Plan.wants` says when to ask for the next chunk:
  ``lead`` seconds before the chunk's ``execute`` (Ta) actions are done, never sooner than one
  period after its first.
- **Real-time chunking** (Black et al. 2025): :meth:`Plan.prefix` gives the actions executed
  or planned for the ticks of a chunk about to be requested (the ``prefix`` of an infer
  request, inpainted by :func:`robopolicy.inference.inpaint.sample_with_prefix`) and how many
  are committed: the history and those due before the reply can take over (``delay_steps``,
  :func:`committed_steps` of the :class:`DelayEstimate`). A chunk that says how many of its
  actions were committed (``Chunk.committed``) joins the plan after them: the plan runs on
  unchanged until the chunk's last committed tick and heads for its first free action from
  there, so the executor goes on with the old chunk until the new one is due.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import itertools
import math
import threading
from typing import Any

import numpy as np

TIME_EPS = 1e-6
"""Times closer than this (s) are the same time: float noise never decides whether an action
is due or overdue."""
INTERPOLATIONS = ("linear", "hold")
BLENDS = ("latest", "ensemble")


def overdue(times: np.ndarray | float, now: float, slack: float = 0.0) -> np.ndarray:
    """Whether actions due at ``times`` have passed at ``now``: more than ``slack`` seconds
    (and :data:`TIME_EPS`) before it."""
    return np.asarray(times) < now - slack - TIME_EPS


def committed_steps(delay: float, period: float) -> int:
    """Actions from a chunk's ``start`` to commit when its reply takes over ``delay`` seconds
    after its observation, ``floor(delay / period) + 2``: those due by then, the one the
    executor is moving towards, and one more, so that the last committed tick is still to come
    at the hand-over and the plan can take the new chunk over there (:meth:`Plan.add`)."""
    return math.floor(max(delay, 0.0) / period + TIME_EPS) + 2


class DelayEstimate:
    """The inference delay an executor measures: seconds from a chunk's observation to the
    moment its chunk is handed over, as the ``quantile`` of the latest ``window`` ones.
    Thread-safe (one thread adds, another reads)."""

    def __init__(self, quantile: float = 0.9, window: int = 32) -> None:
        if not (0 <= quantile <= 1 and window >= 1):
            raise ValueError(f"need a quantile in [0, 1] and window >= 1: {quantile}, {window}")
        self.quantile = quantile
        self._delays: collections.deque[float] = collections.deque(maxlen=window)
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        """One measured delay (a non-finite one is left out)."""
        if math.isfinite(seconds):
            with self._lock:
                self._delays.append(max(seconds, 0.0))

    def seconds(self) -> float:
        """The estimate (0 before the first measurement)."""
        with self._lock:
            delays = list(self._delays)
        return float(np.quantile(delays, self.quantile)) if delays else 0.0

    def steps(self, period: float) -> int:
        """:func:`committed_steps` of the estimate: the ``delay_steps`` of a prefix."""
        return committed_steps(self.seconds(), period)


def ensemble_weights(n: int, k: float) -> np.ndarray:
    """(n,) ACT's temporal-ensembling weights of one tick's predictions, oldest first:
    ``exp(-k i)`` normalized."""
    weights = np.exp(-k * np.arange(n))
    return weights / weights.sum()


@dataclasses.dataclass(frozen=True, eq=False)
class Chunk:
    """Actions (T, Da) with the time action ``start`` is due and the period between actions."""

    actions: np.ndarray
    """(T, Da) actions, float64; those before ``start`` are history."""
    due: float
    """When action ``start`` is due."""
    period: float
    """Seconds between consecutive actions."""
    start: int = 0
    """Index of the first action to execute."""
    seq: int = 0
    """Sequence number of the chunk within a run (1, 2, ...; 0: unnumbered)."""
    execute: int | None = None
    """Actions from ``start`` the policy executes before the next chunk (Ta); None: all."""
    committed: int = 0
    """Actions (from index 0) committed by the request's prefix (real-time chunking): the plan
    keeps its own knots for their ticks and takes this chunk from the next action on."""

    def __post_init__(self) -> None:
        actions = np.array(self.actions, dtype=np.float64)
        if actions.ndim != 2 or not len(actions):
            raise ValueError(f"actions must be (T, Da) with T >= 1, got {actions.shape}")
        if not (self.period > 0 and math.isfinite(self.due)):
            raise ValueError(f"need a positive period and a finite due time: {self.period}")
        if not 0 <= self.start < len(actions):
            raise ValueError(f"start must index the chunk, got {self.start}")
        if self.execute is not None and self.execute < 1:
            raise ValueError(f"execute must be >= 1, got {self.execute}")
        if not 0 <= self.committed <= len(actions):
            raise ValueError(f"committed must be in [0, T], got {self.committed}")
        object.__setattr__(self, "actions", actions)

    @classmethod
    def from_reply(
        cls,
        actions: np.ndarray,
        info: dict[str, Any],
        row: int = 0,
        *,
        seq: int = 0,
        execute: int | None = None,
    ) -> Chunk:
        """Row ``row`` of an ``infer`` reply (needs ``due``: send ``obs.timestamp``)."""
        if info.get("due") is None or not info.get("period"):
            raise ValueError("the reply has no due time or period (send timestamps; fps)")
        due = float(np.asarray(info["due"])[row])
        start = int(info["start"])
        return cls(np.asarray(actions)[row], due, float(info["period"]), start, seq, execute)

    @property
    def times(self) -> np.ndarray:
        """(T,) when each action is due."""
        return self.due + (np.arange(len(self.actions)) - self.start) * self.period

    def time_of(self, index: int) -> float:
        """When action ``index`` is due."""
        return self.due + (index - self.start) * self.period

    def live(self, now: float, slack: float = 0.0) -> np.ndarray:
        """(T,) mask of the actions to execute (``start`` on) not overdue at ``now``."""
        mask = ~overdue(self.times, now, slack)
        mask[: self.start] = False
        return mask


@dataclasses.dataclass(frozen=True)
class PlanConfig:
    """How a :class:`Plan` merges chunks and is executed."""

    interpolation: str = "linear"
    """:meth:`Plan.sample` between knots: ``"linear"``, or ``"hold"`` each action until the
    next is due (zero-order hold)."""
    blend: str = "latest"
    """How a chunk joins the plan: ``"latest"`` replaces the actions still to come (as for
    real-time chunking, whose chunks already agree with the committed prefix); ``"ensemble"``
    averages each tick's predictions with ACT's weights."""
    ensemble_k: float = 0.01
    """k of the ensemble weights ``exp(-k i)``, i = 0 for the oldest prediction."""
    tolerance: float = 0.0
    """Slack of the overdue rule, in periods: 0 for a consumer that samples every control tick
    (the daemon); one that takes an action per policy tick (:meth:`Plan.next`) needs some to
    absorb its jitter (0.5: the nearest tick)."""
    lead: float = 0.0
    """Seconds before a chunk's ``execute`` actions are done that the next chunk is wanted
    (the time a request takes)."""
    history: int = 64
    """Knots kept once their time has passed (the executed part of real-time prefixes)."""

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}")
        if self.blend not in BLENDS:
            raise ValueError(f"blend must be latest or ensemble, got {self.blend!r}")
        if not (0 <= self.tolerance < 1 and math.isfinite(self.ensemble_k)):
            raise ValueError("tolerance must be in [0, 1) and ensemble_k finite")
        if not (self.lead >= 0 and self.history >= 0):
            raise ValueError("lead and history must be >= 0")


@dataclasses.dataclass(frozen=True, eq=False)
class DueAction:
    """What :meth:`Plan.next` returns."""

    action: np.ndarray
    """(Da,) the (blended) action."""
    due: float
    """Its time."""
    sources: int
    """How many chunks predicted it."""


class Plan:
    """The trajectory a consumer executes: knots ``(time, action)`` (module docstring)."""

    def __init__(self, config: PlanConfig | None = None) -> None:
        self.config = config or PlanConfig()
        self.dropped = 0
        """Overdue actions dropped so far, by :meth:`add` and :meth:`next`."""
        self.clear()

    def clear(self) -> None:
        """Forget every knot (the executed ones too)."""
        self.times = np.zeros(0)
        """(N,) knot times, increasing: the kept past ones, then the plan."""
        self.actions = np.zeros((0, 0))
        """(N, Da) knot actions."""
        self.period: float | None = None
        """The period of the newest chunk; None before the first."""
        self.seq = -1
        """Sequence number of the newest chunk added (-1: none)."""
        self.replan_at = float("-inf")
        """When the next chunk is wanted (see :meth:`wants`)."""
        self._count = np.zeros(0, dtype=np.int64)  # predictions blended into each knot
        self._next = 0  # the first knot :meth:`next` has not taken or dropped

    @property
    def empty(self) -> bool:
        return not len(self.times)

    @property
    def last_due(self) -> float:
        """Time of the last knot (-inf when there is none)."""
        return float(self.times[-1]) if len(self.times) else float("-inf")

    def pending(self) -> int:
        """Knots :meth:`next` has not taken or dropped yet."""
        return len(self.times) - self._next

    def wants(self, now: float) -> bool:
        """Whether to ask for the next chunk at ``now``: the newest chunk's ``replan_at`` has
        come, or nothing is pending."""
        return now >= self.replan_at - TIME_EPS or not self.pending()

    def live(self, chunk: Chunk, now: float) -> np.ndarray:
        """(T,) mask of ``chunk``'s actions the plan would take at ``now``: still to come under
        this plan's slack, and not committed (``chunk.committed``: the plan keeps its own)."""
        mask = chunk.live(now, self.config.tolerance * chunk.period)
        mask[: chunk.committed] = False
        return mask

    def copy(self) -> Plan:
        """An independent copy: what another thread may read while this plan changes."""
        other = copy.copy(self)
        for name in ("times", "actions", "_count"):
            setattr(other, name, getattr(self, name).copy())
        return other

    def add(self, chunk: Chunk, now: float, current: np.ndarray | None = None) -> int:
        """Merge ``chunk`` at ``now``; returns how many of its actions were overdue (dropped).

        Knots whose time has passed, or that :meth:`next` took, stay as history. A chunk with
        committed actions (real-time chunking) takes over at its last committed tick: the
        plan's knots before it stay, the plan's own target then becomes a knot (the old chunk
        runs on unchanged until then), and the chunk's actions follow from its first free one;
        where that tick has passed or lies beyond the plan, the plan's knots before the first
        free action stay instead. A chunk with nothing left to come leaves the plan unchanged.
        ``current``, the command a sampling consumer executes, becomes the first knot of a
        replaced plan when the first action still to come is later than ``now`` and no knot is
        kept past ``now``, so the targets move smoothly from it.
        """
        slack = self.config.tolerance * chunk.period
        coming = chunk.live(now, slack)
        dropped = int(len(coming) - chunk.start - coming.sum())
        self.dropped += dropped
        live = self.live(chunk, now)
        if not live.any():
            return dropped
        cut = max(self._next, int(np.searchsorted(self.times, now - slack - TIME_EPS)))
        held = None  # the plan's own target at the hand-over
        if chunk.committed:
            handover = chunk.time_of(chunk.committed - 1)
            held = self.sample(handover) if handover > now + TIME_EPS else None
            end = handover if held is not None else chunk.time_of(chunk.committed)
            cut = max(cut, int(np.searchsorted(self.times, end - TIME_EPS)))
        kept = self.times[cut - 1] if cut else float("-inf")
        live &= chunk.times > kept + TIME_EPS  # a tick taken already is never planned again
        if not live.any():
            return dropped
        times, actions = chunk.times[live], chunk.actions[live]
        if held is not None:
            times = np.concatenate([[handover], times])
            actions = np.concatenate([held[None], actions])
        count = np.ones(len(times), dtype=np.int64)
        if self.config.blend == "ensemble" and cut < len(self.times):
            times, actions, count = self._blend(cut, times, actions, chunk.period)
        elif current is not None and times[0] > now + TIME_EPS and kept < now:
            times = np.concatenate([[now], times])
            actions = np.concatenate([np.asarray(current, dtype=np.float64)[None], actions])
            count = np.concatenate([[1], count])
        first = max(cut - self.config.history, 0)  # forget the oldest history
        self.times = np.concatenate([self.times[first:cut], times])
        self.actions = np.concatenate(
            [self.actions[first:cut].reshape(-1, actions.shape[1]), actions]
        )
        self._count = np.concatenate([self._count[first:cut], count])
        self._next = max(self._next - first, 0)
        self.period, self.seq = chunk.period, chunk.seq
        executed = len(chunk.actions) - chunk.start
        executed = min(chunk.execute or executed, executed)
        self.replan_at = chunk.due + max(executed * chunk.period - self.config.lead, chunk.period)
        return dropped

    def _blend(
        self, cut: int, times: np.ndarray, actions: np.ndarray, period: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The plan's knots from ``cut`` on with the new predictions averaged in: a knot
        within half a period of a new one is the same tick; the newest of its n predictions
        weighs ``ensemble_weights(n)[-1]`` in the running mean."""
        plan_t, plan_a = list(self.times[cut:]), list(self.actions[cut:])
        plan_c = list(self._count[cut:])
        for time, action in zip(times, actions, strict=True):
            near = np.abs(np.asarray(plan_t) - time)
            i = int(near.argmin())
            if near[i] < period / 2:
                plan_c[i] += 1
                weight = ensemble_weights(plan_c[i], self.config.ensemble_k)[-1]
                plan_a[i] = plan_a[i] + weight * (action - plan_a[i])
            else:
                plan_t.append(time)
                plan_a.append(action)
                plan_c.append(1)
        order = np.argsort(plan_t, kind="stable")
        return np.asarray(plan_t)[order], np.stack(plan_a)[order], np.asarray(plan_c)[order]

    def sample(self, t: float) -> np.ndarray | None:
        """The target at time ``t`` (a knot's action exactly at its time), or None before the
        first knot or after the last one."""
        times = self.times
        if not len(times) or t < times[0] - TIME_EPS or t > times[-1] + TIME_EPS:
            return None
        j = max(int(np.searchsorted(times, t + TIME_EPS, side="right")) - 1, 0)
        if self.config.interpolation == "hold" or j >= len(times) - 1 or t - times[j] <= TIME_EPS:
            return self.actions[j].copy()
        w = min(max((t - times[j]) / (times[j + 1] - times[j]), 0.0), 1.0)
        return (1.0 - w) * self.actions[j] + w * self.actions[j + 1]

    def next(self, now: float) -> DueAction | None:
        """The action to take at ``now``: the first knot not taken yet, if it is due (within
        the slack of ``now``), else None (hold the last one). Knots overdue before they were
        taken are dropped."""
        if self.period is None:
            return None
        slack = self.config.tolerance * self.period
        while self._next < len(self.times) and overdue(self.times[self._next], now, slack):
            self._next += 1
            self.dropped += 1
        i = self._next
        if i == len(self.times) or self.times[i] > now + slack + TIME_EPS:
            return None
        self._next += 1
        return DueAction(self.actions[i].copy(), float(self.times[i]), int(self._count[i]))

    def prefix(self, due: float, start: int, delay_steps: int) -> tuple[np.ndarray, int]:
        """The inpainting target of a chunk about to be requested whose action ``start`` is due
        at ``due``: ``(prefix (L, Da), frozen)``. ``prefix[j]`` is the plan's target (as
        :meth:`sample` gives it) at that chunk's index j, whose grid need not be the plan's;
        L stops at the first index the plan does not reach. The first
        ``frozen = min(L, start + delay_steps)`` are committed (history and the actions due
        before the new chunk can take over)."""
        rows: list[np.ndarray] = []
        for j in itertools.count():
            row = None if self.period is None else self.sample(due + (j - start) * self.period)
            if row is None:
                break
            rows.append(row)
        if not rows:
            return np.zeros((0, 0)), 0
        return np.stack(rows), min(len(rows), start + delay_steps)

    def prefix_fields(self, due: float, start: int, delay_steps: int) -> dict[str, Any]:
        """The ``prefix`` (1, L, Da) float32 and ``frozen`` fields of an infer request for the
        chunk of :meth:`prefix`; empty when the plan has nothing for its ticks."""
        prefix, frozen = self.prefix(due, start, delay_steps)
        if not len(prefix):
            return {}
        return {"prefix": prefix[None].astype(np.float32), "frozen": frozen}
