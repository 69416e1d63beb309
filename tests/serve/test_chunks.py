"""Timed chunks and the plan, in virtual time, and that they import without torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from robopolicy.serve.chunks import (
    Chunk,
    DelayEstimate,
    Plan,
    PlanConfig,
    committed_steps,
    ensemble_weights,
)

PERIOD = 0.1
TICKS = PlanConfig(tolerance=0.5)
"""A consumer taking one action per tick, the nearest."""


def chunk(values: list[float], due: float, start: int = 0) -> Chunk:
    return Chunk(np.asarray(values, float)[:, None], due, PERIOD, start)


def test_plan_interpolates_linearly_or_holds() -> None:
    actions = np.array([[0.0] * 7, [1.0] * 7, [2.0] * 7])
    chunk = Chunk(actions, 1.0, 0.1, seq=1)
    linear, hold = Plan(PlanConfig("linear")), Plan(PlanConfig("hold"))
    for plan in (linear, hold):
        assert plan.add(chunk, 1.0, current=None) == 0
    assert linear.sample(1.05)[0] == pytest.approx(0.5)
    assert hold.sample(1.05)[0] == 0.0 and hold.sample(1.1)[0] == 1.0
    assert linear.sample(1.3) is None and linear.last_due == pytest.approx(1.2)
    bridged = Plan(PlanConfig("linear"))
    assert bridged.add(chunk, 1.05, current=np.full(7, -1.0)) == 1  # 1.0 is overdue
    assert bridged.sample(1.05)[0] == -1.0 and bridged.sample(1.075)[0] == pytest.approx(0.0)


def test_stale_actions_are_dropped_in_virtual_time():
    plan = Plan(TICKS)
    plan.add(chunk([9, 0, 1, 2, 3, 4], due=10.0, start=1), 9.9)  # index 0 is history
    assert plan.next(9.9) is None  # not due yet: hold
    assert plan.next(10.0).action.tolist() == [0]
    first = plan.next(10.1)
    assert first.action.tolist() == [1] and first.due == pytest.approx(10.1)
    late = plan.next(10.36)  # ticks 10.2 and 10.3 passed: dropped, 10.4 is due
    assert late.action.tolist() == [4] and plan.dropped == 2
    assert plan.next(10.5) is None and plan.pending() == 0


@pytest.mark.parametrize("k", [0.01, 0.5, -0.3])
def test_overlapping_chunks_blend_with_act_weights(k):
    plan = Plan(PlanConfig(blend="ensemble", ensemble_k=k, tolerance=0.5))
    plan.add(chunk([0, 1, 2, 3], due=0.0), 0.0)  # oldest
    plan.add(chunk([10, 20, 30], due=0.1), 0.0)  # overlaps ticks 1..3
    plan.add(chunk([100, 200], due=0.2), 0.0)  # newest, overlaps ticks 2..3
    assert plan.next(0.0).action.tolist() == [0]
    w = ensemble_weights(2, k)
    assert w == pytest.approx(np.exp(-k * np.arange(2)) / np.exp(-k * np.arange(2)).sum())
    assert plan.next(0.1).action[0] == pytest.approx(w @ [1, 10])
    three = plan.next(0.2)
    assert three.sources == 3
    assert three.action[0] == pytest.approx(ensemble_weights(3, k) @ [2, 20, 100])


def test_latest_replaces_and_prefix_gives_the_committed_actions():
    plan = Plan(TICKS)
    plan.add(chunk([0, 1, 2, 3, 4, 5], due=0.0), 0.0)
    for now in (0.0, 0.1, 0.2):
        plan.next(now)
    plan.add(chunk([7, 10, 20, 30], due=0.3, start=1), 0.3)  # a new chunk, history at 0.2
    assert plan.next(0.3).action.tolist() == [10]
    # a chunk about to be requested with "now" at 0.4 and To - 1 = 1: index 0 is tick 0.3
    prefix, frozen = plan.prefix(due=0.4, start=1, delay_steps=2)
    assert prefix[:, 0].tolist() == [10, 20, 30] and frozen == 3


def test_prefix_samples_the_plan_on_the_new_chunks_grid():
    plan = Plan()
    plan.add(chunk([0, 10, 20, 30, 40], due=1.0), 1.0)  # knots 1.0 .. 1.4
    prefix, frozen = plan.prefix(due=1.13, start=1, delay_steps=2)  # index j at 1.03 + 0.1 j
    assert prefix[:, 0] == pytest.approx([3, 13, 23, 33]) and frozen == 3
    assert plan.prefix(due=1.5, start=1, delay_steps=2)[0][:, 0].tolist() == [40]
    fields = plan.prefix_fields(1.13, 1, 2)
    assert fields["prefix"].shape == (1, 4, 1) and fields["prefix"].dtype == np.float32
    assert fields["frozen"] == 3 and Plan().prefix_fields(1.13, 1, 2) == {}


def test_a_chunk_with_committed_actions_joins_after_them():
    """Real-time chunking: the plan runs on unchanged until the new chunk's last committed
    tick, where its own target becomes a knot, then takes the new chunk's free actions;
    nothing is bridged from now. A hand-over already past keeps the knots before the first
    free action."""
    plan = Plan()
    plan.add(chunk([0, 10, 20, 30, 40, 50], due=1.0), 1.0)  # knots 1.0 .. 1.5
    copy = plan.copy()
    new = Chunk(np.array([[-1.0], [-2.0], [-3.0], [36.0], [44.0]]), 1.05, PERIOD, committed=3)
    assert plan.live(new, 1.12).tolist() == [False, False, False, True, True]
    assert plan.add(new, 1.12, current=np.array([99.0])) == 1  # 1.05 was overdue
    assert plan.times == pytest.approx([1.0, 1.1, 1.2, 1.25, 1.35, 1.45])
    assert plan.actions[:, 0] == pytest.approx([0, 10, 20, 25, 36, 44])
    assert plan.sample(1.22)[0] == pytest.approx(22.0)  # still the old chunk
    assert copy.times == pytest.approx(np.arange(1.0, 1.55, 0.1))  # a copy is its own
    late = copy.copy()
    assert late.add(new, 1.27, current=np.array([27.0])) == 3
    assert late.times == pytest.approx([1.0, 1.1, 1.2, 1.3, 1.35, 1.45])
    assert late.actions[:, 0].tolist() == [0, 10, 20, 30, 36, 44]
    with pytest.raises(ValueError, match="committed"):
        Chunk(np.zeros((2, 1)), 0.0, PERIOD, committed=3)


def test_committed_steps_and_the_delay_estimate():
    assert [committed_steps(d, PERIOD) for d in (0.0, 0.05, 0.1, 0.3, 0.31)] == [2, 2, 3, 5, 5]
    estimate = DelayEstimate(quantile=0.5, window=3)
    assert estimate.seconds() == 0.0 and estimate.steps(PERIOD) == 2
    for delay in (0.5, 0.1, 0.2, float("nan"), 0.3):
        estimate.add(delay)
    assert estimate.seconds() == pytest.approx(0.2) and estimate.steps(PERIOD) == 4
    with pytest.raises(ValueError, match="quantile"):
        DelayEstimate(quantile=2.0)


def test_reply_chunks_and_validation():
    info = {"due": np.array([5.0, 6.0]), "period": PERIOD, "start": 1}
    got = Chunk.from_reply(np.zeros((2, 4, 3)), info, row=1)
    assert (got.due, got.start, got.actions.shape, got.time_of(3)) == (6.0, 1, (4, 3), 6.2)
    with pytest.raises(ValueError, match="due time"):
        Chunk.from_reply(np.zeros((1, 4, 3)), {"period": PERIOD, "start": 1})
    with pytest.raises(ValueError, match="period"):
        Plan().add(chunk([1], 0.0), 0.0) or Chunk(np.zeros((2, 1)), 0.0, 0.0)


def test_imports_without_torch():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None
        from robopolicy.serve.chunks import Plan
        from robopolicy.serve import PolicyClient
        print([m for m in sys.modules if m.startswith("torch") and sys.modules[m]])
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
