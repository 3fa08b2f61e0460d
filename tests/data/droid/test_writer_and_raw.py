"""Writer -> raw reader round trip, in DROID's exact key names, dtypes, attributes and folder layout."""

import json
import pickle
import shutil
from datetime import datetime, timezone

import av
import h5py
import numpy as np
import pytest

from vjepa_ac.data.droid import EpisodeError, RawEpisode, layout, open_episode, write_episode
from vjepa_ac.data.droid.poses import states_to_actions
from vjepa_ac.data.droid.video import write_video

LEFT_SERIAL, RIGHT_SERIAL, WRIST_SERIAL = "22222222", "11111111", "33333333"
STEPS = 36


def frame_level(step: int) -> int:
    return (step * 7) % 250


def test_folder_layout_and_names(droid_root, episode_dir):
    assert episode_dir.is_dir(), "single-digit days give a double underscore, as time.asctime does"
    files = sorted(p.relative_to(episode_dir).as_posix() for p in episode_dir.rglob("*") if p.is_file())
    assert files == [
        f"metadata_TEST+{json.loads(next(episode_dir.glob('metadata_*.json')).read_text())['user_id']}+2023-08-06-22h-13m-04s.json",
        f"recordings/MP4/{RIGHT_SERIAL}.mp4",
        f"recordings/MP4/{LEFT_SERIAL}.mp4",
        f"recordings/MP4/{WRIST_SERIAL}.mp4",
        "trajectory.h5",
    ]
    assert (droid_root / "OTHER" / "failure" / "2023-11-19" / "Sun_Nov_19_09:00:00_2023" / "trajectory.h5").is_file()
    assert not list(droid_root.rglob("*.partial"))


def test_h5_keys_dtypes_and_attrs(episode_dir, recording):
    with h5py.File(episode_dir / "trajectory.h5", "r") as h5:
        assert h5[layout.CARTESIAN_POSITION].dtype == np.float64 and h5[layout.CARTESIAN_POSITION].shape == (STEPS, 6)
        assert h5[layout.GRIPPER_POSITION].shape == (STEPS,)
        assert h5[layout.JOINT_POSITIONS].shape == (STEPS, 7)
        assert h5[f"observation/camera_type/{WRIST_SERIAL}"][0] == 0
        assert h5[f"observation/camera_type/{LEFT_SERIAL}"].dtype == np.int64
        assert h5[f"observation/camera_extrinsics/{LEFT_SERIAL}_left"].shape == (STEPS, 6)
        assert h5[f"observation/timestamp/cameras/{LEFT_SERIAL}_frame_received"].dtype == np.int64
        assert h5["observation/controller_info/movement_enabled"].dtype == bool
        assert h5[layout.CARTESIAN_POSITION].maxshape == (None, 6)  # resizable, like DROID's TrajectoryWriter
        np.testing.assert_array_equal(h5[layout.CARTESIAN_POSITION][()], recording.cartesian_position)
        np.testing.assert_array_equal(h5["action/gripper_position"][()], recording.action_gripper_position)
        assert h5.attrs["current_task"] == recording.task and bool(h5.attrs["success"]) is True
        assert h5.attrs["version_number"] == "1.3"
        lengths = set()
        h5.visititems(lambda name, node: lengths.add(node.shape[0]) if isinstance(node, h5py.Dataset) else None)
        assert lengths == {STEPS}


def test_metadata_and_video_codec(episode_dir):
    meta = json.loads(next(episode_dir.glob("metadata_*.json")).read_text())
    for key in (
        "uuid",
        "lab",
        "user_id",
        "date",
        "hdf5_path",
        "success",
        "current_task",
        "trajectory_length",
        "wrist_cam_serial",
        "ext1_cam_serial",
        "ext2_cam_serial",
        "left_mp4_path",
        "right_mp4_path",
    ):
        assert key in meta
    assert meta["left_mp4_path"].endswith(f"recordings/MP4/{LEFT_SERIAL}.mp4")
    assert meta["ext1_cam_serial"] == RIGHT_SERIAL  # sorted serial order
    with av.open(str(episode_dir / "recordings" / "MP4" / f"{LEFT_SERIAL}.mp4")) as container:
        assert container.streams.video[0].codec_context.name == "h264"


def test_reader_round_trip(episode_dir, recording):
    episode = open_episode(episode_dir)
    assert isinstance(episode, RawEpisode)
    assert episode.num_steps == STEPS and episode.success is True and episode.lab == "TEST"
    assert episode.task == recording.task and episode.version == "1.3"
    assert episode.camera_roles == {
        "left": LEFT_SERIAL,
        "right": RIGHT_SERIAL,
        "ext1": RIGHT_SERIAL,
        "ext2": LEFT_SERIAL,
        "wrist": WRIST_SERIAL,
    }
    states = episode.states()
    np.testing.assert_array_equal(states[:, :6], recording.cartesian_position)
    np.testing.assert_array_equal(states[:, 6], recording.gripper_position)
    np.testing.assert_array_equal(episode.actions(), states_to_actions(states))
    np.testing.assert_array_equal(episode.joint_positions(), recording.joint_positions)
    np.testing.assert_array_equal(episode.extrinsics("left"), recording.cameras[LEFT_SERIAL].extrinsics)
    indices = [30, 2, 17, 2]
    frames = episode.read_frames("wrist", indices)
    assert frames.shape == (4, 48, 64, 3) and frames.dtype == np.uint8
    levels = frames[:, 24, 32].astype(int).mean(axis=1)
    np.testing.assert_allclose(levels, [frame_level(i) for i in indices], atol=3)  # H.264 is lossy
    assert episode.num_frames("left") == STEPS and episode.video_fps("left") == pytest.approx(15.0)
    stamps = episode.frame_timestamps_ms("left")
    np.testing.assert_allclose(np.diff(stamps), 1000 / 15, atol=1)


def test_episode_pickles_without_open_files(episode_dir):
    episode = open_episode(episode_dir / "trajectory.h5")
    episode.read_frames("left", [0])
    clone = pickle.loads(pickle.dumps(episode))
    assert clone.read_frames("left", [5]).shape == (1, 48, 64, 3)


def test_unknown_camera_and_missing_files(tmp_path, episode_dir):
    with pytest.raises(EpisodeError, match="no camera 'top'"):
        open_episode(episode_dir).read_frames("top", [0])
    with pytest.raises(EpisodeError, match="not an episode folder"):
        open_episode(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EpisodeError, match="missing trajectory.h5"):
        open_episode(tmp_path / "empty")


def test_roles_from_h5_when_metadata_missing(tmp_path, episode_dir):
    copy = tmp_path / "ep"
    shutil.copytree(episode_dir, copy)
    next(copy.glob("metadata_*.json")).unlink()
    episode = open_episode(copy)
    assert episode.camera_roles["left"] == LEFT_SERIAL and episode.camera_roles["wrist"] == WRIST_SERIAL
    assert episode.success is True  # no outcome folder in this path: read from the h5 attributes


def test_video_one_frame_short_is_usable(tmp_path, episode_dir):
    copy = tmp_path / "short"
    shutil.copytree(episode_dir, copy)
    frames = open_episode(episode_dir).read_frames("left", range(STEPS - 1))
    write_video(copy / "recordings" / "MP4" / f"{LEFT_SERIAL}.mp4", frames, 15.0)
    episode = open_episode(copy)
    assert episode.num_frames("left") == STEPS - 1 and episode.usable_steps("left") == STEPS - 1


def test_same_second_does_not_overwrite(tmp_path, make_episode_recording):
    when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    rec = make_episode_recording(steps=4)
    first = write_episode(tmp_path, rec, when=when)
    second = write_episode(tmp_path, rec, when=when)
    assert first != second and second.name == "Tue_Jan__2_03:04:06_2024"


def test_success_and_failure_in_the_same_second_get_distinct_ids(tmp_path, make_episode_recording):
    when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    succeeded = make_episode_recording(steps=4)
    failed = make_episode_recording(steps=4)
    failed.success = False
    first = open_episode(write_episode(tmp_path, succeeded, when=when))
    second = open_episode(write_episode(tmp_path, failed, when=when))
    assert second.success is False and first.episode_id != second.episode_id


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: setattr(r, "gripper_position", r.gripper_position[:-1]), "gripper_position must have shape"),
        (lambda r: r.cartesian_position.__setitem__((3, 0), np.nan), "NaN"),
        (
            lambda r: setattr(r.cameras[WRIST_SERIAL], "frames", r.cameras[WRIST_SERIAL].frames.astype(np.float32)),
            "uint8",
        ),
        (lambda r: setattr(r.cameras[LEFT_SERIAL], "kind", "wrist"), "at most one wrist"),
    ],
)
def test_writer_rejects_bad_recordings_and_leaves_nothing(tmp_path, mutate, message, make_episode_recording):
    rec = make_episode_recording(steps=4)
    mutate(rec)
    with pytest.raises(ValueError, match=message):
        write_episode(tmp_path, rec)
    assert not any(tmp_path.rglob("trajectory.h5"))


def test_written_episode_follows_the_reference_loader_steps(episode_dir, recording):
    """Meta's V-JEPA 2-AC loader steps, done by hand with h5py/json/PyAV: first *.json is the metadata, the camera
    name is the basename of metadata["left_mp4_path"], extrinsics come from `<name>_left`, states from
    cartesian_position ++ gripper_position, and video frame i is h5 row i."""
    metadata = json.loads(min(episode_dir.glob("*.json")).read_text())
    mp4_name = metadata["left_mp4_path"].split("recordings/MP4/")[-1]
    camera_name = mp4_name.split(".")[0]
    with h5py.File(episode_dir / "trajectory.h5", "r") as trajectory:
        extrinsics = np.array(trajectory["observation"]["camera_extrinsics"][f"{camera_name}_left"])
        states = np.concatenate(
            [
                np.array(trajectory["observation"]["robot_state"]["cartesian_position"]),
                np.array(trajectory["observation"]["robot_state"]["gripper_position"])[:, None],
            ],
            axis=1,
        )
    assert camera_name == LEFT_SERIAL and extrinsics[0, 1] == 0.5 and states.shape == (STEPS, 7)
    with av.open(str(episode_dir / "recordings" / "MP4" / mp4_name)) as container:
        stream = container.streams.video[0]
        assert float(stream.average_rate) == 15.0 and stream.frames == STEPS
        levels = [frame.to_ndarray(format="rgb24")[24, 32, 0] for frame in container.decode(stream)]
    np.testing.assert_allclose(levels, [frame_level(i) for i in range(STEPS)], atol=3)
