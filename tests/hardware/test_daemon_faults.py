"""The fault-injection campaign (issue 7, RELIABILITY.md): ``robopolicy control`` driving SimArm
in its own process, the policy server in another, a fault proxy on loopback between them, and
this test as the director, switching driver faults inside the daemon through the test-only
fault channel; every fault class at least five times, and a scorecard whose harm counts — read
from the daemons' tick logs and exit statuses — must be zero.

The campaign is paced by the daemon's recovery, not by a clock (:mod:`hardware.testing.campaign`),
so a loaded machine makes it slower, not flaky. Set ``ROBOPOLICY_SCORECARD`` to a path to keep
the scorecard JSON.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hardware.testing.campaign import FAULTS, Campaign

SESSIONS = 5


@pytest.mark.slow
def test_fault_injection_campaign_scorecard(tmp_path: Path) -> None:
    campaign = Campaign(tmp_path, seed=7)
    try:
        campaign.run(SESSIONS)
    finally:
        card = campaign.close()
    card.write(os.environ.get("ROBOPOLICY_SCORECARD") or tmp_path / "scorecard.json")
    print("\n" + card.table())
    assert set(card.faults) == {*FAULTS, "estop_mid_motion"}
    for kind, counts in card.faults.items():
        assert counts["injected"] == SESSIONS and counts["survived"] == SESSIONS, kind
    assert all(value == 0 for value in card.harm.values()), card.harm
    assert card.commands_checked > 100 * SESSIONS  # the zero counts come from real writes
    bad = card.bad_inputs
    # every bad chunk the server made was refused, by the server (NaN) or the daemon
    for kind in ("nan_action", "out_of_range_chunk"):
        assert bad[kind]["tried"] >= 3 * SESSIONS and bad[kind]["passed"] == 0, bad[kind]
        assert bad[kind]["rejected"] == bad[kind]["tried"], bad[kind]
    assert bad["nan_action"]["rejected_server"] >= 2 * SESSIONS
    assert bad["out_of_range_chunk"]["rejected_daemon"] >= 3 * SESSIONS
    flips = bad["corrupt_reply"]
    assert flips["tried"] == 2 * SESSIONS == flips["rejected"] + flips["passed"], flips
    assert card.episodes_logged >= SESSIONS and card.ticks_logged > 0
