"""ROS 2 backend: message conversions (rclpy is not installable on Debian 12, so the node itself cannot run here)."""

from __future__ import annotations

import numpy as np
import pytest

from vjepa_ac.robot.backends.ros2 import (
    Ros2Backend,
    Ros2Config,
    forward_position_data,
    gripper_goal,
    joint_state_arrays,
    trajectory_point,
)


def test_joint_states_are_reordered_by_name():
    cfg = Ros2Config(arm_id="fr3")
    names = ["fr3_finger_joint1"] + cfg.joint_names[::-1]
    position = [0.04] + [7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]
    q, _, tau = joint_state_arrays(names, position, [0.0] * 8, [], cfg.joint_names)
    np.testing.assert_allclose(q, [1, 2, 3, 4, 5, 6, 7])
    np.testing.assert_allclose(tau, np.zeros(7))  # an empty effort list means "not reported"
    with pytest.raises(ValueError, match="lacks joints"):
        joint_state_arrays(names[:-1], position[:-1], [], [], cfg.joint_names)


def test_commands_and_gripper_goals():
    q = np.linspace(-1, 1, 7)
    assert forward_position_data(q) == pytest.approx(q.tolist())
    with pytest.raises(ValueError):
        forward_position_data(np.full(7, np.nan))
    point = trajectory_point(q, np.zeros(7), 1.25)
    assert point["time_from_start"] == {"sec": 1, "nanosec": 250_000_000}
    cfg = Ros2Config()
    assert gripper_goal(0.25, cfg) == ("move", {"width": pytest.approx(0.06), "speed": 0.1})
    kind, goal = gripper_goal(1.0, cfg)
    assert kind == "grasp" and goal["width"] == 0.0 and goal["force"] == 20.0


def test_start_without_rclpy_explains_what_is_needed():
    with pytest.raises(ImportError, match="rclpy"):
        Ros2Backend().start()
    with pytest.raises(ValueError):
        Ros2Config(command_interface="effort")
