"""A stand-in for franka_control (franka_ros) backed by the MuJoCo Panda, for running the ROS 1 path without an arm.

It speaks the same topics and actions as a franka_ros host: publishes `franka_msgs/FrankaState` and
`sensor_msgs/JointState`, follows the joint trajectory controller's command topic and the Cartesian impedance
controller's equilibrium pose, serves `franka_gripper/move|grasp` and `franka_control/error_recovery`. Like the real
arm it raises a reflex (FAULT) when a command jumps too far from the measured pose.
"""

from __future__ import annotations

import numpy as np

from vjepa_ac.sim.backend import MujocoBackend
from vjepa_ac.robot.backends.ros1 import Ros1Config
from vjepa_ac.robot.backends.ros1_msgs import import_rospy, message_classes, require_master

MAX_COMMAND_JUMP = 0.2
"""rad between a commanded and the measured joint position beyond which the stand-in triggers a joint reflex."""
MAX_POSE_JUMP = 0.1
"""m between a commanded equilibrium and the measured flange position beyond which it triggers a Cartesian reflex."""


class FrankaRosStandin:
    def __init__(self, config: Ros1Config | None = None, *, rate_hz: float = 100.0) -> None:
        self.config = config or Ros1Config()
        self.rate_hz = rate_hz
        self.sim = MujocoBackend(cameras=())

    def start(self) -> None:
        rospy = self.rospy = import_rospy()
        import actionlib
        from geometry_msgs.msg import PoseStamped
        from sensor_msgs.msg import JointState
        from trajectory_msgs.msg import JointTrajectory

        cfg, msgs = self.config, message_classes()
        self.msgs = msgs
        require_master()
        rospy.init_node("franka_control_standin", anonymous=False, disable_signals=True)
        self.sim.start()
        self._state_pub = rospy.Publisher(cfg.state_topic, msgs["franka_msgs/FrankaState"], queue_size=1)
        joint_topic = cfg.state_topic.rsplit("/", 1)[0] + "/joint_states"
        self._joint_pub = rospy.Publisher(joint_topic, JointState, queue_size=1)
        self._gripper_pub = rospy.Publisher(cfg.gripper_state_topic, JointState, queue_size=1)
        rospy.Subscriber(cfg.joint_command_topic, JointTrajectory, self._on_trajectory, queue_size=10)
        rospy.Subscriber(cfg.equilibrium_pose_topic, PoseStamped, self._on_pose, queue_size=10)
        ns = cfg.gripper_namespace.rstrip("/")
        move = actionlib.SimpleActionServer(
            f"{ns}/move", msgs["franka_gripper/MoveAction"], lambda goal: self._on_gripper(move, goal, "Move"), False
        )
        grasp = actionlib.SimpleActionServer(
            f"{ns}/grasp", msgs["franka_gripper/GraspAction"], lambda goal: self._on_gripper(grasp, goal, "Grasp"), False
        )
        recovery = actionlib.SimpleActionServer(
            cfg.error_recovery_action, msgs["franka_msgs/ErrorRecoveryAction"],
            lambda goal: self._on_recover(recovery), False,
        )
        self._servers = [move, grasp, recovery]
        for server in self._servers:
            server.start()
        self._names = [f"{cfg.arm_id}_joint{i}" for i in range(1, 8)]

    def _check_jump(self, q: np.ndarray) -> bool:
        measured = self.sim.read_state().q
        if float(np.max(np.abs(q - measured))) > MAX_COMMAND_JUMP:
            self.sim.trigger_reflex("joint_reflex")
            return False
        return True

    def _on_trajectory(self, msg) -> None:
        if not msg.points:
            return
        order = [msg.joint_names.index(name) for name in self._names] if msg.joint_names else list(range(7))
        q = np.asarray(msg.points[-1].positions, dtype=np.float64)[order]
        if np.all(np.isfinite(q)) and self._check_jump(q):
            self.sim.command_joints(q, np.zeros(7))

    def _on_pose(self, msg) -> None:
        p, o = msg.pose.position, msg.pose.orientation
        measured, _ = self.sim.kinematics.fk(self.sim.read_state().q)
        if np.linalg.norm(np.array([p.x, p.y, p.z]) - measured) > MAX_POSE_JUMP:
            self.sim.trigger_reflex("cartesian_reflex")
            return
        self.sim.command_pose([p.x, p.y, p.z], [o.x, o.y, o.z, o.w])

    def _on_gripper(self, server, goal, action: str) -> None:
        self.sim.set_gripper(1.0 - goal.width / self.config.gripper_max_width)
        self.rospy.sleep(0.3)
        server.set_succeeded(self.msgs[f"franka_gripper/{action}Result"](success=True, error=""))

    def _on_recover(self, server) -> None:
        self.sim.recover()
        server.set_succeeded(self.msgs["franka_msgs/ErrorRecoveryResult"]())

    def publish_once(self) -> None:
        from sensor_msgs.msg import JointState

        arm = self.sim.read_state()
        stamp = self.rospy.Time.now()
        state = self.msgs["franka_msgs/FrankaState"]()
        state.header.stamp = stamp
        state.q, state.dq, state.tau_J = list(arm.q), list(arm.dq), list(arm.tau_J)
        state.q_d = list(arm.q)
        pos, rot = self.sim.kinematics.fk(arm.q)
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = rot, pos
        state.O_T_EE = list(pose.T.ravel())  # column-major, as libfranka
        state.F_T_EE = list(np.eye(4).ravel())
        state.robot_mode = {"move": 2, "reflex": 4}.get(arm.robot_mode, 0)
        for flag in arm.errors:
            if hasattr(state.current_errors, flag):
                setattr(state.current_errors, flag, True)
        self._state_pub.publish(state)
        joints = JointState(name=self._names, position=list(arm.q), velocity=list(arm.dq), effort=list(arm.tau_J))
        joints.header.stamp = stamp
        self._joint_pub.publish(joints)
        finger = self.config.gripper_max_width / 2 * (1.0 - arm.gripper)
        fingers = JointState(name=[f"{self.config.arm_id}_finger_joint1", f"{self.config.arm_id}_finger_joint2"],
                             position=[finger, finger])
        fingers.header.stamp = stamp
        self._gripper_pub.publish(fingers)

    def spin(self) -> None:
        rate = self.rospy.Rate(self.rate_hz)
        while not self.rospy.is_shutdown():
            self.publish_once()
            rate.sleep()

    def close(self) -> None:
        self.sim.close()


def run_standin(arm_id: str = "panda", rate_hz: float = 100.0) -> None:
    """Run the stand-in until the ROS master goes away or the process is interrupted."""
    node = FrankaRosStandin(Ros1Config(arm_id=arm_id), rate_hz=rate_hz)
    node.start()
    print("franka_ros stand-in running", flush=True)
    try:
        node.spin()
    except KeyboardInterrupt:
        pass
    finally:
        node.rospy.signal_shutdown("done")
        node.close()
