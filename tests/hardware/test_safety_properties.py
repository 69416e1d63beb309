"""Safety-filter properties over thousands of generated hostile inputs (R1)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hardware.safety import FilterState, SafetyLimits, check_chunk, filter_command

PROPERTY = settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
SPECIAL = np.array([np.nan, np.inf, -np.inf, 1e308, -1e308, 5e-324, -0.0, 0.0, 1e20, -1e20])

# Hypothesis draws the structure (sizes, which limits exist, dt, a seed); numpy draws the values
# from the seed, mixing ordinary numbers, values at and one ulp past each limit, and hostile
# ones (NaN, ±inf, ±1e308, subnormals). Thousands of cases stay fast on a busy 2-core machine.


@st.composite
def limits_strategy(
    draw: st.DrawFn, workspace: bool = False, accel: bool | None = None
) -> SafetyLimits:
    n = draw(st.integers(1, 7))
    rng = np.random.default_rng(draw(st.integers(0, 2**32)))
    lower = rng.uniform(-5, 5, n)
    box = None
    if workspace and n >= 3:
        corner = rng.uniform(-3, 3, 3)
        box = (tuple(corner), tuple(corner + rng.uniform(0.01, 6)))
    return SafetyLimits(
        lower=tuple(lower),
        upper=tuple(lower + rng.uniform(0.01, 10, n)),
        max_step=tuple(10 ** rng.uniform(-4, 0, n)),
        max_velocity=tuple(10 ** rng.uniform(-3, 1, n)),
        max_acceleration=tuple(10 ** rng.uniform(-2, 3, n))
        if (draw(st.booleans()) if accel is None else accel)
        else None,
        gripper=draw(st.sampled_from([None, (0.0, 1.0), (-1.0, 2.5)])),
        gripper_max_step=float(10 ** rng.uniform(-3, 0)) if draw(st.booleans()) else None,
        workspace_lower=None if box is None else box[0],
        workspace_upper=None if box is None else box[1],
    )


def hostile(rng: np.random.Generator, limits: SafetyLimits, size: int, spread: float) -> np.ndarray:
    """``size`` values: around the limits (some exactly at them or one ulp past) or hostile."""
    low = np.resize(np.asarray(limits.action_lower, dtype=float), size)
    high = np.resize(np.asarray(limits.action_upper, dtype=float), size)
    kind, coin = rng.integers(0, 6, size), rng.random(size) < 0.5
    x = rng.uniform(low - spread, high + spread)
    x = np.where(kind == 1, np.where(coin, low, high), x)
    past = np.where(coin, np.nextafter(low, -np.inf), np.nextafter(high, np.inf))
    x = np.where(kind == 2, past, x)
    return np.where(kind == 3, rng.choice(SPECIAL, size), x)


@st.composite
def hostile_case(draw: st.DrawFn, workspace: bool = False, steady: bool = False):
    """A hostile command; ``steady``: acceleration limits and a valid last command."""
    limits = draw(limits_strategy(workspace=workspace, accel=True if steady else None))
    rng = np.random.default_rng(draw(st.integers(0, 2**32)))
    da, n = limits.action_size, limits.dof
    size = draw(st.sampled_from([da, da, da, da - 1, da + 1]))
    clean = draw(st.sampled_from([0, 0, 1, 2]))  # 0: hostile, 1: near limits, 2: tiny moves
    if draw(st.integers(0, 20)) == 0:
        command = draw(st.sampled_from([None, "x", [[1.0]], (), [object()]]))
    elif clean == 2:
        command = np.resize(np.asarray(limits.action_lower, dtype=float), size)
    else:
        command = hostile(rng, limits, size, 1.0 if clean else 1e3)
    last = None if draw(st.booleans()) and not steady else hostile(rng, limits, da, 0.5)
    if last is not None and (steady or draw(st.booleans())):
        last = np.clip(np.nan_to_num(last), limits.action_lower, limits.action_upper)
    state = FilterState(
        measured=hostile(rng, limits, draw(st.sampled_from([da, n])), 0.5),
        last_command=last,
        last_velocity=None
        if draw(st.booleans())
        else rng.choice([1, 1, 20, np.nan]) * rng.standard_normal(n),
    )
    dt = draw(st.floats(1e-4, 0.1))
    return limits, command, state, dt


def box_fk(q: np.ndarray) -> np.ndarray:
    """A stand-in forward kinematics: the first three joints are the ee position."""
    return np.asarray(q[:3], dtype=np.float64)


def within_limits(limits: SafetyLimits, x: np.ndarray) -> bool:
    return bool(((x >= limits.action_lower) & (x <= limits.action_upper)).all())


def valid_previous(limits: SafetyLimits, state: FilterState) -> bool:
    prev = state.last_command
    return (
        prev is not None
        and prev.shape == (limits.action_size,)
        and bool(np.isfinite(prev).all())
        and within_limits(limits, prev)
    )


def check_safe(
    limits: SafetyLimits, state: FilterState, dt: float, out: np.ndarray, report
) -> None:
    n = limits.dof
    assert out.shape == (limits.action_size,) and out.dtype == np.float64
    assert np.isfinite(out).all(), out
    assert within_limits(limits, out), (out, limits)
    if not valid_previous(limits, state):
        return
    prev = state.last_command
    delta = np.abs(out[:n] - prev[:n])
    step, vmax = np.asarray(limits.max_step), np.asarray(limits.max_velocity)
    assert (delta <= step * (1 + 1e-9) + 1e-12).all(), (delta, step)
    assert (delta / dt <= vmax * (1 + 1e-9) + 1e-9).all(), (delta / dt, vmax)
    if limits.gripper is not None and limits.gripper_max_step is not None:
        assert abs(out[n] - prev[n]) <= limits.gripper_max_step * (1 + 1e-9) + 1e-12
    if report.held:
        assert np.array_equal(out[:n], prev[:n])


@PROPERTY
@given(hostile_case())
def test_output_is_always_finite_and_within_limits(case) -> None:
    limits, command, state, dt = case
    out, report = filter_command(command, state, limits, dt)
    check_safe(limits, state, dt, out, report)
    assert np.isfinite(report.velocity).all()


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(hostile_case(workspace=True))
def test_output_stays_in_the_workspace_or_holds(case) -> None:
    limits, command, state, dt = case
    fk = box_fk if limits.has_workspace else None
    out, report = filter_command(command, state, limits, dt, fk=fk)
    check_safe(limits, state, dt, out, report)
    if limits.has_workspace and not report.held:
        lo, hi = np.array(limits.workspace_lower), np.array(limits.workspace_upper)
        gap = lambda ee: np.linalg.norm(np.maximum(np.maximum(lo - ee, ee - hi), 0))  # noqa: E731
        assert gap(box_fk(out)) == 0 or gap(box_fk(out)) < gap(box_fk(report.reference))


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(hostile_case(steady=True))
def test_acceleration_bound_holds_unless_stopping(case) -> None:
    limits, command, state, dt = case
    assert limits.max_acceleration is not None and valid_previous(limits, state)
    out, report = filter_command(command, state, limits, dt)
    stages = [c.stage for c in report.clips]
    if report.held or (
        "acceleration" in stages and "position" in stages[stages.index("acceleration") :]
    ):
        return  # a hold, or a stop at a limit: stopping is always allowed
    n, amax = limits.dof, np.asarray(limits.max_acceleration)
    cap = np.minimum(limits.max_velocity, np.asarray(limits.max_step) / dt)
    v0 = state.last_velocity if state.last_velocity is not None else np.zeros(n)
    v0 = np.clip(np.nan_to_num(np.asarray(v0, float), nan=0, posinf=0, neginf=0), -cap, cap)
    v = (out[:n] - state.last_command[:n]) / dt
    assert (np.abs(v - v0) <= amax * dt * (1 + 1e-6) + 1e-9).all(), (v, v0, amax * dt)


@st.composite
def safe_case(draw: st.DrawFn):
    limits = draw(limits_strategy())
    rng = np.random.default_rng(draw(st.integers(0, 2**32)))
    n, da = limits.dof, limits.action_size
    lo, hi = np.array(limits.action_lower), np.array(limits.action_upper)
    prev = lo + (hi - lo) * rng.uniform(0, 1, da)
    dt = draw(st.floats(1e-3, 0.1))
    cap = 0.99 * np.minimum(limits.max_velocity, np.asarray(limits.max_step) / dt)
    v0 = cap * rng.uniform(-1, 1, n)
    amax = np.inf if limits.max_acceleration is None else np.asarray(limits.max_acceleration)
    v = np.clip(v0 + rng.uniform(-1, 1, n) * np.minimum(amax * dt * 0.99, 2 * cap), -cap, cap)
    command = prev.copy()
    command[:n] = prev[:n] + v * dt
    if limits.gripper is not None:
        gs = limits.gripper_max_step
        g = rng.uniform(0, 1)
        command[n] = lo[n] + g * (hi[n] - lo[n]) if gs is None else prev[n] + (g - 0.5) * gs
    assume(within_limits(limits, command))
    return limits, command, FilterState(prev, prev, v0), dt


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(safe_case())
def test_a_safe_command_passes_unchanged(case) -> None:
    limits, command, state, dt = case
    out, report = filter_command(command, state, limits, dt)
    assert not report.modified, report
    assert np.array_equal(out, command)
    assert check_chunk(command[None], state, limits, dt).accepted


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_check_chunk_accepts_exactly_what_the_filter_passes(data) -> None:
    limits, command, state, dt = data.draw(safe_case())
    chunk = np.array([command, command, command])
    index = data.draw(st.integers(0, 2))
    chunk[index, data.draw(st.integers(0, limits.action_size - 1))] += data.draw(
        st.sampled_from([0.0, 1e-3, 0.5, 50.0, np.nan])
    )
    verdict = check_chunk(chunk, state, limits, dt)
    current = state
    for t, action in enumerate(chunk):
        out, report = filter_command(action, current, limits, dt)
        if report.modified:
            assert not verdict.accepted and verdict.step == t
            assert verdict.limit == report.clips[0].stage and verdict.joint == report.clips[0].joint
            return
        current = current.after(out, report)
    assert verdict.accepted
