"""Tabletop tasks with seeded initial conditions, success checks, step budgets and image goals.

Goal images are rendered from the goal configuration (arm, gripper and objects where the task wants them), from the
camera the world model sees, as the V-JEPA 2-AC robot protocol gives goals as images. Grasping goes through sub-goal
images (above the cube, fingers around it, closed on it, lifted), and pick-and-place adds putting the cube on the mat
and letting go; reach tasks have one goal image.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from vjepa_ac.data.conventions import camera_views, join_views
from vjepa_ac.data.droid.poses import euler_xyz_to_matrix, matrix_to_euler_xyz
from vjepa_ac.sim import TASK_NAMES  # noqa: F401  (re-exported beside TASKS)
from vjepa_ac.robot.kinematics import DROID_HOME_Q
from vjepa_ac.sim.robot import SimConfig, SimRobot
from vjepa_ac.sim.randomization import DISTRACTOR_PREFIX
from vjepa_ac.sim.scene import CUBE_HALF_SIZE, TABLE_HEIGHT, TARGET_HALF_SIZE, resting_height, yaw_rotation

DOWN = np.diag([1.0, -1.0, -1.0])
"""Flange rotation with the gripper pointing straight down (DROID's home orientation)."""
HAND_YAW_OFFSET = -np.pi / 4
"""The Panda hand is mounted turned -45 deg about the flange axis: its fingers close along this yaw + 90 deg."""
GRASP_DEPTH = 0.10
"""Flange height above an object's centre when the finger pads straddle it."""
APPROACH_HEIGHT = 0.12
"""How far above the grasp pose the approach sub-goal puts the flange, clear of the cube."""
HELD_GRIPPER = 1.0 - CUBE_HALF_SIZE / 0.04
"""Measured closure when the fingers hold the cube."""
START_JITTER = np.array([0.04, 0.06, 0.04])
"""Largest offset (m) of the initial flange position from DROID's home pose, per axis."""
START_YAW_JITTER = 0.3
"""Largest initial turn (rad) of the gripper about the vertical."""
OBJECT_REGION = (np.array([0.45, -0.18]), np.array([0.62, 0.18]))
"""Table area (x, y bounds in the base frame) where objects and targets are placed."""
DISTRACTOR_REGION = (np.array([0.3, -0.45]), np.array([0.8, 0.45]))
"""Table area where the distractors of a randomised scene stand, clear of the task's objects."""
DISTRACTOR_CLEARANCE = 0.15
"""Least distance (m) from a distractor to the cube, the mat, the mug and the other distractors."""


def gripper_rotation(yaw: float) -> np.ndarray:
    """Flange rotation pointing down with the hand turned by `yaw` about the vertical."""
    return yaw_rotation(yaw) @ DOWN


def grasp_yaw(object_yaw: float) -> float:
    """The hand yaw in [-pi/4, pi/4] whose fingers close on two opposite faces of a cube turned by `object_yaw`."""
    # Fingers close along the hand's y axis, which points at yaw + HAND_YAW_OFFSET for a flange turned by yaw from
    # DOWN; the cube looks the same every quarter turn.
    yaw = object_yaw - HAND_YAW_OFFSET
    return float((yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4)


@dataclass
class GoalConfiguration:
    """Where everything is in a goal image."""

    flange_pos: np.ndarray
    flange_yaw: float
    gripper: float
    objects: dict[str, tuple[np.ndarray, float]] = field(default_factory=dict)
    """Object name -> (position, yaw)."""


class Task(abc.ABC):
    """A task on a `SimRobot`: `reset` randomises it from a seed; the planner sees only `goal_images`."""

    name: ClassVar[str]
    max_steps: ClassVar[int]
    """Step budget at 15 Hz."""
    moves_object: ClassVar[bool] = False
    """Whether the goal is about where the cube ends up (then `info()["goal_distance"]` is the cube's distance)."""

    def __init__(self, robot: SimRobot, *, goal_camera: str = "left") -> None:
        self.robot = robot
        self.goal_camera = goal_camera
        self.rng = np.random.default_rng(0)
        self.goals: list[GoalConfiguration] = []

    def reset(self, seed: int) -> None:
        """New initial conditions and goals from `seed` (same seed, same episode)."""
        self.rng = np.random.default_rng(seed)
        self.robot.reset(seed=seed)
        # Like DROID's optional reset noise: start near, not exactly at, the home pose.
        home_pos, _ = self.robot.kinematics.fk(DROID_HOME_Q)
        start = home_pos + self.rng.uniform(-1.0, 1.0, 3) * START_JITTER
        self.robot.reset(self.solve_ik(start, float(self.rng.uniform(-START_YAW_JITTER, START_YAW_JITTER))))
        self._place_objects()
        self._place_distractors()
        self.goals = self._goals()
        self.robot.settle()

    @abc.abstractmethod
    def _place_objects(self) -> None: ...

    @abc.abstractmethod
    def _goals(self) -> list[GoalConfiguration]: ...

    @abc.abstractmethod
    def success(self) -> bool: ...

    def info(self) -> dict:
        """Numbers for logs: flange-to-goal distance and, where the cube is in the goal, object-to-goal distance;
        `goal_distance` is the one the task is about (the cube's for tasks that move it, else the flange's)."""
        goal = self.goals[-1]
        flange = self.robot.droid_state()[:3]
        out = {"task": self.name, "ee_goal_distance": float(np.linalg.norm(flange - goal.flange_pos))}
        if "cube" in goal.objects:
            cube = self.robot.body_position("cube")
            out["object_goal_distance"] = float(np.linalg.norm(cube - goal.objects["cube"][0]))
            out["object_height"] = float(cube[2] - self._cube_resting_z())
        out["goal_distance"] = out["object_goal_distance"] if self.moves_object else out["ee_goal_distance"]
        out["success"] = self.success()
        return out

    def goal_states(self) -> list[np.ndarray]:
        """DROID states [7] of the goal configurations (flange pose + gripper)."""
        return [
            np.concatenate([g.flange_pos, matrix_to_euler_xyz(gripper_rotation(g.flange_yaw)), [g.gripper]])
            for g in self.goals
        ]

    def goal_images(self) -> list[np.ndarray]:
        """One image [H, W, 3] uint8 per (sub-)goal, from the goal camera at the observation size (a multi-view
        camera such as "left+wrist": its views side by side, as the planner sees them)."""
        return [self.render_goal_camera(self.solve_ik(goal.flange_pos, goal.flange_yaw), goal.gripper, goal.objects)
                for goal in self.goals]

    def render_goal_camera(self, q: np.ndarray, gripper: float, objects: dict) -> np.ndarray:
        """The goal camera's image [H, W, 3] of the arm at joint angles `q` with the gripper and objects given,
        leaving the simulation untouched (a multi-view camera's views side by side)."""
        views = camera_views(self.goal_camera)
        rendered = self.robot.render_configuration(q, gripper, objects, roles=views)
        return join_views([rendered[view] for view in views], self.goal_camera)

    def solve_ik(self, flange_pos: np.ndarray, yaw: float) -> np.ndarray:
        result = self.robot.kinematics.ik(flange_pos, gripper_rotation(yaw), DROID_HOME_Q,
                                          limits=self.robot.info.limits)
        if not result.converged:
            raise RuntimeError(f"{self.name}: goal pose {flange_pos.round(3).tolist()} is not reachable")
        return result.q

    # -- helpers shared by the object tasks ----------------------------------------------------------------------

    def _sample_table_point(self, avoid: list[np.ndarray], min_distance: float) -> np.ndarray:
        low, high = OBJECT_REGION
        for _ in range(100):
            xy = self.rng.uniform(low, high)
            if all(np.linalg.norm(xy - other[:2]) >= min_distance for other in avoid):
                return xy
        raise RuntimeError("could not place an object away from the others")

    def _place_distractors(self) -> None:
        """Stand the distractors of a randomised scene (none in the fixed scene) on the table, away from the rest."""
        names = [n for n in self.robot.object_names if n.startswith(DISTRACTOR_PREFIX)]
        occupied = [self.robot.body_position(n) for n in ("cube", "mug", "target") if n in self.robot.object_names]
        low, high = DISTRACTOR_REGION
        for name in names:
            for _ in range(100):
                xy = self.rng.uniform(low, high)
                if all(np.linalg.norm(xy - other[:2]) >= DISTRACTOR_CLEARANCE for other in occupied):
                    break
            else:
                raise RuntimeError("could not place the distractors away from the task's objects")
            pos = np.array([*xy, TABLE_HEIGHT + resting_height(self.robot.model, name)])
            self.robot.set_object_pose(name, pos, float(self.rng.uniform(-np.pi, np.pi)))
            occupied.append(pos)

    def _place_cube_and_mug(self, avoid: list[np.ndarray] | None = None) -> None:
        avoid = list(avoid or [])
        cube_xy = self._sample_table_point(avoid, 0.15)
        self.cube_start = np.array([*cube_xy, self._cube_resting_z()])
        self.cube_yaw = float(self.rng.uniform(0, np.pi / 2))
        self.robot.set_object_pose("cube", self.cube_start, self.cube_yaw)
        self._place_mug([*avoid, self.cube_start])

    def _place_mug(self, avoid: list[np.ndarray]) -> None:
        # The mug stands aside as a distractor, farther out to the side than objects are placed.
        for _ in range(100):
            xy = np.array([self.rng.uniform(0.4, 0.7), self.rng.choice([-1, 1]) * self.rng.uniform(0.25, 0.35)])
            if all(np.linalg.norm(xy - other[:2]) >= 0.15 for other in avoid):
                break
        self.robot.set_object_pose("mug", np.array([*xy, TABLE_HEIGHT + 0.045]), float(self.rng.uniform(-np.pi, np.pi)))

    def _grasp_subgoals(self) -> list[GoalConfiguration]:
        """Approach (open, above the cube), straddle (open, fingers around it), grasp (closed on it)."""
        yaw = grasp_yaw(self.cube_yaw)
        grasp_pose = self.cube_start + [0, 0, GRASP_DEPTH]
        on_table = {"cube": (self.cube_start, self.cube_yaw)}
        return [
            GoalConfiguration(grasp_pose + [0, 0, APPROACH_HEIGHT], yaw, 0.0, on_table),
            GoalConfiguration(grasp_pose, yaw, 0.0, on_table),
            GoalConfiguration(grasp_pose, yaw, HELD_GRIPPER, on_table),
        ]

    def cube_in_hand(self) -> bool:
        """The cube is between the fingers: close to the grasp point with the fingers stopped on it."""
        state = self.robot.droid_state()
        grasp_point = state[:3] + euler_xyz_to_matrix(state[3:6])[:, 2] * GRASP_DEPTH
        near = np.linalg.norm(self.robot.body_position("cube") - grasp_point) < 0.04
        return bool(near and 0.2 < self.robot.gripper_position < 0.9)

    def _cube_is_held(self) -> bool:
        cube = self.robot.body_position("cube")
        return self.cube_in_hand() and bool(cube[2] > self._cube_resting_z() + 0.01)

    def _cube_resting_z(self) -> float:
        """Height of the cube's centre when it rests on the table (randomised scenes vary its size and shape)."""
        return TABLE_HEIGHT + resting_height(self.robot.model, "cube")


class ReachTask(Task):
    """Move the flange to a goal position (gripper pointing down, turned by a random yaw)."""

    name = "reach"
    max_steps = 60
    success_distance = 0.03

    def _place_objects(self) -> None:
        self._place_cube_and_mug()
        self.goal_pos = self.rng.uniform([0.42, -0.22, 0.18], [0.65, 0.22, 0.40])
        self.goal_yaw = float(self.rng.uniform(-0.3, 0.3))

    def _goals(self) -> list[GoalConfiguration]:
        objects = {"cube": (self.cube_start, self.cube_yaw)}
        return [GoalConfiguration(self.goal_pos, self.goal_yaw, 0.0, objects)]

    def success(self) -> bool:
        return bool(np.linalg.norm(self.robot.droid_state()[:3] - self.goal_pos) <= self.success_distance)


class GraspTask(Task):
    """Grasp the cube and lift it at least 5 cm. Sub-goals: approach, straddle, grasp, lifted."""

    name = "grasp"
    moves_object = True
    max_steps = 90
    lift_height = 0.05

    def _place_objects(self) -> None:
        self._place_cube_and_mug()

    def _goals(self) -> list[GoalConfiguration]:
        lifted = self.cube_start + [0, 0, 0.1]
        yaw = grasp_yaw(self.cube_yaw)
        return [*self._grasp_subgoals(),
                GoalConfiguration(lifted + [0, 0, GRASP_DEPTH], yaw, HELD_GRIPPER, {"cube": (lifted, self.cube_yaw)})]

    def success(self) -> bool:
        cube = self.robot.body_position("cube")
        return bool(cube[2] >= self.cube_start[2] + self.lift_height and self._cube_is_held())


class ReachWithObjectTask(Task):
    """Start with the cube in the hand and carry it to a goal position."""

    name = "reach_with_object"
    moves_object = True
    max_steps = 60
    success_distance = 0.04

    def _place_objects(self) -> None:
        self.cube_yaw = float(self.rng.uniform(0, np.pi / 2))
        yaw = grasp_yaw(self.cube_yaw)
        start = np.array([*self.rng.uniform(OBJECT_REGION[0], OBJECT_REGION[1]), self.rng.uniform(0.12, 0.2)])
        q = self.solve_ik(start + [0, 0, GRASP_DEPTH], yaw)
        self.robot.reset(q, gripper=HELD_GRIPPER)
        self.robot.set_object_pose("cube", start, self.cube_yaw)
        self._place_mug([start])
        # Close on the cube and let the grip settle before the episode starts.
        self.robot.send_joint_target(q, gripper=1.0)
        self.robot.settle(3)
        self.cube_start = self.robot.body_position("cube")
        self.goal_pos = np.array([*self.rng.uniform(OBJECT_REGION[0], OBJECT_REGION[1]), self.rng.uniform(0.1, 0.3)])

    def _goals(self) -> list[GoalConfiguration]:
        yaw = grasp_yaw(self.cube_yaw)
        return [GoalConfiguration(self.goal_pos + [0, 0, GRASP_DEPTH], yaw, HELD_GRIPPER,
                                  {"cube": (self.goal_pos, self.cube_yaw)})]

    def success(self) -> bool:
        cube = self.robot.body_position("cube")
        return bool(np.linalg.norm(cube - self.goal_pos) <= self.success_distance and self._cube_is_held())


class PickAndPlaceTask(Task):
    """Pick up the cube and put it down on the target mat. Sub-goals: approach, straddle, grasp, lifted, placed on the
    mat, released."""

    name = "pick_and_place"
    moves_object = True
    max_steps = 150

    def _place_objects(self) -> None:
        target_xy = self._sample_table_point([], 0.0)
        self.target_pos = np.array([*target_xy, TABLE_HEIGHT + 0.001])
        self.robot.set_object_pose("target", self.target_pos)
        self._place_cube_and_mug([self.target_pos])

    def _goals(self) -> list[GoalConfiguration]:
        yaw = grasp_yaw(self.cube_yaw)
        lifted = self.cube_start + [0, 0, 0.12]
        placed = np.array([*self.target_pos[:2], self.cube_start[2]])
        above = [0, 0, GRASP_DEPTH]
        on_mat = {"cube": (placed, self.cube_yaw)}
        return [
            *self._grasp_subgoals(),
            GoalConfiguration(lifted + above, yaw, HELD_GRIPPER, {"cube": (lifted, self.cube_yaw)}),
            GoalConfiguration(placed + above, yaw, HELD_GRIPPER, on_mat),
            GoalConfiguration(placed + above + [0, 0, 0.05], yaw, 0.0, on_mat),
        ]

    def success(self) -> bool:
        cube = self.robot.body_position("cube")
        on_target = bool(np.all(np.abs(cube[:2] - self.target_pos[:2]) <= TARGET_HALF_SIZE))
        resting = cube[2] <= self._cube_resting_z() + 0.01
        return on_target and resting and not self._cube_is_held()


TASKS: dict[str, type[Task]] = {
    task.name: task for task in (ReachTask, GraspTask, ReachWithObjectTask, PickAndPlaceTask)
}
"""The task classes by name, in the order of `sim.TASK_NAMES`."""


def make_env(task: str, *, seed: int, robot: SimRobot | None = None, **options) -> tuple[SimRobot, Task]:
    """A connected `SimRobot` and a `Task` reset with `seed`.

    `options` are `SimConfig` fields (e.g. `image_size=(256, 256)`, `randomize_appearance=True`) and `goal_camera`.
    Pass `robot` to reuse an already built scene (then `options` may only hold `goal_camera`).
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {list(TASKS)}")
    goal_camera = options.pop("goal_camera", "left")
    if robot is None:
        robot = SimRobot(SimConfig(**options))
    elif options:
        raise ValueError(f"options {sorted(options)} cannot change an existing robot")
    robot.connect()
    env_task = TASKS[task](robot, goal_camera=goal_camera)
    env_task.reset(seed)
    return robot, env_task
