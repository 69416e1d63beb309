"""``Rate``: ticks due every period from the start; an overrun skips the ticks it missed."""

from __future__ import annotations

import pytest

from hardware.clock import Rate, VirtualClock


def test_ticks_are_due_every_period_and_overruns_skip_ticks() -> None:
    clock = VirtualClock(10.0)
    rate = Rate(clock, 0.1)
    assert rate.due == 10.0
    clock.advance(0.03)  # the tick's work
    assert rate.wait() == 0 and clock.monotonic() == pytest.approx(10.1)
    clock.advance(0.25)  # at 10.35: the tick due at 10.2 is skipped, the one at 10.3 runs now
    assert rate.wait() == 1
    assert rate.due == pytest.approx(10.3) and clock.monotonic() == pytest.approx(10.35)
    with pytest.raises(ValueError, match="period"):
        Rate(clock, 0.0)
