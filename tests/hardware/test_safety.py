"""The safety filter stage by stage, chunk verdicts and limit validation."""

from __future__ import annotations

import numpy as np
import pytest

from hardware.driver import ArmState, JointSpec
from hardware.safety import FilterState, SafetyLimits, check_chunk, filter_command

LIMITS = SafetyLimits(
    lower=(-1.0, -1.0),
    upper=(1.0, 1.0),
    max_step=(0.1, 0.1),
    max_velocity=(2.0, 2.0),
    max_acceleration=(100.0, 100.0),
    names=("shoulder", "elbow"),
)
HOME = np.array([0.0, 0.0, 0.5])
STEADY = FilterState(HOME, HOME, np.zeros(2))


def test_non_finite_command_holds_the_last_safe_command() -> None:
    state = FilterState(np.array([0.3, 0.3, 0.0]), HOME, np.zeros(2))  # measured has drifted
    out, report = filter_command([np.nan, 0.01, 0.5], state, LIMITS, 0.01)
    assert np.array_equal(out, HOME) and report.held
    assert [(c.stage, c.joint) for c in report.clips] == [("nonfinite", "shoulder")]
    out, report = filter_command([0.0, np.inf, -np.inf], state, LIMITS, 0.01)
    assert np.array_equal(out, HOME) and len(report.clips) == 2


def test_hold_falls_back_to_measured_then_to_mid_range() -> None:
    out, report = filter_command(
        None, ArmState(np.array([0.2, 2.0]), 0.0, gripper=0.3), LIMITS, 0.01
    )
    assert np.array_equal(out, [0.2, 1.0, 0.3]) and report.reference_ok  # clipped into limits
    out, report = filter_command([0, 0, 0], FilterState(np.array([np.nan, 0.5])), LIMITS, 0.01)
    assert not report.reference_ok
    out, report = filter_command([np.nan] * 3, FilterState(np.full(3, np.nan)), LIMITS, 0.01)
    assert np.array_equal(out, [0.0, 0.0, 0.5]) and not report.reference_ok


def test_stages_run_in_order_and_report_what_they_clipped() -> None:
    out, report = filter_command([5.0, 0.0, 0.5], STEADY, LIMITS, 0.01)
    assert [c.stage for c in report.clips] == ["position", "step", "velocity", "acceleration"]
    assert all(c.joint == "shoulder" for c in report.clips)
    assert report.clips[0].value == 5.0 and report.clips[0].bound == 1.0
    assert report.clips[1].value == pytest.approx(1.0) and report.clips[1].bound == 0.1
    assert report.clips[2].value == pytest.approx(10.0) and report.clips[2].bound == 2.0
    assert out[0] == pytest.approx(0.01) and out[1] == 0.0  # 100 rad/s² * 0.01 s * 0.01 s
    assert "shoulder: position 5 beyond 1" in str(report)


def test_gripper_range_and_step() -> None:
    limits = SafetyLimits.from_spec(_spec(), max_step=0.1, gripper_max_step=0.2)
    out, report = filter_command([0.0, 0.0, 7.0], FilterState(HOME, HOME), limits, 0.01)
    assert out[2] == pytest.approx(0.7) and [c.stage for c in report.clips] == ["gripper"] * 2


def test_workspace_box_holds() -> None:
    limits = SafetyLimits(
        lower=(-1.0,) * 3,
        upper=(1.0,) * 3,
        max_step=(1.0,) * 3,
        max_velocity=(100.0,) * 3,
        workspace_lower=(-0.5, -0.5, 0.0),
        workspace_upper=(0.5, 0.5, 0.5),
    )
    here = np.array([0.1, 0.1, 0.1, 0.0])
    out, report = filter_command(
        [0.2, 0.1, 0.1, 1.0], FilterState(here, here), limits, 0.01, fk=box_fk
    )
    assert not report.modified and out[0] == 0.2
    out, report = filter_command(
        [0.1, 0.1, -0.2, 1.0], FilterState(here, here), limits, 0.01, fk=box_fk
    )
    assert report.held and np.array_equal(out[:3], here[:3]) and out[3] == 1.0
    assert (report.clips[0].stage, report.clips[0].joint, report.clips[0].bound) == (
        "workspace",
        "eez",
        0.0,
    )
    with pytest.raises(ValueError, match="fk"):
        filter_command(here, FilterState(here, here), limits, 0.01)


def test_workspace_with_the_arm6_forward_kinematics() -> None:
    from hardware.sim_arm import SimArm

    arm = SimArm()
    limits = SafetyLimits.from_spec(
        arm.spec, max_step=0.5, workspace=((0.0, -0.5, 0.05), (0.6, 0.5, 0.6))
    )
    home = np.append(arm.arm.home, 0.0)
    state = FilterState(home, home)
    out, report = filter_command(home, state, limits, 0.01, fk=arm.ee_position)
    assert not report.modified
    down = home.copy()
    down[1] += 0.5  # lean the shoulder forward: the tool goes through the table
    out, report = filter_command(down, state, limits, 0.5, fk=arm.ee_position)
    assert report.held and report.clips[-1].joint == "eez" and np.array_equal(out, home)


def test_chunk_rejections_name_the_step_joint_and_limit(caplog) -> None:
    ok = np.array([[0.01, 0.0, 0.5], [0.02, 0.0, 0.5], [0.03, 0.0, 0.5]])
    assert check_chunk(ok, STEADY, LIMITS, 0.01)
    bad = ok.copy()
    bad[2, 1] = np.nan
    verdict = check_chunk(bad, STEADY, LIMITS, 0.01)
    assert (verdict.accepted, verdict.step, verdict.joint, verdict.limit) == (
        False,
        2,
        "elbow",
        "nonfinite",
    )
    assert "step 2, elbow: nonfinite" in verdict.reason and "rejected" in caplog.text
    bad = ok.copy()
    bad[1, 0] = 0.3  # 28 rad/s from step 0
    verdict = check_chunk(bad, STEADY, LIMITS, 0.01)
    assert (verdict.step, verdict.joint, verdict.limit, verdict.bound) == (
        1,
        "shoulder",
        "step",
        0.1,
    )
    bad = ok.copy()
    bad[0, 2] = 1.5
    assert check_chunk(bad, STEADY, LIMITS, 0.01).limit == "gripper"
    for shape_bad in ([], [[0.0, 0.0]], [["a", "b", "c"]], np.zeros((2, 2, 3))):
        verdict = check_chunk(shape_bad, STEADY, LIMITS, 0.01)
        assert not verdict.accepted and verdict.limit == "shape"


def test_limits_validate_every_field() -> None:
    with pytest.raises(ValueError, match="lower"):
        SafetyLimits(lower=(1.0,), upper=(0.0,), max_step=(0.1,), max_velocity=(1.0,))
    with pytest.raises(ValueError, match="max_step"):
        SafetyLimits(lower=(0.0,), upper=(1.0,), max_step=(0.0,), max_velocity=(1.0,))
    with pytest.raises(ValueError, match="max_velocity must be 1 finite"):
        SafetyLimits(lower=(0.0,), upper=(1.0,), max_step=(0.1,), max_velocity=(np.nan,))
    with pytest.raises(ValueError, match="workspace"):
        SafetyLimits(
            lower=(0.0,),
            upper=(1.0,),
            max_step=(0.1,),
            max_velocity=(1.0,),
            workspace_lower=(0, 0, 0),
        )
    with pytest.raises(ValueError, match="dt"):
        filter_command(HOME, STEADY, LIMITS, 0.0)


def box_fk(q: np.ndarray) -> np.ndarray:
    """A stand-in forward kinematics: the first three joints are the ee position."""
    return np.asarray(q[:3], dtype=np.float64)


def _spec() -> JointSpec:
    return JointSpec(("a", "b"), (-1.0, -1.0), (1.0, 1.0), (2.0, 2.0))


def test_an_arm_outside_the_box_may_only_move_back_toward_it() -> None:
    limits = SafetyLimits(
        lower=(-2.0,) * 3,
        upper=(2.0,) * 3,
        max_step=(1.0,) * 3,
        max_velocity=(100.0,) * 3,
        gripper=None,
        workspace_lower=(-0.5, -0.5, 0.0),
        workspace_upper=(0.5, 0.5, 0.5),
    )
    outside = np.array([1.0, 0.0, 0.2])
    state = FilterState(outside, outside)
    out, report = filter_command([0.9, 0.0, 0.2], state, limits, 0.01, fk=box_fk)
    assert not report.modified and out[0] == 0.9
    out, report = filter_command([1.1, 0.0, 0.2], state, limits, 0.01, fk=box_fk)
    assert report.held and np.array_equal(out, outside)
