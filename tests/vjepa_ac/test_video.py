"""Demo video composition and MP4 writing (decoded back with PyAV)."""

import av
import numpy as np
import pytest

from vjepa_ac.data.droid.video import write_video
from vjepa_ac.video import (
    EpisodeVideo,
    compose,
    energy_panel,
    panel_width,
    write_episode_videos,
)


def _video(frames: int = 4) -> EpisodeVideo:
    rng = np.random.default_rng(0)
    video = EpisodeVideo(title="reach seed 0")
    goal = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    for t in range(frames):
        video.add(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8), goal, caption=f"step {t}")
        video.energies.append(1.0 / (t + 1))
    return video


def test_compose_lays_out_camera_goal_and_energy():
    video = _video()
    image = compose(video, 2, height=48)
    # Camera and goal keep the camera's 4:3 aspect (64 px wide at 48 rows); the energy plot is square.
    assert image.shape == (48, 64 + 64 + 48, 3) and image.dtype == np.uint8
    assert panel_width(np.zeros((180, 320, 3)), 256) == 456


def test_energy_panel_draws_only_what_was_shown():
    blank = energy_panel([1.0, 0.5], shown=0, size=64)
    drawn = energy_panel([1.0, 0.5], shown=2, size=64)
    assert not np.array_equal(blank, drawn)
    assert energy_panel([float("nan")], shown=1, size=32).shape == (32, 32, 3)


def test_mp4_round_trip(tmp_path):
    path = write_episode_videos(tmp_path / "demo.mp4", [_video(3), _video(2)], fps=5, height=48)
    with av.open(str(path)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 5 and decoded[0].shape == (48, 176, 3)


def test_mp4_rejects_bad_frames(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        write_episode_videos(tmp_path / "a.mp4", [])
    with pytest.raises(ValueError, match="one size"):
        write_video(tmp_path / "b.mp4", [np.zeros((6, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)], 5.0)
