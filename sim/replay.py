"""Replay a DROID episode's recorded joint trajectory on the simulated arm and write a side-by-side video (recorded
camera | simulation), plus how far the simulated flange is from the recorded `cartesian_position`. Real DROID
episodes record no object poses: their objects stay where the scene places them.

Episodes from `sim collect` also carry their scene (`sim_scene`) and every object's pose per step; the replay
rebuilds that scene and puts the objects where they were at each step.

The flange comparison is the check that the simulator's kinematics and DROID's end-effector convention agree: the
forward kinematics of the recorded joint angles should land on the recorded poses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from vjepa_ac.data.droid import EpisodeError, open_episode
from vjepa_ac.data.droid.raw import RawEpisode
from vjepa_ac.data.droid.poses import euler_xyz_to_matrix
from vjepa_ac.data.droid.video import write_video
from vjepa_ac.robot.interface import ActionStatus
from vjepa_ac.robot.kinematics import rotation_error
from vjepa_ac.sim.robot import SimConfig, SimRobot
from vjepa_ac.sim.collect import OBJECT_POSES_GROUP
from vjepa_ac.sim.randomization import SceneVariation
from vjepa_ac.sim.scene import SceneConfig, set_camera_pose

logger = logging.getLogger(__name__)

_READ_CHUNK = 32
"""Frames decoded at a time, so long HD episodes do not sit in memory."""


@dataclass(frozen=True)
class ReplayReport:
    video: Path
    steps: int
    fk_position_error: float
    """Mean distance (m) between the forward kinematics of the recorded joints and the recorded flange position."""
    fk_rotation_error: float
    """Mean angle (rad) between the same orientations."""
    tracking_error: float
    """Mean distance (m) between the simulated flange (after the joint servos) and the recorded flange position."""
    clamped_steps: int
    """Steps where the recorded motion had to be clamped to the simulated arm's limits."""
    objects: tuple[str, ...] = ()
    """Objects whose recorded poses were replayed."""
    recorded_scene: bool = False
    """Whether the episode's own (randomised) scene was rebuilt."""


def recorded_objects(episode, object_names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Per-step poses [L, 6] of the objects a `sim collect` episode recorded, for those the scene has."""
    if not isinstance(episode, RawEpisode) or not episode.has_key(OBJECT_POSES_GROUP):
        return {}
    return {name: episode.read_array(f"{OBJECT_POSES_GROUP}/{name}") for name in object_names
            if episode.has_key(f"{OBJECT_POSES_GROUP}/{name}")}


def replay_episode(
    episode_path: str | Path,
    out: str | Path,
    *,
    camera: str = "left",
    height: int = 270,
    robot_model: str = "panda",
    match_camera: bool = True,
    objects: bool = True,
    progress: bool = True,
) -> ReplayReport:
    """Play `episode_path` in the simulator and write `out` (MP4, recorded | simulated, `height` rows each).

    With `match_camera`, an exterior camera is placed at the episode's recorded extrinsics. With `objects`, a sim
    episode's recorded scene is rebuilt and its objects follow their recorded poses."""
    episode = open_episode(episode_path)
    if camera not in episode.camera_roles:
        raise ValueError(f"{episode_path}: no {camera!r} camera; the episode has {sorted(episode.camera_roles)}")
    joints, states = episode.joint_positions(), episode.states()
    steps = min(len(joints), episode.num_frames(camera))
    height = 2 * (height // 2)  # H.264 with 4:2:0 chroma needs even sizes
    width = 2 * round(height * 16 / 9 / 2)
    robot = SimRobot(SimConfig(scene=SceneConfig(robot=robot_model), cameras=(camera,), image_size=(height, width)))
    robot.connect()
    scene_json = episode.attrs.get("sim_scene", "") if objects and isinstance(episode, RawEpisode) else ""
    if scene_json:
        robot.load_scene(SceneVariation.from_json(scene_json))
    object_poses = recorded_objects(episode, robot.object_names) if objects else {}
    if match_camera and camera != "wrist":
        # Put the simulated camera where the recorded one stood, so the two halves of the video line up.
        try:
            set_camera_pose(robot.model, camera, episode.extrinsics(camera)[0])
        except (EpisodeError, ValueError) as exc:
            logger.warning("keeping the default %s camera pose: %s", camera, exc)
    limits = robot.info.limits
    robot.reset(limits.clip_positions(joints[0], 1e-3), gripper=float(np.nan_to_num(states[0, 6])))

    frames, fk_pos, fk_rot, tracking, clamped = [], [], [], [], 0
    for start in tqdm(range(0, steps, _READ_CHUNK), desc="replay", unit="chunk", disable=not progress):
        recorded = episode.read_frames(camera, list(range(start, min(start + _READ_CHUNK, steps))))
        for offset, image in enumerate(recorded):
            t = start + offset
            if np.all(np.isfinite(joints[t])) and np.all(np.isfinite(states[t])):
                pos, rot = robot.kinematics.fk(joints[t])
                fk_pos.append(np.linalg.norm(pos - states[t, :3]))
                fk_rot.append(np.linalg.norm(rotation_error(euler_xyz_to_matrix(states[t, 3:6]), rot)))
            if t > 0:
                result = robot.send_joint_target(joints[t], gripper=float(states[t, 6]))
                clamped += int(result.status is not ActionStatus.ACCEPTED)
            tracking.append(np.linalg.norm(robot.droid_state()[:3] - states[t, :3]))
            robot.set_object_poses({name: poses[t] for name, poses in object_poses.items() if t < len(poses)})
            sim_image = robot.render()[camera]
            recorded_width = 2 * round(image.shape[1] * height / image.shape[0] / 2)
            recorded_image = cv2.resize(image, (recorded_width, height), interpolation=cv2.INTER_AREA)
            frames.append(np.concatenate([recorded_image, sim_image], axis=1))
    robot.close()
    video = write_video(out, np.stack(frames), episode.fps or robot.control_hz)
    # Rows with non-finite recordings are skipped (their joint targets are rejected and counted as clamped).
    return ReplayReport(Path(video), steps, float(np.mean(fk_pos)), float(np.mean(fk_rot)),
                        float(np.nanmean(tracking)), clamped, tuple(object_poses), bool(scene_json))
