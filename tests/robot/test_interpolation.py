"""Quintic set-point generation: boundary conditions, limits, continuity across retargets."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vjepa_ac.robot.interpolation import (
    MAX_SEGMENT_S,
    MotionLimits,
    QuinticSegment,
    SegmentRefused,
    SetpointInterpolator,
    plan_segment,
)
from vjepa_ac.robot.limits import PANDA

LIMITS = MotionLimits(PANDA.dq_max * 0.5, PANDA.ddq_max * 0.5, PANDA.dddq_max * 0.1)


def test_segment_meets_boundary_conditions():
    x0, v0, a0, x1 = np.array([0.0, 1.0]), np.array([0.3, -0.1]), np.array([1.0, 0.0]), np.array([0.5, 0.2])
    seg = QuinticSegment(x0, v0, a0, x1, 0.8)
    x, v, a, _ = seg.sample(0.0)
    np.testing.assert_allclose(np.concatenate([x, v, a]), np.concatenate([x0, v0, a0]), atol=1e-12)
    x, v, a, _ = seg.sample(0.8)
    np.testing.assert_allclose(np.concatenate([x, v, a]), np.concatenate([x1, [0, 0], [0, 0]]), atol=1e-9)
    x, v, _, _ = seg.sample(5.0)
    np.testing.assert_allclose(x, x1)
    np.testing.assert_allclose(v, 0.0)


def test_derivatives_match_finite_differences():
    seg = QuinticSegment(np.zeros(3), np.array([0.2, 0, -0.1]), np.array([0.5, 0, 0]), np.array([0.3, -0.2, 0.1]), 0.7)
    ts = np.linspace(0.05, 0.65, 13)
    _, v, a, _ = seg.sample(ts)
    h = 1e-6
    np.testing.assert_allclose((seg.sample(ts + h)[0] - seg.sample(ts - h)[0]) / (2 * h), v, atol=1e-5)
    np.testing.assert_allclose((seg.sample(ts + h)[1] - seg.sample(ts - h)[1]) / (2 * h), a, atol=1e-4)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-0.6, 0.6), min_size=7, max_size=7),
    st.lists(st.floats(-0.5, 0.5), min_size=7, max_size=7),
    st.floats(0.0, 1.0),
)
def test_planned_segments_respect_limits(delta, v_frac, min_duration):
    x0 = np.zeros(7)
    v0 = np.asarray(v_frac) * LIMITS.velocity
    seg = plan_segment(x0, v0, np.zeros(7), np.asarray(delta), LIMITS, min_duration)
    assert seg.duration >= min_duration
    _, v, a, j = seg.sample(np.linspace(0, seg.duration, 400))
    assert np.all(np.abs(v) <= LIMITS.velocity * 1.02)
    assert np.all(np.abs(a) <= LIMITS.acceleration * 1.02)
    assert np.all(np.abs(j) <= LIMITS.jerk * 1.02)


def test_retarget_keeps_position_velocity_and_acceleration_continuous():
    interp = SetpointInterpolator(np.zeros(7), LIMITS)
    interp.retarget(np.full(7, 0.3), now=0.0)
    before = interp._segment.sample(0.12)
    interp.retarget(np.full(7, -0.1), now=0.12)
    after = interp._segment.sample(0.0)
    for b, a in zip(before[:3], after[:3]):
        np.testing.assert_allclose(a, b, atol=1e-12)
    x, v = interp.sample(100.0)
    np.testing.assert_allclose(x, -0.1)
    np.testing.assert_allclose(v, 0.0)
    assert interp.done(100.0)


@pytest.mark.parametrize("rate_hz", [100, 250, 1000])
def test_streamed_setpoints_have_bounded_steps(rate_hz):
    interp = SetpointInterpolator(np.zeros(7), LIMITS)
    interp.reset(np.zeros(7), 0.0)
    interp.retarget(np.full(7, 0.4), now=0.0)
    ts = np.arange(0, 3.0, 1.0 / rate_hz)
    qs = np.array([interp.sample(t)[0] for t in ts])
    steps = np.abs(np.diff(qs, axis=0)) * rate_hz
    assert np.all(steps <= LIMITS.velocity * 1.02)
    np.testing.assert_allclose(qs[-1], 0.4, atol=1e-9)


BOUNDED = MotionLimits(LIMITS.velocity, LIMITS.acceleration, LIMITS.jerk, PANDA.q_min + 0.01, PANDA.q_max - 0.01)


def _dense_ok(seg, limits, samples=4000):
    """An independent dense check (finer than the planner's own guarantee)."""
    x, v, a, j = seg.sample(np.linspace(0, seg.duration, samples))
    ok = (np.all(np.abs(v) <= limits.velocity * (1 + 1e-6)) and np.all(np.abs(a) <= limits.acceleration * (1 + 1e-6))
          and np.all(np.abs(j) <= limits.jerk * (1 + 1e-6)))
    if limits.lower is not None:
        ok = ok and np.all(x >= limits.lower - 1e-9) and np.all(x <= limits.upper + 1e-9)
    return bool(ok)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.floats(0.0, 1.0), min_size=7, max_size=7),
    st.lists(st.floats(0.0, 1.0), min_size=7, max_size=7),
    st.lists(st.floats(-1.0, 1.0), min_size=7, max_size=7),
    st.lists(st.floats(-1.0, 1.0), min_size=7, max_size=7),
    st.floats(0.0, 3.0),
)
def test_a_segment_is_within_its_limits_or_refused(start, goal, v_frac, a_frac, min_duration):
    """Regression: from in-limit moving start states `plan_segment` returned segments hundreds of seconds long and
    far beyond the velocity limit. Now every returned segment is within the limits (checked densely here) and no
    longer than MAX_SEGMENT_S, or the call raises SegmentRefused."""
    lo, hi = BOUNDED.lower, BOUNDED.upper
    x0 = lo + np.asarray(start) * (hi - lo)
    x1 = lo + np.asarray(goal) * (hi - lo)
    v0 = np.asarray(v_frac) * BOUNDED.velocity
    a0 = np.asarray(a_frac) * BOUNDED.acceleration
    try:
        seg = plan_segment(x0, v0, a0, x1, BOUNDED, min_duration)
    except SegmentRefused:
        return
    assert min_duration <= seg.duration <= MAX_SEGMENT_S
    assert _dense_ok(seg, BOUNDED)


def test_the_reported_long_home_is_refused_or_within_limits():
    """A `home` planned while moving with a large start acceleration: the old planner returned the last stretched
    segment even though it broke the limits."""
    x0 = np.array([0.0, -0.6, 0.0, -2.4, 0.0, 1.9, 0.0])
    v0 = LIMITS.velocity * 0.9
    a0 = LIMITS.acceleration * 0.9
    home = np.array([0.0, -0.3, 0.0, -2.0, 0.0, 1.8, 0.785])
    try:
        seg = plan_segment(x0, v0, a0, home, LIMITS)
    except SegmentRefused:
        return
    assert seg.duration <= MAX_SEGMENT_S and _dense_ok(seg, LIMITS)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-1.0, 1.0), min_size=7, max_size=7), st.lists(st.floats(-1.0, 1.0), min_size=7, max_size=7))
def test_braking_from_any_in_limit_motion_stays_within_limits(v_frac, a_frac):
    interp = SetpointInterpolator(np.zeros(7), BOUNDED)
    x = np.array([0.0, -0.6, 0.0, -2.4, 0.0, 1.9, 0.0])
    interp.follow(QuinticSegment(x, np.asarray(v_frac) * BOUNDED.velocity * 0.5,
                                 np.asarray(a_frac) * BOUNDED.acceleration * 0.5, x + 0.3, 5.0), 0.0)
    before = interp.segment
    try:
        interp.brake(0.0)
    except SegmentRefused:
        assert interp.segment is before  # refused: the running segment stays
        return
    x_b, v_b, a_b = interp.state(0.0)
    np.testing.assert_allclose(np.concatenate([x_b, v_b, a_b]), np.concatenate(before.sample(0.0)[:3]), atol=1e-9)
    assert _dense_ok(interp.segment, BOUNDED)
