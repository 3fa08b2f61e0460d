"""Scripted experts (waypoint followers with action noise) and a random explorer, both emitting DROID delta actions.

They produce training data with the diversity a world model needs: purposeful motions that complete the tasks, noisy
enough to visit states around the expert's path, plus undirected exploration.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from vjepa_ac.data.droid.poses import euler_xyz_to_matrix, matrix_to_euler_xyz
from vjepa_ac.robot.kinematics import rotation_error, rotvec_to_matrix
from vjepa_ac.sim.collect_config import ExpertConfig
from vjepa_ac.sim.tasks import (
    GRASP_DEPTH,
    GraspTask,
    PickAndPlaceTask,
    ReachTask,
    ReachWithObjectTask,
    Task,
    grasp_yaw,
    gripper_rotation,
)


@dataclass(frozen=True)
class Waypoint:
    pos: np.ndarray
    """Flange position (m, base frame)."""
    yaw: float
    gripper: float
    """Commanded closure at this waypoint (0 open, 1 closed)."""
    wait: int = 0
    """Steps to stay once reached."""
    tolerance: float | None = None


class ScriptedExpert:
    """Follows task-specific waypoints (staying at the last one); re-plans the grasp if the cube is not in the hand
    when it should be."""

    def __init__(self, task: Task, rng: np.random.Generator, config: ExpertConfig = ExpertConfig()) -> None:
        self.task = task
        self.rng = rng
        self.config = config
        self.waypoints = self._plan()
        self.index = 0
        self.dwell = 0

    def _plan(self) -> list[Waypoint]:
        task = self.task
        if isinstance(task, ReachTask):
            return [Waypoint(task.goal_pos, task.goal_yaw, 0.0)]
        if isinstance(task, ReachWithObjectTask):
            return [Waypoint(task.goal_pos + [0, 0, GRASP_DEPTH], grasp_yaw(task.cube_yaw), 1.0)]
        cube = self.task.robot.body_position("cube")
        yaw = grasp_yaw(_object_yaw(task))
        above, grip = cube + [0, 0, GRASP_DEPTH + 0.1], cube + [0, 0, GRASP_DEPTH]
        wait = self.config.gripper_wait
        pick = [
            Waypoint(above, yaw, 0.0),
            Waypoint(grip, yaw, 0.0, tolerance=0.005),
            Waypoint(grip, yaw, 1.0, wait=wait, tolerance=0.01),
            Waypoint(grip + [0, 0, 0.12], yaw, 1.0),
        ]
        if isinstance(task, GraspTask):
            return pick
        if isinstance(task, PickAndPlaceTask):
            place = np.array([*task.target_pos[:2], cube[2] + GRASP_DEPTH + 0.005])
            return [
                *pick,
                Waypoint(place + [0, 0, 0.1], yaw, 1.0),
                Waypoint(place, yaw, 1.0, tolerance=0.006),
                Waypoint(place, yaw, 0.0, wait=wait, tolerance=0.01),
                Waypoint(place + [0, 0, 0.1], yaw, 0.0),
            ]
        raise ValueError(f"no scripted expert for task {task.name!r}")

    def act(self, state: np.ndarray) -> np.ndarray:
        """The next DROID delta action [7] from the measured state [7]."""
        if self._grasp_lost():
            self.waypoints, self.index, self.dwell = self._plan(), 0, 0
        waypoint = self.waypoints[self.index]
        pos_err = waypoint.pos - state[:3]
        rot_err = rotation_error(gripper_rotation(waypoint.yaw), euler_xyz_to_matrix(state[3:6]))
        tolerance = waypoint.tolerance or self.config.position_tolerance
        if np.linalg.norm(pos_err) <= tolerance and np.linalg.norm(rot_err) <= self.config.rotation_tolerance:
            self.dwell += 1
            if self.dwell > waypoint.wait and self.index < len(self.waypoints) - 1:
                self.index, self.dwell = self.index + 1, 0
        cfg = self.config
        translation = _clip_norm(pos_err, cfg.max_translation) + self.rng.normal(0, cfg.translation_noise, 3)
        rotation = _clip_norm(rot_err, cfg.max_rotation) + self.rng.normal(0, cfg.rotation_noise, 3)
        gripper = waypoint.gripper - state[6]
        return np.concatenate([translation, matrix_to_euler_xyz(rotvec_to_matrix(rotation)), [gripper]])

    def _grasp_lost(self) -> bool:
        """After closing on the cube, it should stay in the hand until the release waypoint."""
        if isinstance(self.task, (ReachTask, ReachWithObjectTask)):
            return False
        carrying = [i for i, w in enumerate(self.waypoints) if w.gripper == 1.0]
        first_carry, last_carry = carrying[0] + 1, carrying[-1]
        return first_carry <= self.index <= last_carry and not self.task.cube_in_hand()


FAILURES = {
    "reach": ("miss",),
    "reach_with_object": ("miss", "drop"),
    "grasp": ("miss", "early_close", "drop"),
    "pick_and_place": ("miss", "early_close", "drop", "misplace"),
}
"""Deliberate mistakes a `FailedAttempt` can make, per task: `miss` aims beside the goal (or the object),
`early_close` closes the fingers before they reach the object, `drop` lets go while carrying, `misplace` puts the
object down beside the mat."""


class FailedAttempt(ScriptedExpert):
    """The scripted expert making one deliberate mistake (`failure`, drawn from `FAILURES` unless given) and never
    retrying: the near-misses and botched grasps a human operator's data also holds."""

    def __init__(self, task: Task, rng: np.random.Generator, config: ExpertConfig = ExpertConfig(),
                 failure: str | None = None) -> None:
        choices = FAILURES[task.name]
        if failure is not None and failure not in choices:
            raise ValueError(f"failure {failure!r} does not apply to {task.name}; choose from {choices}")
        self.failure = failure or str(rng.choice(choices))
        angle = rng.uniform(-np.pi, np.pi)
        direction = np.array([np.cos(angle), np.sin(angle), 0.0])
        if self.failure == "misplace":
            # Off the 12 cm mat: 11-15 cm from its centre along x or y, whichever is larger.
            self.offset = direction * rng.uniform(0.11, 0.15) / np.abs(direction).max()
        else:
            # Far enough that the fingers close beside the object and a reach ends outside its tolerance.
            self.offset = direction * rng.uniform(0.05, 0.09)
        super().__init__(task, rng, config)

    def _plan(self) -> list[Waypoint]:
        plan = list(super()._plan())
        if self.failure == "miss":
            # Every waypoint up to the first gripper change is shifted, so the hand arrives beside its target. The
            # shift is square to the way there, so the hand does not pass through the goal on its way past it.
            approach = plan[0].pos - self.task.robot.droid_state()[:3]
            approach[2] = 0.0
            if np.linalg.norm(approach) > 1e-3:
                along = approach / np.linalg.norm(approach)
                square = self.offset - (self.offset @ along) * along
                if np.linalg.norm(square) < 1e-3:  # shifted straight ahead: turn it by 90 degrees
                    square = np.array([-self.offset[1], self.offset[0], 0.0])
                self.offset = square * (np.linalg.norm(self.offset) / np.linalg.norm(square))
            change = next((i for i, w in enumerate(plan) if w.gripper != plan[0].gripper), len(plan))
            return [replace(w, pos=w.pos + self.offset) if i <= change else w for i, w in enumerate(plan)]
        if self.failure == "early_close":
            return [replace(w, gripper=1.0) for w in plan]
        carrying = [i for i, w in enumerate(plan) if w.gripper == 1.0]
        if self.failure == "drop":
            if len(carrying) == 1:  # the object starts in the hand: let go at once
                return [replace(plan[0], gripper=0.0)]
            # Start lifting, then open the fingers 3 cm above the grasp (below a grasp task's 5 cm success height).
            lift = carrying[1]
            up = replace(plan[lift], pos=plan[lift - 1].pos + [0.0, 0.0, 0.03])
            return [*plan[:lift], up, replace(up, gripper=0.0, wait=0)]
        # misplace: everything after the lift goes to a spot off the mat.
        lift = carrying[1]
        return [replace(w, pos=w.pos + self.offset) if i > lift else w for i, w in enumerate(plan)]

    def _grasp_lost(self) -> bool:
        return False


def _object_yaw(task: Task) -> float:
    quat = task.robot.data.body("cube").xquat
    # Yaw of a body that only turns about the vertical (a cube resting on the table).
    return float(2.0 * np.arctan2(quat[3], quat[0]))


def _clip_norm(vec: np.ndarray, max_norm: float) -> np.ndarray:
    norm = float(np.linalg.norm(vec))
    return vec * (max_norm / norm) if norm > max_norm else vec


class RandomExplorer:
    """Smooth random motion (an Ornstein-Uhlenbeck process on the velocity) inside a box above the table, with the
    gripper toggling now and then."""

    def __init__(
        self,
        rng: np.random.Generator,
        *,
        box_min: tuple[float, float, float] = (0.3, -0.3, 0.12),
        box_max: tuple[float, float, float] = (0.7, 0.3, 0.5),
        step_std: float = 0.012,
        yaw_std: float = 0.04,
        toggle_probability: float = 0.04,
    ) -> None:
        self.rng = rng
        self.box_min, self.box_max = np.asarray(box_min, dtype=np.float64), np.asarray(box_max, dtype=np.float64)
        self.step_std, self.yaw_std, self.toggle_probability = step_std, yaw_std, toggle_probability
        self.velocity = np.zeros(3)
        self.yaw_rate = 0.0
        self.gripper = 0.0

    def act(self, state: np.ndarray) -> np.ndarray:
        self.velocity = 0.8 * self.velocity + self.rng.normal(0, self.step_std, 3)
        # Steer back when leaving the box so exploration stays where the cameras look.
        centre = (self.box_min + self.box_max) / 2
        outside = (state[:3] < self.box_min) | (state[:3] > self.box_max)
        self.velocity[outside] = 0.02 * np.sign(centre - state[:3])[outside]
        self.yaw_rate = 0.8 * self.yaw_rate + self.rng.normal(0, self.yaw_std)
        # Keep the gripper pointing roughly down: correct tilt, explore only yaw.
        current = euler_xyz_to_matrix(state[3:6])
        tilt = rotation_error(gripper_rotation(_yaw_of(current)), current)
        rotation = _clip_norm(tilt, 0.1) + np.array([0.0, 0.0, self.yaw_rate])
        if self.rng.random() < self.toggle_probability:
            self.gripper = 1.0 - self.gripper
        translation = _clip_norm(self.velocity, 0.04)
        return np.concatenate([translation, matrix_to_euler_xyz(rotvec_to_matrix(rotation)), [self.gripper - state[6]]])


def _yaw_of(rot: np.ndarray) -> float:
    """Yaw of a flange rotation relative to pointing straight down (`gripper_rotation(yaw) ~ rot`)."""
    return float(np.arctan2(rot[1, 0], rot[0, 0]))
