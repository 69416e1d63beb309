"""The client-side action scheduler, in virtual time, and that it imports without torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from robopolicy.inference.schedule import (
    ActionChunk,
    ActionScheduler,
    SchedulerConfig,
    ensemble_weights,
)

PERIOD = 0.1


def chunk(values: list[float], due: float, start: int = 0) -> ActionChunk:
    return ActionChunk(np.asarray(values, float)[:, None], due, PERIOD, start)


def test_stale_actions_are_dropped_in_virtual_time():
    scheduler = ActionScheduler()
    scheduler.add(chunk([9, 0, 1, 2, 3, 4], due=10.0, start=1))  # index 0 is history
    assert scheduler.next(9.9) is None  # not due yet: hold
    assert scheduler.next(10.0).action.tolist() == [0]
    first = scheduler.next(10.1)
    assert first.action.tolist() == [1] and first.due == pytest.approx(10.1)
    late = scheduler.next(10.36)  # ticks 10.2 and 10.3 passed: dropped, 10.4 is due
    assert late.action.tolist() == [4] and scheduler.dropped == 2
    assert scheduler.next(10.5) is None and scheduler.pending() == 0


@pytest.mark.parametrize("k", [0.01, 0.5, -0.3])
def test_overlapping_chunks_blend_with_act_weights(k):
    scheduler = ActionScheduler(SchedulerConfig(blend="ensemble", ensemble_k=k))
    scheduler.add(chunk([0, 1, 2, 3], due=0.0))  # oldest
    scheduler.add(chunk([10, 20, 30], due=0.1))  # overlaps ticks 1..3
    scheduler.add(chunk([100, 200], due=0.2))  # newest, overlaps ticks 2..3
    assert scheduler.next(0.0).action.tolist() == [0]
    w = ensemble_weights(2, k)
    assert w == pytest.approx(np.exp(-k * np.arange(2)) / np.exp(-k * np.arange(2)).sum())
    assert scheduler.next(0.1).action[0] == pytest.approx(w @ [1, 10])
    three = scheduler.next(0.2)
    assert three.sources == 3
    assert three.action[0] == pytest.approx(ensemble_weights(3, k) @ [2, 20, 100])


def test_latest_replaces_and_prefix_gives_the_committed_actions():
    scheduler = ActionScheduler()
    scheduler.add(chunk([0, 1, 2, 3, 4, 5], due=0.0))
    for now in (0.0, 0.1, 0.2):
        scheduler.next(now)
    scheduler.add(chunk([7, 10, 20, 30], due=0.3, start=1))  # a new chunk, history at 0.2
    assert scheduler.next(0.3).action.tolist() == [10]
    # a chunk about to be requested with "now" at 0.4 and To - 1 = 1: index 0 is tick 0.3
    prefix, frozen = scheduler.prefix(due=0.4, start=1, delay_steps=2)
    assert prefix[:, 0].tolist() == [10, 20, 30] and frozen == 3


def test_reply_chunks_and_validation():
    info = {"due": np.array([5.0, 6.0]), "period": PERIOD, "start": 1}
    got = ActionChunk.from_reply(np.zeros((2, 4, 3)), info, row=1)
    assert (got.due, got.start, got.actions.shape, got.time_of(3)) == (6.0, 1, (4, 3), 6.2)
    with pytest.raises(ValueError, match="due time"):
        ActionChunk.from_reply(np.zeros((1, 4, 3)), {"period": PERIOD, "start": 1})
    with pytest.raises(ValueError, match="period"):
        ActionScheduler().add(chunk([1], 0.0)) or ActionChunk(np.zeros((2, 1)), 0.0, 0.0)


def test_imports_without_torch():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None
        from robopolicy.inference.schedule import ActionScheduler
        from robopolicy.serve import PolicyClient
        print([m for m in sys.modules if m.startswith("torch") and sys.modules[m]])
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
