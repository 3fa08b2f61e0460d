"""Jerk-limited interpolation of low-rate targets into high-rate set-points.

A planner sends one target every 0.1-1 s; the arm needs smooth set-points at >= 100 Hz that start from where the
previous motion is (position, velocity and acceleration continuous) and respect velocity, acceleration and jerk
limits. Each new target starts a quintic polynomial from the current set-point state to the target at rest; its
duration is the requested one, lengthened until every sampled velocity, acceleration and jerk is within limits.
The same generator serves joint space (7 joints) and Cartesian space (xyz + rotation vector relative to the start).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_CHECK_SAMPLES = 64
_MAX_STRETCHES = 40
_STRETCH = 1.15


@dataclass(frozen=True)
class MotionLimits:
    """Per-axis bounds on velocity, acceleration and jerk (arrays broadcastable to the state size)."""

    velocity: np.ndarray
    acceleration: np.ndarray
    jerk: np.ndarray

    def scaled(self, factor: float) -> MotionLimits:
        """Limits scaled as a dynamics factor does: v * f, a * f, j * f."""
        return MotionLimits(self.velocity * factor, self.acceleration * factor, self.jerk * factor)


class QuinticSegment:
    """x(t) on [0, T] with x, x', x'' given at both ends (target at rest); constant at the target after T."""

    def __init__(self, x0: np.ndarray, v0: np.ndarray, a0: np.ndarray, x1: np.ndarray, duration: float) -> None:
        self.x0, self.v0, self.a0, self.x1 = (np.asarray(v, dtype=np.float64) for v in (x0, v0, a0, x1))
        self.duration = float(duration)
        T = max(self.duration, 1e-9)
        d = self.x1 - self.x0 - self.v0 * T - 0.5 * self.a0 * T**2
        # Coefficients of t^3, t^4, t^5 so that x(T) = x1 and x'(T) = x''(T) = 0.
        dv = -self.v0 - self.a0 * T
        da = -self.a0
        self._c3 = (10 * d - 4 * dv * T + 0.5 * da * T**2) / T**3
        self._c4 = (-15 * d + 7 * dv * T - da * T**2) / T**4
        self._c5 = (6 * d - 3 * dv * T + 0.5 * da * T**2) / T**5

    def sample(self, t: float | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(x, x', x'', x''') at time(s) t; a scalar t gives arrays of the state size, an array adds a leading axis."""
        t_arr = np.clip(np.asarray(t, dtype=np.float64), 0.0, self.duration)[..., None]
        after = np.asarray(t, dtype=np.float64)[..., None] >= self.duration
        c0, c1, c2 = self.x0, self.v0, 0.5 * self.a0
        c3, c4, c5 = self._c3, self._c4, self._c5
        x = c0 + t_arr * (c1 + t_arr * (c2 + t_arr * (c3 + t_arr * (c4 + t_arr * c5))))
        v = c1 + t_arr * (2 * c2 + t_arr * (3 * c3 + t_arr * (4 * c4 + t_arr * 5 * c5)))
        a = 2 * c2 + t_arr * (6 * c3 + t_arr * (12 * c4 + t_arr * 20 * c5))
        j = 6 * c3 + t_arr * (24 * c4 + t_arr * 60 * c5)
        x = np.where(after, self.x1, x)
        v, a, j = (np.where(after, 0.0, arr) for arr in (v, a, j))
        return x, v, a, j

    def within(self, limits: MotionLimits, tolerance: float = 1e-9) -> bool:
        ts = np.linspace(0.0, self.duration, _CHECK_SAMPLES)
        _, v, a, j = self.sample(ts)
        return bool(
            np.all(np.abs(v) <= limits.velocity + tolerance)
            and np.all(np.abs(a) <= limits.acceleration + tolerance)
            and np.all(np.abs(j) <= limits.jerk + tolerance)
        )


def plan_segment(
    x0: np.ndarray, v0: np.ndarray, a0: np.ndarray, x1: np.ndarray, limits: MotionLimits, min_duration: float = 0.0
) -> QuinticSegment:
    """The quintic from (x0, v0, a0) to x1 at rest that meets `limits`, no shorter than `min_duration`.

    The starting duration is the rest-to-rest lower bound (peak v = 1.875 d/T, a = 5.774 d/T^2, j = 60 d/T^3), and a
    moving start only ever needs longer; the loop stretches it until sampled derivatives are inside the limits.
    """
    x0, v0, a0, x1 = (np.asarray(v, dtype=np.float64) for v in (x0, v0, a0, x1))
    distance = np.abs(x1 - x0)
    duration = max(
        float(min_duration),
        float(np.max(1.875 * distance / limits.velocity)),
        float(np.max(np.sqrt(5.774 * distance / limits.acceleration))),
        float(np.max(np.cbrt(60.0 * distance / limits.jerk))),
        # Bringing the current velocity and acceleration to rest takes time even for a zero-length move.
        float(np.max(2.0 * np.abs(v0) / limits.acceleration)),
        float(np.max(np.sqrt(2.0 * np.abs(a0) / limits.jerk) * 2.0)),
        1e-3,
    )
    segment = QuinticSegment(x0, v0, a0, x1, duration)
    for _ in range(_MAX_STRETCHES):
        if segment.within(limits):
            return segment
        duration *= _STRETCH
        segment = QuinticSegment(x0, v0, a0, x1, duration)
    return segment


class SetpointInterpolator:
    """Streams set-points towards the newest target; retargeting mid-motion keeps x, x', x'' continuous."""

    def __init__(self, x: np.ndarray, limits: MotionLimits) -> None:
        x = np.asarray(x, dtype=np.float64)
        self.limits = limits
        self._segment = QuinticSegment(x, np.zeros_like(x), np.zeros_like(x), x, 0.0)
        self._t0 = 0.0

    def reset(self, x: np.ndarray, now: float) -> None:
        """Jump to x at rest (only when the arm is known to be there, e.g. after (re)arming)."""
        x = np.asarray(x, dtype=np.float64)
        self._segment = QuinticSegment(x, np.zeros_like(x), np.zeros_like(x), x, 0.0)
        self._t0 = now

    def retarget(self, target: np.ndarray, now: float, min_duration: float = 0.0) -> float:
        """Start moving towards `target`; returns the planned duration in seconds."""
        x, v, a, _ = self._segment.sample(now - self._t0)
        self._segment = plan_segment(x, v, a, target, self.limits, min_duration)
        self._t0 = now
        return self._segment.duration

    def sample(self, now: float) -> tuple[np.ndarray, np.ndarray]:
        """Set-point position and velocity at `now`."""
        x, v, _, _ = self._segment.sample(now - self._t0)
        return x, v

    @property
    def target(self) -> np.ndarray:
        return self._segment.x1

    def done(self, now: float) -> bool:
        return now - self._t0 >= self._segment.duration
