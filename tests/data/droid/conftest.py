"""Small DROID episodes in the exact raw layout, written once per test session through our writer."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vjepa_ac.data.droid import CameraRecording, EpisodeRecording, write_episode

STEPS = 36
HEIGHT, WIDTH = 48, 64
# Exterior cameras: 2222 sits at larger base-frame y, so it is the robot's left camera.
LEFT_SERIAL, RIGHT_SERIAL, WRIST_SERIAL = "22222222", "11111111", "33333333"


def frame_level(step: int) -> int:
    """Grey level that identifies a step's frame after lossy coding."""
    return (step * 7) % 250


def make_recording(
    steps: int = STEPS,
    *,
    seed: int = 0,
    success: bool = True,
    task: str = "put the cup in the sink",
    height: int = HEIGHT,
    width: int = WIDTH,
    lab: str = "TEST",
) -> EpisodeRecording:
    rng = np.random.default_rng(seed)
    xyz = 0.4 + np.cumsum(rng.normal(0, 0.01, (steps, 3)), axis=0)
    euler = (
        Rotation.from_euler("xyz", [np.pi - 0.05, 0.1, -0.2])
        * Rotation.from_rotvec(np.cumsum(rng.normal(0, 0.03, (steps, 3)), axis=0))
    ).as_euler("xyz")
    levels = np.array([frame_level(i) for i in range(steps)], np.uint8)
    frames = np.broadcast_to(levels[:, None, None, None], (steps, height, width, 3)).copy()
    frames[:, :4, :4] = 255  # a corner marker so the frames are not flat

    def extrinsics(y):
        return np.tile([0.2, y, 0.5, -2.0, 0.0, 1.5], (steps, 1))

    cameras = {
        RIGHT_SERIAL: CameraRecording(frames, extrinsics(-0.5), "exterior"),
        LEFT_SERIAL: CameraRecording(frames.copy(), extrinsics(0.5), "exterior"),
        WRIST_SERIAL: CameraRecording(frames.copy(), extrinsics(0.0), "wrist"),
    }
    return EpisodeRecording(
        cartesian_position=np.concatenate([xyz, euler], axis=1),
        gripper_position=np.clip(np.linspace(0, 1, steps) + rng.normal(0, 0.01, steps), 0, 1),
        joint_positions=rng.normal(0, 0.5, (steps, 7)),
        cameras=cameras,
        joint_velocities=rng.normal(0, 0.1, (steps, 7)),
        action_cartesian_position=np.concatenate([xyz, euler], axis=1),
        action_gripper_position=np.linspace(0, 1, steps),
        task=task,
        success=success,
        lab=lab,
    )


@pytest.fixture(scope="session")
def make_episode_recording():
    """The `make_recording` factory, for tests that need their own variant."""
    return make_recording


@pytest.fixture(scope="session")
def recording() -> EpisodeRecording:
    return make_recording()


@pytest.fixture(scope="session")
def droid_root(tmp_path_factory, recording):
    """Root with three episodes: two successes (one written from `recording`) and one failure."""
    root = tmp_path_factory.mktemp("droid_raw")
    write_episode(root, recording, when=datetime(2023, 8, 6, 22, 13, 4, tzinfo=timezone.utc))
    write_episode(root, make_recording(seed=1), when=datetime(2023, 11, 18, 18, 57, 20, tzinfo=timezone.utc))
    write_episode(
        root,
        make_recording(seed=2, success=False, lab="OTHER"),
        when=datetime(2023, 11, 19, 9, 0, 0, tzinfo=timezone.utc),
    )
    return root


@pytest.fixture(scope="session")
def episode_dir(droid_root):
    return droid_root / "TEST" / "success" / "2023-08-06" / "Sun_Aug__6_22:13:04_2023"
