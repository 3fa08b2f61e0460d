"""ROS 1 backend: rospy against franka_ros (franka_control on a Noetic host, or Debian's ROS 1 packages).

* state: `franka_msgs/FrankaState` from `/franka_state_controller/franka_states` (q, dq, tau_J, robot_mode,
  current_errors) and the finger widths from `/franka_gripper/joint_states`;
* joint mode: each set-point is a one-point `trajectory_msgs/JointTrajectory` on the joint trajectory controller's
  command topic (a new trajectory replaces the running one, so a stream of near points is tracked smoothly);
* Cartesian mode: `geometry_msgs/PoseStamped` on the Cartesian impedance controller's equilibrium pose topic;
* gripper: `franka_gripper/move` (opening) and `franka_gripper/grasp` (closing on an object) actions;
* recovery: the `franka_control/error_recovery` action.

rospy comes from Debian's dist-packages (appended to sys.path); franka message classes are generated at run time.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from vjepa_ac.robot.backends.base import ArmState, Backend, FrankaHandSettings
from vjepa_ac.robot.backends.ros1_msgs import import_rospy, message_classes, require_master

ROBOT_MODES = ("other", "idle", "move", "guiding", "reflex", "user_stopped", "automatic_error_recovery")
"""franka_msgs/FrankaState.robot_mode values in order."""


@dataclass(frozen=True)
class Ros1Config(FrankaHandSettings):
    """franka_ros topics and timing; the Franka Hand settings come from `FrankaHandSettings`."""

    arm_id: str = "panda"
    """Joint names are `<arm_id>_joint1..7`, the base frame `<arm_id>_link0`."""
    state_topic: str = "/franka_state_controller/franka_states"
    gripper_state_topic: str = "/franka_gripper/joint_states"
    joint_command_topic: str = "/position_joint_trajectory_controller/command"
    equilibrium_pose_topic: str = "/cartesian_impedance_example_controller/equilibrium_pose"
    gripper_namespace: str = "/franka_gripper"
    error_recovery_action: str = "/franka_control/error_recovery"
    node_name: str = "vjepa_ac_bridge"
    setpoint_lead_s: float = 0.02
    """time_from_start of the streamed trajectory point; a few bridge ticks keeps the controller interpolating."""
    first_state_timeout_s: float = 5.0
    state_stale_s: float = 0.5
    """A franka_states message older than this (receive time) makes the backend report a fault."""


class Ros1Backend(Backend):
    name = "ros1"
    supports_cartesian = True

    def __init__(self, config: Ros1Config | None = None) -> None:
        self.config = config or Ros1Config()
        self._lock = threading.Lock()
        self._state = None
        self._state_received = 0.0
        self._finger_width: float | None = None
        self._last_gripper: float | None = None
        self._rospy = None

    def start(self) -> None:
        rospy = self._rospy = import_rospy()
        import actionlib
        from geometry_msgs.msg import PoseStamped
        from sensor_msgs.msg import JointState
        from trajectory_msgs.msg import JointTrajectory

        msgs = message_classes()
        cfg = self.config
        require_master()
        rospy.init_node(cfg.node_name, anonymous=False, disable_signals=True)
        rospy.Subscriber(cfg.state_topic, msgs["franka_msgs/FrankaState"], self._on_state, queue_size=1)
        rospy.Subscriber(cfg.gripper_state_topic, JointState, self._on_gripper, queue_size=1)
        self._joint_pub = rospy.Publisher(cfg.joint_command_topic, JointTrajectory, queue_size=1)
        self._pose_pub = rospy.Publisher(cfg.equilibrium_pose_topic, PoseStamped, queue_size=1)
        ns = cfg.gripper_namespace.rstrip("/")
        self._move = actionlib.SimpleActionClient(f"{ns}/move", msgs["franka_gripper/MoveAction"])
        self._grasp = actionlib.SimpleActionClient(f"{ns}/grasp", msgs["franka_gripper/GraspAction"])
        self._recovery = actionlib.SimpleActionClient(cfg.error_recovery_action, msgs["franka_msgs/ErrorRecoveryAction"])
        self._msgs = msgs
        self._joint_names = [f"{cfg.arm_id}_joint{i}" for i in range(1, 8)]
        deadline = rospy.get_time() + cfg.first_state_timeout_s
        while self._state is None:
            if rospy.get_time() > deadline or rospy.is_shutdown():
                raise TimeoutError(
                    f"no franka_msgs/FrankaState on {cfg.state_topic} within {cfg.first_state_timeout_s} s; "
                    "is franka_control running and ROS_MASTER_URI set?"
                )
            rospy.sleep(0.01)

    def _on_state(self, msg) -> None:
        with self._lock:
            self._state = msg
            self._state_received = time.monotonic()

    def _on_gripper(self, msg) -> None:
        if len(msg.position) >= 2:
            self._finger_width = float(msg.position[0] + msg.position[1])

    def read_state(self) -> ArmState:
        with self._lock:
            msg, received = self._state, self._state_received
        if msg is None:
            raise RuntimeError("ros1 backend not started")
        errors = tuple(name for name in msg.current_errors.__slots__ if getattr(msg.current_errors, name))
        if time.monotonic() - received > self.config.state_stale_s:
            errors += ("franka_states_stale",)
        mode = ROBOT_MODES[msg.robot_mode] if msg.robot_mode < len(ROBOT_MODES) else "other"
        width = self._finger_width if self._finger_width is not None else self.config.gripper_max_width
        return ArmState(
            q=np.asarray(msg.q, dtype=np.float64),
            dq=np.asarray(msg.dq, dtype=np.float64),
            gripper=self.config.gripper_closure(width),
            robot_t_s=msg.header.stamp.to_sec(),
            tau_J=np.asarray(msg.tau_J, dtype=np.float64),
            robot_mode=mode,
            errors=errors,
        )

    def command_joints(self, q: np.ndarray, dq: np.ndarray) -> None:
        self._joint_pub.publish(joint_trajectory_message(self._joint_names, q, dq, self.config.setpoint_lead_s))

    def command_pose(self, pos: np.ndarray, quat_xyzw: np.ndarray) -> None:
        from geometry_msgs.msg import PoseStamped

        msg = PoseStamped()
        msg.header.stamp = self._rospy.Time.now()
        msg.header.frame_id = f"{self.config.arm_id}_link0"
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in pos)
        o = msg.pose.orientation
        o.x, o.y, o.z, o.w = (float(v) for v in quat_xyzw)
        self._pose_pub.publish(msg)

    def set_gripper(self, position: float) -> None:
        cfg = self.config
        position = float(np.clip(position, 0.0, 1.0))
        if not cfg.resend_gripper(position, self._last_gripper):
            return
        self._last_gripper = position
        width = cfg.gripper_width(position)
        if cfg.grasps(position):
            goal = self._msgs["franka_gripper/GraspGoal"](width=width, speed=cfg.gripper_speed, force=cfg.grasp_force)
            goal.epsilon.inner = goal.epsilon.outer = cfg.gripper_max_width
            self._grasp.send_goal(goal)
        else:
            self._move.send_goal(self._msgs["franka_gripper/MoveGoal"](width=width, speed=cfg.gripper_speed))

    def stop(self, q_hold: np.ndarray) -> None:
        # The joint trajectory controller holds the last point; a zero-velocity point at the measured pose ends the
        # motion there. (Unloading the controller would need controller_manager services on the franka host.)
        self.command_joints(q_hold, np.zeros(7))

    def recover(self) -> None:
        self._recovery.send_goal(self._msgs["franka_msgs/ErrorRecoveryGoal"]())
        if not self._recovery.wait_for_result(self._rospy.Duration(5.0)):
            raise RuntimeError(f"error recovery did not finish within 5 s ({self.config.error_recovery_action})")

    def close(self) -> None:
        if self._rospy is not None:
            self._rospy.signal_shutdown("bridge closed")


def joint_trajectory_message(joint_names: list[str], q: np.ndarray, dq: np.ndarray, lead_s: float):
    """A one-point `trajectory_msgs/JointTrajectory` reaching (q, dq) `lead_s` after now (stamp 0 = on receipt)."""
    import rospy
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    point = JointTrajectoryPoint()
    point.positions = [float(v) for v in q]
    point.velocities = [float(v) for v in dq]
    point.time_from_start = rospy.Duration.from_sec(lead_s)
    msg = JointTrajectory()
    msg.joint_names = list(joint_names)
    msg.points = [point]
    return msg
