"""Arm backends behind the bridge: the interface (`Backend`, `ArmState`) and the real arms' middleware (ROS 1, ROS 2,
libfranka). Each backend lives in its own module and imports its middleware (rospy, rclpy, pylibfranka / franky) only
when built, so a machine without ROS or libfranka can still run the rest. The simulated arm's backend is the
simulator's (`sim.backend.MujocoBackend`); the `vjepa-ac bridge` command (`vjepa_ac.bridge`) builds the one its
configuration names.
"""

from __future__ import annotations

from vjepa_ac.data.lazy_exports import lazy_exports

BACKEND_NAMES = ("mujoco", "ros1", "ros2", "libfranka")
"""The backends a bridge configuration may name."""

__all__, __getattr__ = lazy_exports(__name__, {
    ".base": ("ArmState", "Backend", "FrankaHandSettings"),
}, defined=("BACKEND_NAMES",))
