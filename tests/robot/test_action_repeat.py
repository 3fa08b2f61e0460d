"""Spreading one world-model action over several control periods."""

import numpy as np
import pytest

from vjepa_ac.data.droid.poses import apply_actions
from vjepa_ac.robot.action_repeat import (
    ActionRepeatRobot,
    control_periods_per_step,
    split_action,
)
from vjepa_ac.robot.interface import ActionResult, ActionStatus, Observation, Robot


class RecordingRobot(Robot):
    """Applies DROID actions to a state exactly (no physics), refusing after `refuse_after` actions; records them."""

    def __init__(self, refuse_after: int | None = None, clamp_reason: str = "") -> None:
        self.state = np.array([0.5, 0.0, 0.3, np.pi, 0.0, 0.0, 0.0])
        self.sent: list[np.ndarray] = []
        self.refuse_after = refuse_after
        self.clamp_reason = clamp_reason
        self.held = 0

    def connect(self) -> None: ...

    def get_observation(self) -> Observation:
        return Observation(images={}, state=self.state, joint_positions=np.zeros(7), gripper_position=self.state[6],
                           timestamp=0.0)

    def send_action(self, action: np.ndarray) -> ActionResult:
        if self.refuse_after is not None and len(self.sent) >= self.refuse_after:
            return ActionResult(ActionStatus.REJECTED, None, "workspace")
        self.sent.append(np.asarray(action))
        self.state = apply_actions(self.state, action)
        status = ActionStatus.CLAMPED if self.clamp_reason else ActionStatus.ACCEPTED
        return ActionResult(status, np.asarray(action), self.clamp_reason)

    def hold(self) -> None:
        self.held += 1

    def stop(self) -> None: ...


def test_control_periods_per_step():
    assert control_periods_per_step(15.0, 15.0) == 1
    assert control_periods_per_step(15.0, 5.0) == 3
    assert control_periods_per_step(15.0, 4.0) == 4  # V-JEPA 2-AC's 4 fps on a 15 Hz arm: 3.75 -> 4
    assert control_periods_per_step(15.0, 30.0) == 1
    with pytest.raises(ValueError):
        control_periods_per_step(15.0, 0.0)


def test_split_action_composes_back():
    action = np.array([0.06, -0.03, 0.015, 0.2, -0.1, 0.3, 0.6])
    pieces = split_action(action, 3)
    assert pieces.shape == (3, 7)
    np.testing.assert_allclose(pieces[:, :3].sum(0), action[:3])
    np.testing.assert_allclose(pieces[:, 6].sum(0), action[6])
    state = np.array([0.4, 0.1, 0.3, np.pi, 0.0, 0.0, 0.0])
    stepwise = state
    for piece in pieces:
        stepwise = apply_actions(stepwise, piece)
    np.testing.assert_allclose(stepwise[:6], apply_actions(state, action)[:6], atol=1e-9)
    with pytest.raises(ValueError):
        split_action(np.full(7, np.nan), 2)


def test_repeat_robot_executes_all_periods():
    inner = RecordingRobot()
    robot = ActionRepeatRobot(inner, 3)
    assert robot.control_hz == inner.control_hz / 3
    result = robot.send_action(np.array([0.03, 0.0, -0.03, 0, 0, 0, 0.3]))
    assert result.status is ActionStatus.ACCEPTED and len(inner.sent) == 3
    np.testing.assert_allclose(result.applied, [0.03, 0.0, -0.03, 0, 0, 0, 0.3], atol=1e-12)
    np.testing.assert_allclose(inner.state[:3], [0.53, 0.0, 0.27])


def test_repeat_robot_stops_at_a_refusal_and_reports_it():
    inner = RecordingRobot(refuse_after=1)
    result = ActionRepeatRobot(inner, 3).send_action(np.array([0.03, 0, 0, 0, 0, 0, 0]))
    assert result.status is ActionStatus.CLAMPED and "period 2/3 refused: workspace" in result.reason
    np.testing.assert_allclose(result.applied[:3], [0.01, 0, 0])
    refused = ActionRepeatRobot(RecordingRobot(refuse_after=0), 2).send_action(np.zeros(7))
    assert refused.status is ActionStatus.REJECTED and refused.applied is None
    inner = RecordingRobot()
    bad = ActionRepeatRobot(inner, 2).send_action(np.array([1.0, 2.0]))
    assert bad.status is ActionStatus.REJECTED and inner.held == 1 and not inner.sent


def test_repeat_robot_passes_clamp_reasons_once():
    result = ActionRepeatRobot(RecordingRobot(clamp_reason="scaled"), 4).send_action(np.zeros(7))
    assert result.status is ActionStatus.CLAMPED and result.reason == "scaled"


def test_repeat_on_the_sim_moves_like_the_planned_action():
    from vjepa_ac.sim.tasks import make_env

    robot, _ = make_env("reach", seed=0)
    try:
        start = robot.droid_state()
        ActionRepeatRobot(robot, 3).send_action(np.array([0.0, 0.06, -0.03, 0, 0, 0, 0]))
        moved = robot.droid_state()[:3] - start[:3]
        np.testing.assert_allclose(moved, [0.0, 0.06, -0.03], atol=0.01)
    finally:
        robot.close()
