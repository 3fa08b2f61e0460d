"""The watchdog state machine on a synthetic clock."""

from __future__ import annotations

import pytest

from vjepa_ac.robot.watchdog import Watchdog, WatchdogConfig, WatchdogError
from vjepa_ac.robot.watchdog import WatchdogState as S


def armed(now=0.0) -> Watchdog:
    wd = Watchdog(WatchdogConfig(hold_after_s=0.25, stop_after_s=1.0))
    wd.arm("a", now)
    return wd


def test_idle_armed_tracking_and_ttl_hold():
    wd = Watchdog()
    assert wd.state is S.IDLE
    wd.arm("a", 0.0)
    assert wd.state is S.ARMED
    wd.command_accepted(0.0, ttl_s=0.1)
    assert wd.state is S.TRACKING
    wd.heartbeat("a", 0.09)
    assert wd.tick(0.09) is None
    assert wd.tick(0.11) is S.HOLD and wd.reason == "command ttl expired"
    wd.command_accepted(0.12, ttl_s=0.1)
    assert wd.state is S.TRACKING


def test_heartbeat_silence_holds_then_stops():
    wd = armed()
    wd.command_accepted(0.0, ttl_s=1.0)
    assert wd.tick(0.2) is None
    assert wd.tick(0.26) is S.HOLD and "heartbeat" in wd.reason
    assert wd.tick(0.9) is None
    assert wd.tick(1.01) is S.STOPPED
    assert wd.tick(5.0) is None and wd.state is S.STOPPED


def test_heartbeats_keep_it_alive_and_foreign_sessions_do_not():
    wd = armed()
    for i in range(1, 40):
        assert wd.heartbeat("a", i * 0.05)
        assert not wd.heartbeat("intruder", i * 0.05 + 0.01)
        assert wd.tick(i * 0.05 + 0.02) is None
    assert wd.state is S.ARMED


def test_stopped_needs_a_new_session():
    wd = armed()
    wd.stop("client stop")
    assert wd.state is S.STOPPED
    assert not wd.heartbeat("a", 0.1)
    with pytest.raises(WatchdogError, match="already used"):
        wd.arm("a", 0.2)
    wd.arm("b", 0.2)
    assert wd.state is S.ARMED and wd.session == "b"


def test_fault_until_recover():
    wd = armed()
    wd.fault("reflex")
    assert wd.state is S.FAULT and wd.tick(10.0) is None
    with pytest.raises(WatchdogError, match="recover"):
        wd.arm("c", 1.0)
    wd.disarm()
    assert wd.state is S.FAULT
    wd.recover()
    assert wd.state is S.IDLE
    wd.arm("c", 1.0)
    assert wd.state is S.ARMED


def test_config_validation():
    with pytest.raises(ValueError):
        WatchdogConfig(hold_after_s=1.0, stop_after_s=0.5)
