"""ROS 1 message classes for franka_ros types that Debian does not package, generated at run time with genpy.

The `.msg` / `.action` text lives in `robot/ros_msgs/<package>/`. Actions are expanded the way `genaction` does
(Goal, Result, Feedback, ActionGoal, ActionResult, ActionFeedback, Action), so actionlib clients and servers built
from these classes interoperate with franka_ros nodes (same md5 sums).
"""

from __future__ import annotations

import functools
import re
import sys
from pathlib import Path

DEBIAN_DIST_PACKAGES = "/usr/lib/python3/dist-packages"
_ROS_MSGS = Path(__file__).resolve().parents[1] / "ros_msgs"
"""The franka_ros message and action definitions shipped with the robot package."""
_SEPARATOR = "\n" + "=" * 80 + "\n"
_BUILTINS = {
    "bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string",
    "time", "duration", "char", "byte",
}
ROS_ENABLE_HINT = (
    "ROS 1 support needs Debian's ROS packages: apt-get install python3-rospy python3-rosmaster python3-roslaunch "
    "python3-rostopic python3-rosnode rosout python3-std-msgs python3-sensor-msgs python3-geometry-msgs "
    "python3-trajectory-msgs python3-std-srvs python3-actionlib python3-actionlib-msgs python3-genpy"
)


def import_rospy():
    """Import rospy from Debian's dist-packages, appended (never prepended) to sys.path so the venv's packages win."""
    if DEBIAN_DIST_PACKAGES not in sys.path:
        sys.path.append(DEBIAN_DIST_PACKAGES)
    try:
        import rospy
    except ImportError as exc:
        raise ImportError(f"{ROS_ENABLE_HINT} ({exc})") from exc
    return rospy


def require_master(timeout_s: float = 3.0) -> None:
    """RuntimeError naming ROS_MASTER_URI unless a ROS master answers there within `timeout_s` (rospy.init_node
    would otherwise wait for one forever)."""
    import socket

    import rosgraph

    uri = rosgraph.get_master_uri()
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)
    try:
        online = rosgraph.is_master_online(uri)
    finally:
        socket.setdefaulttimeout(previous)
    if not online:
        raise RuntimeError(f"no ROS master answers at ROS_MASTER_URI={uri}; start roscore (or the robot's "
                           "roslaunch) first, or point ROS_MASTER_URI at the running master")


def _definition(package: str, name: str, suffix: str) -> str:
    return (_ROS_MSGS / package / f"{name}.{suffix}").read_text()


def _action_parts(package: str, name: str) -> dict[str, str]:
    """The seven message texts `genaction` derives from `<name>.action`."""
    goal, result, feedback = (part.strip("\n") for part in _definition(package, name, "action").split("---"))
    return {
        f"{package}/{name}Goal": goal,
        f"{package}/{name}Result": result,
        f"{package}/{name}Feedback": feedback,
        f"{package}/{name}ActionGoal": f"Header header\nactionlib_msgs/GoalID goal_id\n{name}Goal goal",
        f"{package}/{name}ActionResult": f"Header header\nactionlib_msgs/GoalStatus status\n{name}Result result",
        f"{package}/{name}ActionFeedback": f"Header header\nactionlib_msgs/GoalStatus status\n{name}Feedback feedback",
        f"{package}/{name}Action": (
            f"{name}ActionGoal action_goal\n{name}ActionResult action_result\n{name}ActionFeedback action_feedback"
        ),
    }


def _dependencies(full_name: str, text: str) -> list[str]:
    package = full_name.split("/")[0]
    deps = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or "=" in line:  # blank, comment or constant
            continue
        field_type = re.sub(r"\[\d*\]$", "", line.split()[0])
        if field_type in _BUILTINS:
            continue
        if field_type == "Header":
            field_type = "std_msgs/Header"
        elif "/" not in field_type:
            field_type = f"{package}/{field_type}"
        deps.append(field_type)
    return deps


@functools.lru_cache(maxsize=1)
def message_classes() -> dict[str, type]:
    """"package/Type" -> generated class for franka_msgs/{Errors, FrankaState, ErrorRecovery*} and
    franka_gripper/{GraspEpsilon, Move*, Grasp*}."""
    import_rospy()
    import actionlib_msgs.msg
    import genpy.dynamic
    import std_msgs.msg

    def own(cls) -> str:
        return cls._full_text.split(_SEPARATOR)[0]

    texts = {
        "std_msgs/Header": own(std_msgs.msg.Header),
        "actionlib_msgs/GoalID": own(actionlib_msgs.msg.GoalID),
        "actionlib_msgs/GoalStatus": own(actionlib_msgs.msg.GoalStatus),
        "franka_msgs/Errors": _definition("franka_msgs", "Errors", "msg"),
        "franka_msgs/FrankaState": _definition("franka_msgs", "FrankaState", "msg"),
        "franka_gripper/GraspEpsilon": _definition("franka_gripper", "GraspEpsilon", "msg"),
    }
    texts.update(_action_parts("franka_msgs", "ErrorRecovery"))
    texts.update(_action_parts("franka_gripper", "Move"))
    texts.update(_action_parts("franka_gripper", "Grasp"))

    def full_text(name: str) -> str:
        order: list[str] = []

        def visit(dep: str) -> None:
            for child in _dependencies(dep, texts[dep]):
                if child not in order:
                    order.append(child)
                    visit(child)

        visit(name)
        return texts[name] + "".join(f"{_SEPARATOR}MSG: {dep}\n{texts[dep]}" for dep in order)

    classes: dict[str, type] = {}
    for root in ("franka_msgs/FrankaState", "franka_msgs/ErrorRecoveryAction", "franka_gripper/MoveAction",
                 "franka_gripper/GraspAction"):
        generated = genpy.dynamic.generate_dynamic(root, full_text(root))
        classes.update(generated)  # an Action brings its Goal/Result/Feedback/Action* classes along
    return classes
