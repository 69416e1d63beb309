"""The ee adapter's workspace comes from the daemon's config, by default ``arm-push``'s."""

from __future__ import annotations

import numpy as np
import pytest

from hardware.daemon.adapters import make_adapter
from hardware.daemon.config import ControlConfig
from hardware.sim_arm import SimArm, arm6_spec
from robopolicy.config import apply_overrides
from sim.builtin.push import WORKSPACE_HIGH, WORKSPACE_LOW
from tests.hardware.daemon_helpers import META

EE_META = {**META, "action_dim": 2, "obs": {"state": {"shape": [2, 3], "dtype": "float32"}}}


def test_the_default_is_the_arm_push_workspace() -> None:
    config = ControlConfig()
    assert config.ee_workspace_lower == tuple(WORKSPACE_LOW)
    assert config.ee_workspace_upper == tuple(WORKSPACE_HIGH)


def test_targets_are_clipped_to_the_configured_workspace() -> None:
    narrow = apply_overrides(
        ControlConfig(), ["ee_workspace_lower=[0.30,-0.05]", "ee_workspace_upper=[0.40,0.05]"]
    )
    reached = {}
    for name, config in (("default", ControlConfig()), ("narrow", narrow)):
        adapter = make_adapter(EE_META, arm6_spec(), config)
        start = np.array([0.35, 0.0, config.ee_height])
        home = SimArm().arm.home
        q = adapter.arm.ik(start, adapter.rotation, home, iterations=50)
        joints = adapter.to_joint(np.full((60, 2), 5.0), np.append(q, 1.0))  # far off the table
        reached[name] = adapter.arm.fk(joints[-1, :6])[0]
    assert reached["narrow"] == pytest.approx([0.40, 0.05, narrow.ee_height], abs=3e-3)
    assert reached["default"][:2] == pytest.approx([0.62, 0.28], abs=3e-3)


@pytest.mark.parametrize(
    "bad",
    [
        {"ee_workspace_lower": (0.7, 0.0)},  # above the upper corner in x
        {"ee_workspace_upper": (0.62, float("nan"))},
        {"ee_workspace_lower": (0.15,)},
    ],
)
def test_a_bad_workspace_is_refused(bad: dict) -> None:
    with pytest.raises(ValueError, match="ee_workspace"):
        ControlConfig(**bad)
