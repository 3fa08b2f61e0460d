"""Jerk-limited interpolation of low-rate targets into high-rate set-points.

A planner sends one target every 0.1-1 s; the arm needs smooth set-points at >= 100 Hz that start from where the
previous motion is (position, velocity and acceleration continuous) and respect velocity, acceleration and jerk
limits. Each new target starts a quintic polynomial from the current set-point state to the target at rest; its
duration is the requested one, lengthened until guaranteed bounds of velocity, acceleration, jerk (and position, if
bounded) over the whole segment are within the limits. A target that no segment of at most `MAX_SEGMENT_S` reaches
within the limits is refused (`SegmentRefused`): a segment is never handed out beyond its limits.
The same generator serves joint space (7 joints) and Cartesian space (xyz + rotation vector relative to the start).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_CHECK_SAMPLES = 256
_STRETCH = 1.1
MAX_SEGMENT_S = 20.0
"""Longest segment offered; a target that cannot be reached within the limits in this time is refused."""


class SegmentRefused(ValueError):
    """No segment from the given state stays within the limits; nothing was changed."""


@dataclass(frozen=True)
class MotionLimits:
    """Per-axis bounds on velocity, acceleration and jerk (arrays broadcastable to the state size) and, optionally,
    on position: every point of a segment must stay inside [lower, upper]."""

    velocity: np.ndarray
    acceleration: np.ndarray
    jerk: np.ndarray
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None

    def scaled(self, factor: float) -> MotionLimits:
        """Limits scaled as a dynamics factor does: v * f, a * f, j * f (position bounds unchanged)."""
        return MotionLimits(
            self.velocity * factor, self.acceleration * factor, self.jerk * factor, self.lower, self.upper
        )


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
        """Position, velocity, acceleration and jerk at time(s) t; a scalar t gives arrays of the state size, an
        array of times adds a leading axis."""
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

    def bounds(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Guaranteed per-axis bounds over the whole segment: (min x, max x, max |v|, max |a|, max |j|).

        Sampled extremes plus what the next derivative can add between two samples h apart (|f| can rise by at most
        max |f'| * h / 2 beyond the nearer sample); the snap 24 c4 + 120 c5 t is linear, so its maximum is at an end.
        """
        T = self.duration
        ts = np.linspace(0.0, T, _CHECK_SAMPLES)
        h = T / (_CHECK_SAMPLES - 1)
        x, v, a, j = self.sample(ts)
        snap = np.maximum(np.abs(24 * self._c4), np.abs(24 * self._c4 + 120 * self._c5 * T))
        j_max = np.abs(j).max(axis=0) + snap * h / 2
        a_max = np.abs(a).max(axis=0) + j_max * h / 2
        v_max = np.abs(v).max(axis=0) + a_max * h / 2
        return x.min(axis=0) - v_max * h / 2, x.max(axis=0) + v_max * h / 2, v_max, a_max, j_max

    def within(self, limits: MotionLimits, tolerance: float = 1e-9) -> bool:
        """True if every point of the segment is inside `limits` (a guarantee, not a sampled check)."""
        x_lo, x_hi, v, a, j = self.bounds()
        ok = bool(
            np.all(np.isfinite(x_lo)) and np.all(np.isfinite(x_hi))
            and np.all(v <= limits.velocity + tolerance)
            and np.all(a <= limits.acceleration + tolerance)
            and np.all(j <= limits.jerk + tolerance)
        )
        if ok and limits.lower is not None:
            ok = bool(np.all(x_lo >= limits.lower - tolerance))
        if ok and limits.upper is not None:
            ok = bool(np.all(x_hi <= limits.upper + tolerance))
        return ok


def plan_segment(
    x0: np.ndarray,
    v0: np.ndarray,
    a0: np.ndarray,
    x1: np.ndarray,
    limits: MotionLimits,
    min_duration: float = 0.0,
    max_duration: float = MAX_SEGMENT_S,
) -> QuinticSegment:
    """The shortest quintic (on a 10 % grid of durations) from (x0, v0, a0) to x1 at rest that stays within `limits`
    and lasts at least `min_duration`; raises `SegmentRefused` if none up to `max_duration` does.

    The search starts at the rest-to-rest lower bound (peak v = 1.875 d/T, a = 5.774 d/T^2, j = 60 d/T^3) and does not
    give up at the first duration that fails: with a start acceleration the velocity grows with T, so the feasible
    durations form a window that longer segments leave again.
    """
    x0, v0, a0, x1 = (np.asarray(v, dtype=np.float64) for v in (x0, v0, a0, x1))
    if not all(np.all(np.isfinite(v)) for v in (x0, v0, a0, x1)) or not np.isfinite(min_duration):
        raise SegmentRefused("non-finite start state or target")
    distance = np.abs(x1 - x0)
    duration = max(
        float(min_duration),
        float(np.max(1.875 * distance / limits.velocity)),
        float(np.max(np.sqrt(5.774 * distance / limits.acceleration))),
        float(np.max(np.cbrt(60.0 * distance / limits.jerk))),
        # Stopping the start velocity and acceleration takes at least this long at the limits.
        float(np.max(np.abs(v0) / limits.acceleration)),
        float(np.max(np.abs(a0) / limits.jerk)),
        1e-3,
    )
    while duration <= max_duration:
        segment = QuinticSegment(x0, v0, a0, x1, duration)
        if segment.within(limits):
            return segment
        duration *= _STRETCH
    raise SegmentRefused(f"no motion within the limits reaches the target in {max_duration:.0f} s from the set-point")


class SetpointInterpolator:
    """Streams set-points towards the newest target. Every change (retarget, brake) starts from the current
    set-point's position, velocity and acceleration; a refused change leaves the running segment in place."""

    def __init__(self, x: np.ndarray, limits: MotionLimits) -> None:
        x = np.asarray(x, dtype=np.float64)
        self.limits = limits
        self._segment = QuinticSegment(x, np.zeros_like(x), np.zeros_like(x), x, 0.0)
        self._t0 = 0.0

    def reset(self, x: np.ndarray, now: float) -> None:
        """Start over at x at rest: only when no set-point stream is running (arming after a stop), where the arm's
        measured pose is the truth."""
        x = np.asarray(x, dtype=np.float64)
        self._segment = QuinticSegment(x, np.zeros_like(x), np.zeros_like(x), x, 0.0)
        self._t0 = now

    def state(self, now: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Set-point position, velocity and acceleration at `now`."""
        x, v, a, _ = self._segment.sample(now - self._t0)
        return x, v, a

    def plan(self, target: np.ndarray, now: float, min_duration: float = 0.0) -> QuinticSegment:
        """The segment from the current set-point state to `target` (not yet followed); raises `SegmentRefused`."""
        x, v, a = self.state(now)
        return plan_segment(x, v, a, target, self.limits, min_duration)

    def follow(self, segment: QuinticSegment, now: float) -> float:
        """Stream `segment` from `now` (a segment from `plan` at the same `now`); returns its duration."""
        self._segment = segment
        self._t0 = now
        return segment.duration

    def retarget(self, target: np.ndarray, now: float, min_duration: float = 0.0) -> float:
        """Start moving towards `target`; returns the planned duration in seconds. Raises `SegmentRefused` (keeping
        the running segment) if no motion within the limits gets there."""
        return self.follow(self.plan(target, now, min_duration), now)

    def brake(self, now: float, start: tuple[np.ndarray, np.ndarray] | None = None) -> float:
        """Come to rest as soon as the limits allow, along the current direction of motion, from the current set-point
        or from `start` = (x, v) (e.g. the last set-point that was sent); returns the duration. Raises
        `SegmentRefused` if no braking segment fits, keeping the running segment (which was within the limits when
        planned and ends at rest at its target)."""
        x, v, a = self.state(now) if start is None else (*start, np.zeros_like(start[0]))
        # A stop at the acceleration limit covers v * t / 2; the quintic needs a little longer, which it finds itself.
        brake_time = float(np.max(np.abs(v) / self.limits.acceleration))
        stop = x + 0.5 * v * brake_time
        if self.limits.lower is not None and self.limits.upper is not None:
            stop = np.clip(stop, self.limits.lower, self.limits.upper)
        for target in (stop, x):
            try:
                return self.follow(plan_segment(x, v, a, target, self.limits), now)
            except SegmentRefused:
                continue
        raise SegmentRefused("no braking segment within the limits from the set-point")

    def sample(self, now: float) -> tuple[np.ndarray, np.ndarray]:
        """Set-point position and velocity at `now`."""
        x, v, _, _ = self._segment.sample(now - self._t0)
        return x, v

    @property
    def segment(self) -> QuinticSegment:
        return self._segment

    @property
    def target(self) -> np.ndarray:
        return self._segment.x1

    def done(self, now: float) -> bool:
        return now - self._t0 >= self._segment.duration
