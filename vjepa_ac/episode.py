"""One closed-loop episode's setup, shared by `vjepa-ac run`, `demo` and `eval` (and `calibrate`, `goal capture`):
the robot, its goal images and success check, the action repeat and the step budget.

A sim task (`sim.make_env`) brings all of these; a bridged arm brings the robot alone and the caller gives the goals.
`EpisodeSetup.controlled` spreads each planned action over control_hz / fps control periods (`ActionRepeatRobot`),
the interval the predictor imagines, and divides a task's step budget (counted in control periods) accordingly.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from vjepa_ac.data.conventions import camera_views
from vjepa_ac.robot.action_repeat import ActionRepeatRobot, control_periods_per_step
from vjepa_ac.robot.interface import Robot


@dataclass
class EpisodeSetup:
    """What one episode runs on. `goals`, `success` and `budget_periods` are None for a bridged arm."""

    robot: Robot
    goals: list[np.ndarray] | None = None
    """The task's goal images, one per sub-goal."""
    success: Callable[[], bool] | None = None
    """The task's success check (`done` of `planner.run_mpc`)."""
    budget_periods: int | None = None
    """The task's step budget in control periods."""
    task: Any = None
    """The sim task (`sim.Task`), for its final `info()`."""

    def periods_per_action(self, fps: float | None) -> int:
        """Control periods each planned action is spread over (1 without `fps`)."""
        return control_periods_per_step(self.robot.control_hz, fps) if fps else 1

    def with_budget(self, config, periods: int):
        """`config` (an `MPCConfig`) with the task's budget in planned actions, unless it sets `max_steps` itself."""
        if config.max_steps is not None or self.budget_periods is None:
            return config
        return dataclasses.replace(config, max_steps=math.ceil(self.budget_periods / periods))

    def controlled(self, config, fps: float | None, robot: Robot | None = None):
        """(`ActionRepeatRobot` around `robot` (default: this setup's), `config` with the step budget, periods)."""
        periods = self.periods_per_action(fps)
        return ActionRepeatRobot(robot or self.robot, periods), self.with_budget(config, periods), periods


def sim_episode(task_name: str, seed: int, *, camera: str, sim_options: dict[str, Any] | None = None,
                robot=None) -> EpisodeSetup:
    """The sim task `task_name` on `seed`: a new scene built from a model card's "sim" settings (`sim_options`), or
    `robot`'s scene reset for it (so consecutive episodes reuse one renderer)."""
    from vjepa_ac.sim import make_env
    from vjepa_ac.model_card import sim_config_options

    if robot is None:
        options = sim_config_options(sim_options or {})
        if "cameras" in options:  # the scene renders every view the planner's camera joins
            options["cameras"] = tuple(dict.fromkeys([*options["cameras"], *camera_views(camera)]))
        robot, task = make_env(task_name, seed=seed, **options, goal_camera=camera)
    else:
        robot, task = make_env(task_name, seed=seed, robot=robot, goal_camera=camera)
    return EpisodeSetup(robot=robot, goals=task.goal_images(), success=task.success, budget_periods=task.max_steps,
                        task=task)
