"""A recording process SIGKILLed at random moments loses at most the episode in flight; every
committed episode reads back identical and a resumed recording continues the numbering (R12,
R13). The full 100-kill campaign: ``python -m hardware.testing.recorder_crash --kills 100``."""

from __future__ import annotations

import pytest

from hardware.testing.recorder_crash import run_campaign


@pytest.mark.slow
def test_random_sigkills_lose_nothing_committed(tmp_path):
    report = run_campaign(tmp_path / "crash.zarr", kills=25, seed=1)
    assert report.kills == 25
    assert (report.lost, report.corrupt, report.misnumbered) == (0, 0, 0)
    assert report.verified == report.committed
    assert report.committed >= 5, "the recorder hardly got going; the test proved little"
