"""ROS 2 backend: rclpy against franka_ros2 (Humble, ros2_control).

* state: `sensor_msgs/JointState` on `/joint_states` (franka_ros2's joint_state_broadcaster; reordered by name);
* joint set-points: `std_msgs/Float64MultiArray` to a forward position controller's `commands` topic (ros2_control's
  `position` command interface), or one-point `trajectory_msgs/JointTrajectory` to a joint trajectory controller;
* gripper: `franka_msgs/action/Move` / `Grasp` on the franka_gripper node.

rclpy is not installable on Debian 12, so it is imported only when the backend starts; the message conversions
below are plain functions on Python data and are tested without ROS.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from vjepa_ac.robot.backends.base import ArmState, Backend, FrankaHandSettings


@dataclass(frozen=True)
class Ros2Config(FrankaHandSettings):
    """ros2_control topics and timing; the Franka Hand settings come from `FrankaHandSettings`."""

    arm_id: str = "fr3"
    joint_state_topic: str = "/joint_states"
    command_interface: str = "forward_position"
    """"forward_position": Float64MultiArray on `position_command_topic`; "trajectory": JointTrajectory."""
    position_command_topic: str = "/joint_position_controller/commands"
    trajectory_command_topic: str = "/joint_trajectory_controller/joint_trajectory"
    gripper_namespace: str = "/fr3_gripper"
    setpoint_lead_s: float = 0.02
    node_name: str = "vjepa_ac_bridge"
    first_state_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.command_interface not in ("forward_position", "trajectory"):
            raise ValueError(f"command_interface must be 'forward_position' or 'trajectory', got {self.command_interface!r}")

    @property
    def joint_names(self) -> list[str]:
        return [f"{self.arm_id}_joint{i}" for i in range(1, 8)]

    @property
    def finger_names(self) -> list[str]:
        return [f"{self.arm_id}_finger_joint1", f"{self.arm_id}_finger_joint2"]


def joint_state_arrays(
    names: list[str], position: list[float], velocity: list[float], effort: list[float], joint_names: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(q, dq, tau) in `joint_names` order from a JointState whose joints may come in any order (or with extras)."""
    index = {name: i for i, name in enumerate(names)}
    missing = [name for name in joint_names if name not in index]
    if missing:
        raise ValueError(f"joint_states lacks joints {missing} (got {names})")
    order = [index[name] for name in joint_names]

    def pick(values: list[float]) -> np.ndarray:
        values = list(values)
        return np.asarray([values[i] for i in order], dtype=np.float64) if len(values) == len(names) else np.zeros(7)

    return pick(position), pick(velocity), pick(effort)


def forward_position_data(q: np.ndarray) -> list[float]:
    """`Float64MultiArray.data` for a forward position controller (its joints configured in arm order)."""
    q = np.asarray(q, dtype=np.float64)
    if q.shape != (7,) or not np.all(np.isfinite(q)):
        raise ValueError(f"joint set-point must be 7 finite values, got {q.tolist()}")
    return [float(v) for v in q]


def trajectory_point(q: np.ndarray, dq: np.ndarray, lead_s: float) -> dict:
    """Fields of the single `JointTrajectoryPoint` (time_from_start as sec + nanosec, like builtin_interfaces)."""
    sec = int(lead_s)
    return {
        "positions": forward_position_data(q),
        "velocities": [float(v) for v in dq],
        "time_from_start": {"sec": sec, "nanosec": round((lead_s - sec) * 1e9)},
    }


def gripper_goal(position: float, config: Ros2Config) -> tuple[str, dict]:
    """("move" | "grasp", goal fields) for a gripper closure 0..1."""
    width = config.gripper_width(position)
    if config.grasps(position):
        eps = {"inner": config.gripper_max_width, "outer": config.gripper_max_width}
        return "grasp", {"width": width, "speed": config.gripper_speed, "force": config.grasp_force, "epsilon": eps}
    return "move", {"width": width, "speed": config.gripper_speed}


class Ros2Backend(Backend):
    name = "ros2"

    def __init__(self, config: Ros2Config | None = None) -> None:
        self.config = config or Ros2Config()
        self._lock = threading.Lock()
        self._joints: tuple[np.ndarray, np.ndarray, np.ndarray, float] | None = None
        self._gripper_width = self.config.gripper_max_width
        self._last_gripper: float | None = None

    def start(self) -> None:
        try:
            import rclpy
            from rclpy.action import ActionClient
            from rclpy.executors import SingleThreadedExecutor
        except ImportError as exc:
            raise ImportError(
                "the ros2 backend needs rclpy (ROS 2 Humble on Ubuntu 22.04: source /opt/ros/humble/setup.bash); "
                f"Debian 12 has no rclpy: {exc}"
            ) from exc
        from franka_msgs.action import Grasp, Move
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray
        from trajectory_msgs.msg import JointTrajectory

        cfg = self.config
        rclpy.init()
        self._rclpy = rclpy
        node = self._node = rclpy.create_node(cfg.node_name)
        node.create_subscription(JointState, cfg.joint_state_topic, self._on_joint_state, 10)
        if cfg.command_interface == "forward_position":
            self._publisher = node.create_publisher(Float64MultiArray, cfg.position_command_topic, 10)
        else:
            self._publisher = node.create_publisher(JointTrajectory, cfg.trajectory_command_topic, 10)
        ns = cfg.gripper_namespace.rstrip("/")
        self._actions = {"move": (ActionClient(node, Move, f"{ns}/move"), Move),
                         "grasp": (ActionClient(node, Grasp, f"{ns}/grasp"), Grasp)}
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(node)
        self._spin = threading.Thread(target=self._executor.spin, name="rclpy", daemon=True)
        self._spin.start()
        deadline = node.get_clock().now().nanoseconds + int(cfg.first_state_timeout_s * 1e9)
        while self._joints is None:
            if node.get_clock().now().nanoseconds > deadline:
                raise TimeoutError(f"no JointState on {cfg.joint_state_topic}; is franka_ros2 running?")
            threading.Event().wait(0.01)

    def _on_joint_state(self, msg) -> None:
        cfg = self.config
        names = list(msg.name)
        if all(name in names for name in cfg.finger_names):
            self._gripper_width = float(sum(msg.position[names.index(n)] for n in cfg.finger_names))
        if not all(name in names for name in cfg.joint_names):
            return
        q, dq, tau = joint_state_arrays(names, msg.position, msg.velocity, msg.effort, cfg.joint_names)
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        with self._lock:
            self._joints = (q, dq, tau, stamp)

    def read_state(self) -> ArmState:
        with self._lock:
            if self._joints is None:
                raise RuntimeError("ros2 backend not started")
            q, dq, tau, stamp = self._joints
        closure = self.config.gripper_closure(self._gripper_width)
        return ArmState(q=q, dq=dq, gripper=closure, robot_t_s=stamp, tau_J=tau)

    def command_joints(self, q: np.ndarray, dq: np.ndarray) -> None:
        if self.config.command_interface == "forward_position":
            from std_msgs.msg import Float64MultiArray

            self._publisher.publish(Float64MultiArray(data=forward_position_data(q)))
            return
        from builtin_interfaces.msg import Duration
        from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

        fields = trajectory_point(q, dq, self.config.setpoint_lead_s)
        point = JointTrajectoryPoint(positions=fields["positions"], velocities=fields["velocities"],
                                     time_from_start=Duration(**fields["time_from_start"]))
        self._publisher.publish(JointTrajectory(joint_names=self.config.joint_names, points=[point]))

    def set_gripper(self, position: float) -> None:
        if not self.config.resend_gripper(position, self._last_gripper):
            return
        self._last_gripper = position
        kind, fields = gripper_goal(position, self.config)
        client, action = self._actions[kind]
        goal = action.Goal()
        for key, value in fields.items():
            if key == "epsilon":
                goal.epsilon.inner, goal.epsilon.outer = value["inner"], value["outer"]
            else:
                setattr(goal, key, value)
        client.send_goal_async(goal)

    def stop(self, q_hold: np.ndarray) -> None:
        self.command_joints(q_hold, np.zeros(7))

    def close(self) -> None:
        if getattr(self, "_node", None) is not None:
            self._executor.shutdown()
            self._node.destroy_node()
            self._rclpy.shutdown()
