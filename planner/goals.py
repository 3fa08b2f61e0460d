"""Goal schedules: the goal images of a task, one per sub-goal, with how the planner treats each, in one small YAML
file beside the images (written by `vjepa-ac goal capture`, read by `vjepa-ac run/plan --goal-schedule FILE`).

File format (`schedule.yaml`; paths are relative to the file, so the folder can be moved as a whole)::

    format: vjepa-ac-goal-schedule
    version: 1
    camera: left              # camera role the images were taken with; the planner must plan from the same one
    image_size: [180, 320]    # (height, width) of every image: the camera's frame size
    crop: droid               # crop the planner applies before resizing (droid, square or null), for the record
    switch: steps             # steps: sub-goal i is in force for its `steps` control steps (the paper's 4/10/4)
                              # energy: advance once the observed frame's energy to the sub-goal is <= switch_energy
                              # plateau: advance once that energy has not fallen for switch_plateau steps
                              # (with energy or plateau, a sub-goal's `steps`, where every sub-goal has them, are caps)
    switch_energy: null
    switch_plateau: null
    stop_energy: null         # stop once the last sub-goal's energy is <= this (null: run the step budget)
    goals:
      - image: goal_00.png
        steps: 10             # control steps toward this sub-goal (required with switch: steps)
        gripper: -0.5         # Δgripper pinned while this sub-goal is in force (-1 opens, +1 closes), null = searched
        state: [0.55, 0.0, 0.45, 3.14, 0.0, 0.0, 0.0]   # DROID state when the image was taken (for reference)
        joint_positions: [...]
        gripper_position: 0.0

The schedule maps onto `planner.mpc.MPCConfig`: `goal_schedule` (steps, or caps), `goal_gripper`, `switch_energy`,
`switch_plateau`, `stop_energy` and `camera` (`GoalSchedule.mpc_settings`). Reading checks everything up front and names the problem
(`GoalScheduleError`); writing stores each image before the YAML that references it and replaces the YAML atomically,
so an interrupted capture keeps every sub-goal taken so far.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

FORMAT = "vjepa-ac-goal-schedule"
VERSION = 1
SCHEDULE_NAME = "schedule.yaml"
SWITCH_RULES = ("steps", "energy", "plateau")


class GoalScheduleError(ValueError):
    """A goal schedule file or one of its images is unusable; the message names the file and the problem."""


@dataclass(frozen=True)
class SubGoal:
    image: str
    """Image file, relative to the schedule file."""
    steps: int | None = None
    gripper: float | None = None
    """Δgripper pinned toward this sub-goal (None = searched)."""
    state: tuple[float, ...] | None = None
    joint_positions: tuple[float, ...] | None = None
    gripper_position: float | None = None


@dataclass(frozen=True)
class GoalSchedule:
    camera: str
    image_size: tuple[int, int]
    """(height, width) of every image."""
    goals: tuple[SubGoal, ...]
    switch: str = "steps"
    switch_energy: float | None = None
    stop_energy: float | None = None
    crop: str | None = "droid"
    switch_plateau: int | None = None
    """Steps without progress after which `switch: plateau` moves on."""
    path: Path | None = field(default=None, compare=False)
    """The file this schedule was read from or written to (images are relative to its folder)."""

    def __post_init__(self) -> None:
        where = self.path or "goal schedule"
        if not self.goals:
            raise GoalScheduleError(f"{where}: no sub-goals")
        if self.switch not in SWITCH_RULES:
            raise GoalScheduleError(f"{where}: switch must be one of {SWITCH_RULES}, got {self.switch!r}")
        if len(self.image_size) != 2 or min(self.image_size) < 1:
            raise GoalScheduleError(f"{where}: image_size must be [height, width], got {list(self.image_size)}")
        for i, goal in enumerate(self.goals):
            if self.switch == "steps" and not (isinstance(goal.steps, int) and goal.steps >= 1):
                raise GoalScheduleError(f"{where}: sub-goal {i} ({goal.image}) needs steps >= 1 with switch: steps, "
                                        f"got {goal.steps!r}")
            if goal.gripper is not None and not -1.0 <= goal.gripper <= 1.0:
                raise GoalScheduleError(f"{where}: sub-goal {i} ({goal.image}): gripper must be in [-1, 1] or null, "
                                        f"got {goal.gripper}")
        if self.switch == "energy" and len(self.goals) > 1 and self.switch_energy is None:
            raise GoalScheduleError(f"{where}: switch: energy needs switch_energy")
        if self.switch == "plateau" and not (isinstance(self.switch_plateau, int) and self.switch_plateau >= 1):
            raise GoalScheduleError(f"{where}: switch: plateau needs switch_plateau >= 1 steps, "
                                    f"got {self.switch_plateau!r}")
        for name in ("switch_energy", "stop_energy"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise GoalScheduleError(f"{where}: {name} must be finite, got {value}")

    @property
    def folder(self) -> Path:
        return self.path.parent if self.path is not None else Path(".")

    def image_path(self, index: int) -> Path:
        return self.folder / self.goals[index].image

    def mpc_settings(self) -> dict[str, Any]:
        """`MPCConfig` fields this schedule sets."""
        pins = tuple(g.gripper for g in self.goals)
        steps = tuple(g.steps for g in self.goals)
        return {
            "camera": self.camera,
            # With an energy rule the step counts are caps, and only meaningful when every sub-goal has one.
            "goal_schedule": steps if self.switch == "steps" or None not in steps else None,
            "goal_gripper": pins if any(p is not None for p in pins) else None,
            "switch_energy": self.switch_energy if self.switch == "energy" else None,
            "switch_plateau": self.switch_plateau if self.switch == "plateau" else None,
            "stop_energy": self.stop_energy,
        }

    def load_images(self) -> list[np.ndarray]:
        """Every sub-goal's RGB uint8 image, checked to exist, decode and have `image_size`."""
        import cv2

        images = []
        for i, goal in enumerate(self.goals):
            path = self.image_path(i)
            if not path.is_file():
                raise GoalScheduleError(f"{self.path}: sub-goal {i} refers to {path}, which does not exist")
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise GoalScheduleError(f"{self.path}: sub-goal {i}: {path} is not a readable image")
            if bgr.shape[:2] != tuple(self.image_size):
                raise GoalScheduleError(
                    f"{self.path}: sub-goal {i}: {path} is {bgr.shape[1]}x{bgr.shape[0]}, but the schedule's camera "
                    f"frames are {self.image_size[1]}x{self.image_size[0]}"
                )
            images.append(np.ascontiguousarray(bgr[..., ::-1]))
        return images

    def check_camera(self, camera: str, frame_shape: Sequence[int] | None = None) -> None:
        """GoalScheduleError unless the planner's camera (and, if given, its frame shape [H, W, 3]) match."""
        if camera != self.camera:
            raise GoalScheduleError(
                f"{self.path}: the goal images were taken with camera {self.camera!r} but the planner uses {camera!r}; "
                f"plan from the same camera (--camera {self.camera}) or capture the goals again"
            )
        if frame_shape is not None and tuple(frame_shape[:2]) != tuple(self.image_size):
            raise GoalScheduleError(
                f"{self.path}: the goal images are {self.image_size[1]}x{self.image_size[0]} but camera {camera!r} "
                f"delivers {frame_shape[1]}x{frame_shape[0]} frames; capture the goals again at this resolution"
            )

    def to_dict(self) -> dict[str, Any]:
        def goal_dict(goal: SubGoal) -> dict[str, Any]:
            data = {"image": goal.image, "steps": goal.steps, "gripper": goal.gripper}
            for name in ("state", "joint_positions"):
                value = getattr(goal, name)
                if value is not None:
                    data[name] = [float(v) for v in value]
            if goal.gripper_position is not None:
                data["gripper_position"] = float(goal.gripper_position)
            return data

        return {
            "format": FORMAT,
            "version": VERSION,
            "camera": self.camera,
            "image_size": [int(v) for v in self.image_size],
            "crop": self.crop,
            "switch": self.switch,
            "switch_energy": self.switch_energy,
            "switch_plateau": self.switch_plateau,
            "stop_energy": self.stop_energy,
            "goals": [goal_dict(g) for g in self.goals],
        }


def _number_list(value: Any, length: int, where: str) -> tuple[float, ...]:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise GoalScheduleError(f"{where} must be {length} numbers, got {value!r}") from None
    if arr.shape != (length,) or not np.all(np.isfinite(arr)):
        raise GoalScheduleError(f"{where} must be {length} finite numbers, got {value!r}")
    return tuple(arr.tolist())


def _optional_float(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise GoalScheduleError(f"{where} must be a number or null, got {value!r}")
    return float(value)


_GOAL_KEYS = {f.name for f in dataclasses.fields(SubGoal)}
_TOP_KEYS = {"format", "version", "camera", "image_size", "crop", "switch", "switch_energy", "switch_plateau",
             "stop_energy", "goals"}


def load_goal_schedule(path: str | os.PathLike) -> GoalSchedule:
    """Read and check a schedule file (a folder means its `schedule.yaml`); images are checked by `load_images`."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / SCHEDULE_NAME
    if not path.is_file():
        raise GoalScheduleError(f"goal schedule not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise GoalScheduleError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise GoalScheduleError(f"{path} is not a goal schedule (expected 'format: {FORMAT}')")
    if data.get("version") != VERSION:
        raise GoalScheduleError(f"{path}: goal schedule version {data.get('version')!r} is not supported "
                                f"(this version reads {VERSION})")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise GoalScheduleError(f"{path}: unknown keys {sorted(unknown)} (allowed: {sorted(_TOP_KEYS)})")
    goals_data = data.get("goals")
    if not isinstance(goals_data, list):
        raise GoalScheduleError(f"{path}: 'goals' must be a list of sub-goals")
    goals = []
    for i, item in enumerate(goals_data):
        where = f"{path}: sub-goal {i}"
        if not isinstance(item, dict) or not isinstance(item.get("image"), str):
            raise GoalScheduleError(f"{where} must be a mapping with an 'image' file name")
        unknown = set(item) - _GOAL_KEYS
        if unknown:
            raise GoalScheduleError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(_GOAL_KEYS)})")
        steps = item.get("steps")
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int)):
            raise GoalScheduleError(f"{where}: steps must be an integer, got {steps!r}")
        goals.append(SubGoal(
            image=item["image"],
            steps=steps,
            gripper=_optional_float(item.get("gripper"), f"{where}: gripper"),
            state=None if item.get("state") is None else _number_list(item["state"], 7, f"{where}: state"),
            joint_positions=None if item.get("joint_positions") is None
            else _number_list(item["joint_positions"], 7, f"{where}: joint_positions"),
            gripper_position=_optional_float(item.get("gripper_position"), f"{where}: gripper_position"),
        ))
    camera = data.get("camera")
    if not isinstance(camera, str) or not camera:
        raise GoalScheduleError(f"{path}: 'camera' must name the camera role the images were taken with")
    size = _number_list(data.get("image_size"), 2, f"{path}: image_size")
    return GoalSchedule(
        camera=camera,
        image_size=(int(size[0]), int(size[1])),
        goals=tuple(goals),
        switch=data.get("switch", "steps"),
        switch_energy=_optional_float(data.get("switch_energy"), f"{path}: switch_energy"),
        stop_energy=_optional_float(data.get("stop_energy"), f"{path}: stop_energy"),
        crop=data.get("crop"),
        switch_plateau=data.get("switch_plateau"),
        path=path,
    )


def write_goal_schedule(schedule: GoalSchedule, path: str | os.PathLike) -> GoalSchedule:
    """Write `schedule` as YAML to `path`, atomically (a reader sees the old file or the new one, never a torn one)."""
    path = Path(path)
    text = "# vjepa-ac goal schedule (format: planner/goals.py); edit steps / gripper / switch as needed\n"
    text += yaml.safe_dump(schedule.to_dict(), sort_keys=False, default_flow_style=None)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return dataclasses.replace(schedule, path=path)


class GoalScheduleWriter:
    """Builds a schedule one capture at a time in `folder`: each `add` writes the image, then the updated YAML.

    An existing schedule in the folder is never overwritten unless `overwrite` (then its image files are replaced as
    new captures reuse their names)."""

    def __init__(self, folder: str | os.PathLike, *, camera: str, crop: str | None, switch: str = "steps",
                 switch_energy: float | None = None, stop_energy: float | None = None,
                 switch_plateau: int | None = None, overwrite: bool = False) -> None:
        self.folder = Path(folder).expanduser()
        self.path = self.folder / SCHEDULE_NAME
        if self.path.exists() and not overwrite:
            raise GoalScheduleError(f"{self.path} already exists; choose another folder or overwrite it explicitly")
        if switch not in SWITCH_RULES:
            raise GoalScheduleError(f"switch must be one of {SWITCH_RULES}, got {switch!r}")
        self.camera, self.crop = camera, crop
        self.switch, self.switch_energy, self.stop_energy = switch, switch_energy, stop_energy
        self.switch_plateau = switch_plateau
        self.goals: list[SubGoal] = []
        self.image_size: tuple[int, int] | None = None
        self.schedule: GoalSchedule | None = None

    def add(self, image: np.ndarray, *, steps: int | None, gripper: float | None, state: Sequence[float],
            joint_positions: Sequence[float], gripper_position: float) -> SubGoal:
        import cv2

        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise GoalScheduleError(f"a goal image must be uint8 [H, W, 3] RGB, got {image.dtype} {image.shape}")
        if self.image_size is None:
            self.image_size = (int(image.shape[0]), int(image.shape[1]))
        elif image.shape[:2] != self.image_size:
            raise GoalScheduleError(
                f"camera {self.camera!r} changed its frame size from {self.image_size[1]}x{self.image_size[0]} to "
                f"{image.shape[1]}x{image.shape[0]} during the capture; every goal must share one size"
            )
        goal = SubGoal(
            image=f"goal_{len(self.goals):02d}.png",
            steps=steps,
            gripper=gripper,
            # Micrometres and microradians: a readable file that reads back to exactly these values.
            state=tuple(round(float(v), 6) for v in state),
            joint_positions=tuple(round(float(v), 6) for v in joint_positions),
            gripper_position=round(float(gripper_position), 6),
        )
        candidate = GoalSchedule(
            camera=self.camera, image_size=self.image_size, goals=(*self.goals, goal), switch=self.switch,
            switch_energy=self.switch_energy, stop_energy=self.stop_energy, crop=self.crop,
            switch_plateau=self.switch_plateau,
        )  # checks the sub-goal before anything is written
        self.folder.mkdir(parents=True, exist_ok=True)
        image_path = self.folder / goal.image
        if not cv2.imwrite(str(image_path), np.ascontiguousarray(image[..., ::-1])):
            raise GoalScheduleError(f"could not write {image_path}")
        self.schedule = write_goal_schedule(candidate, self.path)
        self.goals.append(goal)
        return goal
