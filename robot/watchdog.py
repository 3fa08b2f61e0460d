"""The bridge's link watchdog: a small state machine driven by the bridge loop with its own monotonic clock.

IDLE -arm(session)-> ARMED -first accepted cmd-> TRACKING. Command ttl expired -> HOLD (at the measured pose).
Heartbeat (any hb or cmd of the session) silent > `hold_after_s` -> HOLD, > `stop_after_s` -> STOPPED.
STOPPED is left only by `arm` with a session never used before; a robot fault -> FAULT until `recover`.
The watchdog only decides; the bridge carries out the HOLD / STOPPED transitions on the arm.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class WatchdogState(str, enum.Enum):
    IDLE = "IDLE"
    ARMED = "ARMED"
    TRACKING = "TRACKING"
    HOLD = "HOLD"
    STOPPED = "STOPPED"
    FAULT = "FAULT"


ACCEPTS_COMMANDS = frozenset({WatchdogState.ARMED, WatchdogState.TRACKING, WatchdogState.HOLD})


@dataclass(frozen=True)
class WatchdogConfig:
    hold_after_s: float = 0.25
    """Heartbeat silence that makes the arm hold (5 missed beats at 20 Hz)."""
    stop_after_s: float = 1.0
    """Heartbeat silence that ends the motion for good (a re-arm with a new session is needed)."""

    def __post_init__(self) -> None:
        if not 0 < self.hold_after_s < self.stop_after_s:
            raise ValueError(f"need 0 < hold_after_s < stop_after_s, got {self.hold_after_s}, {self.stop_after_s}")


class WatchdogError(RuntimeError):
    """An RPC that is not allowed in the current state (e.g. arming while in FAULT)."""


class Watchdog:
    def __init__(self, config: WatchdogConfig | None = None) -> None:
        self.config = config or WatchdogConfig()
        self.state = WatchdogState.IDLE
        self.session: str | None = None
        self.reason = ""
        """Why the watchdog entered its current state."""
        self._used_sessions: set[str] = set()
        self._last_heartbeat = 0.0
        self._command_deadline: float | None = None

    def _enter(self, state: WatchdogState, reason: str) -> WatchdogState:
        self.state = state
        self.reason = reason
        return state

    def arm(self, session: str, now: float) -> None:
        if self.state is WatchdogState.FAULT:
            raise WatchdogError(f"robot is in FAULT ({self.reason}); call recover first")
        if session in self._used_sessions:
            raise WatchdogError(f"session {session!r} was already used; arm with a new session")
        self._used_sessions.add(session)
        self.session = session
        self._last_heartbeat = now
        self._command_deadline = None
        self._enter(WatchdogState.ARMED, "armed")

    def disarm(self, reason: str = "disarmed") -> None:
        """Back to IDLE (the caller holds the arm); a FAULT stays until recovered."""
        if self.state is not WatchdogState.FAULT:
            self.session = None
            self._command_deadline = None
            self._enter(WatchdogState.IDLE, reason)

    def heartbeat(self, session: str, now: float) -> bool:
        """Record liveness of `session`; False if it is not the armed session."""
        if session != self.session or self.state not in ACCEPTS_COMMANDS:
            return False
        self._last_heartbeat = now
        return True

    def command_accepted(self, now: float, ttl_s: float) -> None:
        self._last_heartbeat = now
        self._command_deadline = now + ttl_s
        self._enter(WatchdogState.TRACKING, "tracking")

    def hold(self, reason: str) -> None:
        if self.state in (WatchdogState.ARMED, WatchdogState.TRACKING):
            self._command_deadline = None
            self._enter(WatchdogState.HOLD, reason)

    def stop(self, reason: str) -> None:
        if self.state in ACCEPTS_COMMANDS:
            self._command_deadline = None
            self._enter(WatchdogState.STOPPED, reason)

    def fault(self, reason: str) -> None:
        self._command_deadline = None
        self._enter(WatchdogState.FAULT, reason)

    def recover(self) -> None:
        if self.state is WatchdogState.FAULT:
            self.session = None
            self._enter(WatchdogState.IDLE, "recovered")

    def heartbeat_age(self, now: float) -> float | None:
        return now - self._last_heartbeat if self.session is not None else None

    def tick(self, now: float) -> WatchdogState | None:
        """Apply timeouts; returns the new state if this tick caused a transition (HOLD or STOPPED)."""
        if self.state not in ACCEPTS_COMMANDS:
            return None
        silent = now - self._last_heartbeat
        if silent > self.config.stop_after_s:
            return self._enter(WatchdogState.STOPPED, f"heartbeat silent for {silent * 1e3:.0f} ms")
        if self.state is WatchdogState.HOLD:
            return None
        if silent > self.config.hold_after_s:
            self._command_deadline = None
            return self._enter(WatchdogState.HOLD, f"heartbeat silent for {silent * 1e3:.0f} ms")
        if self._command_deadline is not None and now > self._command_deadline:
            self._command_deadline = None
            return self._enter(WatchdogState.HOLD, "command ttl expired")
        return None
