"""MuJoCo Franka Panda tabletop simulator: a `robot.interface.Robot` backend, tasks with image goals, scripted
experts and DROID-format data collection.

Importing this package picks EGL for offscreen rendering on a headless Linux machine (before MuJoCo loads), unless
`MUJOCO_GL` is already set.
"""

from __future__ import annotations

from vjepa_ac.data.conventions import use_headless_rendering
from vjepa_ac.data.lazy_exports import lazy_exports

use_headless_rendering()

TASK_NAMES: tuple[str, ...] = ("reach", "grasp", "reach_with_object", "pick_and_place")
"""The simulator's tasks (`sim.tasks.TASKS`), named here so that command lines can offer them without loading MuJoCo."""

__all__, __getattr__ = lazy_exports(__name__, {
    ".scene": ("SceneConfig",),
    ".robot": ("SimConfig", "SimRobot"),
    ".tasks": ("Task", "make_env"),
}, defined=("TASK_NAMES",))
