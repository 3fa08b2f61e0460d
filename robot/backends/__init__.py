"""Arm backends behind the bridge. Each lives in its own module and imports its middleware (mujoco, rospy, rclpy,
pylibfranka / franky) only when built, so a machine without ROS or libfranka can still run the rest."""

from __future__ import annotations

from typing import Any

from robot.backends.base import ArmState, Backend

BACKEND_NAMES = ("mujoco", "ros1", "ros2", "libfranka")


def make_backend(name: str, options: dict[str, Any] | None = None) -> Backend:
    """Build the backend `name` with its options (a section of the bridge config)."""
    options = dict(options or {})
    if name == "mujoco":
        from robot.backends.mujoco import MujocoBackend

        return MujocoBackend(**options)
    if name == "ros1":
        from robot.backends.ros1 import Ros1Backend, Ros1Config

        return Ros1Backend(Ros1Config(**options))
    if name == "ros2":
        from robot.backends.ros2 import Ros2Backend, Ros2Config

        return Ros2Backend(Ros2Config(**options))
    if name == "libfranka":
        from robot.backends.libfranka import LibfrankaBackend, LibfrankaConfig

        return LibfrankaBackend(LibfrankaConfig(**options))
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")


__all__ = ["BACKEND_NAMES", "ArmState", "Backend", "make_backend"]
