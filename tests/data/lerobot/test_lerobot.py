"""LeRobot datasets in and out: our export read back (v2.1 and v3.0), a dataset written to LeRobot's published layout
without our writer (the DROID port's key names and column types), the real `lerobot` package where one is installed,
and bad input (newer versions, missing videos, wrong shapes, NaNs)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vjepa_ac.data.droid import (
    DroidClipDataset,
    EpisodeError,
    open_episode,
    resolve_episode_references,
    write_episode,
)
from vjepa_ac.data.droid.index import default_camera
from vjepa_ac.data.droid.video import write_video
from vjepa_ac.data.lerobot import LeRobotDataset, export_lerobot
from vjepa_ac.data.lerobot import format as fmt
from vjepa_ac.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "droid"))
from conftest import frame_level, make_recording  # the DROID tests' episode factory

STEPS = 36


@pytest.fixture(scope="module")
def raw_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("raw")
    for seed in range(3):
        write_episode(root, make_recording(seed=seed, success=seed != 1, task=f"task {seed % 2}"))
    return root


@pytest.fixture(scope="module", params=["v3.0", "v2.1"])
def exported(request, raw_root, tmp_path_factory) -> tuple[Path, list[str]]:
    out = tmp_path_factory.mktemp("export") / f"lerobot_{request.param}"
    references = resolve_episode_references(raw_root)
    summary = export_lerobot(references, out, version=request.param)
    assert not summary.failed and summary.frames == 3 * STEPS
    return out, references


def test_export_reads_back_like_the_raw_episodes(exported):
    out, raw_references = exported
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["codebase_version"] in fmt.WRITE_VERSIONS and info["fps"] == 15.0 and info["total_episodes"] == 3
    assert set(info["features"]) >= {fmt.CARTESIAN_POSITION, "observation.images.exterior_1_left",
                                     "camera_extrinsics.exterior_2_left", fmt.IS_EPISODE_SUCCESSFUL}
    references = resolve_episode_references(out)
    assert references == [f"{out}#{i}" for i in range(3)]
    for raw_ref, ref in zip(raw_references, references):
        with open_episode(raw_ref) as raw, open_episode(ref) as episode:
            assert episode.episode_id == raw.episode_id
            assert episode.success == raw.success and episode.task == raw.task
            np.testing.assert_allclose(episode.states(), raw.states(), atol=1e-5)
            np.testing.assert_allclose(episode.joint_positions(), raw.joint_positions(), atol=1e-5)
            # left/right are told apart by the exported extrinsics, as DROID does.
            assert episode.camera_roles["left"] == "observation.images.exterior_2_left"
            np.testing.assert_allclose(episode.extrinsics("left"), raw.extrinsics("left"), atol=1e-6)
            assert episode.num_frames("wrist") == STEPS
            frames = episode.read_frames("left", [0, 5, STEPS - 1])  # v3.0: at the episode's offset in the file
            levels = [frame_level(i) for i in (0, 5, STEPS - 1)]
            assert np.abs(frames[:, 24, 32].mean(axis=1) - levels).max() < 4
            np.testing.assert_allclose(episode.frame_timestamps_ms("left")[:3], [0, 1000 / 15, 2000 / 15], atol=1e-3)


def test_exported_dataset_is_a_training_source(exported):
    out, _ = exported
    references = resolve_episode_references(out)
    camera, why = default_camera(references)
    assert camera == "ext1" and "LeRobot" in why
    clips = DroidClipDataset(out, frames_per_clip=4, fps=5.0, camera=camera, seed=0)
    item = clips[1]
    assert item["frames"].shape == (4, 48, 64, 3) and item["actions"].shape == (3, 7)
    assert np.isfinite(item["actions"].numpy()).all()


def _write_droid_port_v21(root: Path, *, steps: int = 20, episodes: int = 2) -> Path:
    """A dataset in LeRobot's published v2.1 layout with the DROID port's features, written here with pyarrow and an
    MP4 writer only (not our exporter): scalar columns for shape-(1,) features, list columns for vectors, no
    droid_episode_id, success in the `is_episode_successful` column, tasks in tasks.jsonl."""
    rng = np.random.default_rng(0)
    features = {
        fmt.CARTESIAN_POSITION: {"dtype": "float32", "shape": [6], "names": {"axes": fmt.POSE_AXES}},
        fmt.GRIPPER_POSITION: {"dtype": "float32", "shape": [1], "names": {"axes": ["gripper"]}},
        fmt.JOINT_POSITION: {"dtype": "float32", "shape": [7], "names": None},
        "observation.images.exterior_1_left": {"dtype": "video", "shape": [32, 48, 3],
                                               "names": ["height", "width", "channels"],
                                               "info": {"video.fps": 15.0, "video.codec": "h264"}},
        fmt.IS_EPISODE_SUCCESSFUL: {"dtype": "bool", "shape": [1], "names": None},
        "language_instruction": {"dtype": "string", "shape": [1], "names": None},
    }
    for key in fmt.INDEX_COLUMNS:
        features[key] = {"dtype": "float32" if key == "timestamp" else "int64", "shape": [1], "names": None}
    (root / "meta").mkdir(parents=True)
    info = {"codebase_version": "v2.1", "robot_type": "Franka", "fps": 15, "chunks_size": 1000,
            "total_episodes": episodes, "total_chunks": 1, "features": features,
            "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
            "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"}
    (root / "meta" / "info.json").write_text(json.dumps(info))
    (root / "meta" / "tasks.jsonl").write_text(json.dumps({"task_index": 0, "task": "wipe the table"}) + "\n")
    lines = []
    for index in range(episodes):
        pose = np.concatenate([0.4 + np.cumsum(rng.normal(0, 0.01, (steps, 3)), 0),
                               np.tile([np.pi, 0.0, 0.0], (steps, 1))], axis=1).astype(np.float32)
        table = pa.table({
            fmt.CARTESIAN_POSITION: pa.array(list(pose), pa.list_(pa.float32())),
            fmt.GRIPPER_POSITION: pa.array(np.linspace(0, 1, steps, dtype=np.float32)),
            fmt.JOINT_POSITION: pa.array(list(rng.normal(0, 0.3, (steps, 7)).astype(np.float32)),
                                         pa.list_(pa.float32())),
            fmt.IS_EPISODE_SUCCESSFUL: pa.array([index == 0] * steps),
            "language_instruction": pa.array(["wipe the table"] * steps),
            "timestamp": pa.array(np.arange(steps, dtype=np.float32) / 15),
            "frame_index": pa.array(np.arange(steps)),
            "episode_index": pa.array(np.full(steps, index)),
            "index": pa.array(np.arange(steps) + index * steps),
            "task_index": pa.array(np.zeros(steps, np.int64)),
        })
        path = root / info["data_path"].format(episode_chunk=0, episode_index=index)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        frames = np.broadcast_to(np.array([frame_level(i) for i in range(steps)], np.uint8)[:, None, None, None],
                                 (steps, 32, 48, 3)).copy()
        write_video(root / info["video_path"].format(episode_chunk=0, video_key="observation.images.exterior_1_left",
                                                     episode_index=index), frames, 15.0)
        lines.append(json.dumps({"episode_index": index, "tasks": ["wipe the table"], "length": steps}))
    (root / "meta" / "episodes.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_reads_the_published_v21_layout_of_the_droid_port(tmp_path):
    root = _write_droid_port_v21(tmp_path / "droid_port")
    dataset = LeRobotDataset(root)
    assert sorted(dataset.episodes) == [0, 1] and dataset.info.video_keys == ["observation.images.exterior_1_left"]
    with open_episode(f"{root}#1") as episode:
        assert episode.episode_id == "droid_port/episode_000001"
        assert episode.success is False and episode.task == "wipe the table"
        assert episode.states().shape == (20, 7) and episode.states()[-1, 6] == pytest.approx(1.0)
        assert episode.camera_roles["left"] == episode.camera_roles["ext1"]  # one exterior camera is the left one
        assert np.abs(episode.read_frames("ext1", [19])[0, 16, 24].mean() - frame_level(19)) < 4
        with pytest.raises(EpisodeError, match="camera_extrinsics.exterior_1_left"):
            episode.extrinsics("ext1")
    with open_episode(f"{root}#0") as episode:
        assert episode.success is True


def _write_published_v30(root: Path, lengths=(12, 9)) -> Path:
    """LeRobot's published v3.0 layout, written here with pyarrow and an MP4 writer only (what lerobot 0.4 writes:
    the episodes share one parquet file and one MP4, the episode metadata gives each one's rows and video span,
    tasks.parquet keeps the task strings as the pandas index)."""
    key = "observation.images.exterior_1_left"
    features = {
        fmt.CARTESIAN_POSITION: {"dtype": "float32", "shape": [6], "names": None},
        fmt.GRIPPER_POSITION: {"dtype": "float32", "shape": [1], "names": None},
        key: {"dtype": "video", "shape": [32, 48, 3], "names": ["height", "width", "channels"],
              "info": {"video.fps": 15, "video.codec": "h264"}},
        **{k: {"dtype": "float32" if k == "timestamp" else "int64", "shape": [1], "names": None}
           for k in fmt.INDEX_COLUMNS},
    }
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    (root / "data" / "chunk-000").mkdir(parents=True)
    info = {"codebase_version": "v3.0", "fps": 15, "chunks_size": 1000, "total_episodes": len(lengths),
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4", "features": features}
    (root / "meta" / "info.json").write_text(json.dumps(info))
    rows, frames, episodes, start = [], [], [], 0
    for index, length in enumerate(lengths):
        for i in range(length):
            rows.append({fmt.CARTESIAN_POSITION: [index + i / 100] * 6, fmt.GRIPPER_POSITION: i / length,
                         "timestamp": i / 15, "frame_index": i, "episode_index": index, "index": start + i,
                         "task_index": index})
            frames.append(np.full((32, 48, 3), 10 * i + 100 * index, np.uint8))
        episodes.append({"episode_index": index, "tasks": [f"task {index}"], "length": length,
                         "data/chunk_index": 0, "data/file_index": 0, "dataset_from_index": start,
                         "dataset_to_index": start + length, f"videos/{key}/chunk_index": 0,
                         f"videos/{key}/file_index": 0, f"videos/{key}/from_timestamp": start / 15,
                         f"videos/{key}/to_timestamp": (start + length) / 15})
        start += length
    schema = pa.schema([(fmt.CARTESIAN_POSITION, pa.list_(pa.float32(), 6)), (fmt.GRIPPER_POSITION, pa.float32()),
                        ("timestamp", pa.float32()), *[(k, pa.int64()) for k in fmt.INDEX_COLUMNS[1:]]])
    pq.write_table(pa.Table.from_pylist(rows, schema), root / "data/chunk-000/file-000.parquet")
    pq.write_table(pa.Table.from_pylist(episodes), root / "meta/episodes/chunk-000/file-000.parquet")
    pq.write_table(pa.table({"task_index": [0, 1], "__index_level_0__": ["task 0", "task 1"]}),
                   root / "meta/tasks.parquet")
    write_video(root / f"videos/{key}/chunk-000/file-000.mp4", np.stack(frames), 15.0)
    return root


def test_reads_the_published_v30_layout_with_per_episode_offsets(tmp_path):
    root = _write_published_v30(tmp_path / "v30")
    assert resolve_episode_references(root) == [f"{root}#0", f"{root}#1"]
    with open_episode(f"{root}#1") as episode:
        assert episode.num_steps == 9 and episode.task == "task 1" and episode.success is None
        np.testing.assert_allclose(episode.states()[:, 0], 1 + np.arange(9) / 100, atol=1e-6)
        assert episode.num_frames("ext1") == 9
        levels = episode.read_frames("ext1", [0, 8])[:, 16, 24].mean(axis=1)
        np.testing.assert_allclose(levels, [100, 180], atol=4)  # frames 12 and 20 of the shared file


def test_newer_or_unknown_version_is_refused_by_name(tmp_path, capsys):
    root = _write_droid_port_v21(tmp_path / "future", episodes=1)
    info = json.loads((root / "meta" / "info.json").read_text())
    info["codebase_version"] = "v4.0"
    (root / "meta" / "info.json").write_text(json.dumps(info))
    with pytest.raises(EpisodeError, match="v4.0.*newer than this reader supports"):
        resolve_episode_references(root)
    assert main(["lerobot", "info", str(root), "--no-progress"]) == 1
    assert "newer than this reader supports" in capsys.readouterr().err
    info["codebase_version"] = "v1.6"
    (root / "meta" / "info.json").write_text(json.dumps(info))
    with pytest.raises(EpisodeError, match="older than this reader supports"):
        resolve_episode_references(root)


def test_missing_video_wrong_shape_and_nan_are_named(tmp_path, capsys):
    root = _write_droid_port_v21(tmp_path / "broken")
    missing = root / "videos/chunk-000/observation.images.exterior_1_left/episode_000001.mp4"
    missing.unlink()
    with open_episode(f"{root}#1") as episode:
        with pytest.raises(EpisodeError, match="missing video .*episode_000001.mp4"):
            episode.read_frames("ext1", [0])
    assert main(["lerobot", "info", str(root), "--no-progress"]) == 1
    out, err = capsys.readouterr()
    assert "1 of 2 episodes complete" in out and "episode_000001.mp4" in err

    data = root / "data/chunk-000/episode_000000.parquet"
    table = pq.read_table(data)
    short = pa.array([row[:5] for row in table.column(fmt.CARTESIAN_POSITION).to_pylist()], pa.list_(pa.float32()))
    pq.write_table(table.set_column(table.column_names.index(fmt.CARTESIAN_POSITION), fmt.CARTESIAN_POSITION, short),
                   data)
    with open_episode(f"{root}#0") as episode, pytest.raises(EpisodeError, match="wrong shape"):
        episode.states()

    nan_pose = [[float("nan")] * 6 if i == 3 else row for i, row in
                enumerate(table.column(fmt.CARTESIAN_POSITION).to_pylist())]
    pq.write_table(table.set_column(table.column_names.index(fmt.CARTESIAN_POSITION), fmt.CARTESIAN_POSITION,
                                    pa.array(nan_pose, pa.list_(pa.float32()))), data)
    clips = DroidClipDataset(f"{root}#0", frames_per_clip=20, fps=15.0, camera="ext1", max_retries=0)
    with pytest.raises(EpisodeError, match="non-finite states"):
        clips[0]
    summary_out = tmp_path / "re_export"
    summary = export_lerobot([f"{root}#0", f"{_write_droid_port_v21(tmp_path / 'good', episodes=1)}#0"],
                             summary_out, version="v3.0")
    assert list(summary.failed) == [f"{root}#0"] and "NaN" in summary.failed[f"{root}#0"]
    assert len(summary.episodes) == 1 and LeRobotDataset(summary_out).info.total_episodes == 1


def test_export_never_overwrites_and_leaves_nothing_when_all_fail(raw_root, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        export_lerobot(resolve_episode_references(raw_root), out)
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    with pytest.raises(EpisodeError, match="no episode could be exported"):
        export_lerobot(resolve_episode_references(raw_root), tmp_path / "new", cameras=["ext1", "nosuch"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_export_cli_v21_then_info(raw_root, tmp_path, capsys):
    out = tmp_path / "cli_export"
    assert main(["lerobot", "export", str(raw_root), "--out", str(out), "--format", "v2.1", "--camera", "ext1",
                 "--image-size", "32x40", "--no-progress"]) == 0
    assert "wrote 3 episodes (108 frames)" in capsys.readouterr().out
    assert (out / "videos/chunk-000/observation.images.exterior_1_left/episode_000002.mp4").is_file()
    assert main(["lerobot", "info", str(out), "--no-progress"]) == 0
    assert "3 of 3 episodes complete" in capsys.readouterr().out
    with open_episode(f"{out}#0") as episode:
        assert episode.read_frames("ext1", [0]).shape == (1, 32, 40, 3)


LEROBOT_PYTHON = os.environ.get("VJEPA_AC_LEROBOT_PYTHON")
"""A Python interpreter with the `lerobot` package (kept out of this project's environment: it pins another torch)."""


@pytest.mark.skipif(not LEROBOT_PYTHON, reason="set VJEPA_AC_LEROBOT_PYTHON to a Python with `lerobot` installed")
def test_with_the_real_lerobot_package(raw_root, tmp_path):
    """Both directions against the real package (lerobot >= 0.4 reads and writes v3.0 only): it loads our export, and
    we read a dataset it wrote. Its default video decoder (torchcodec) needs a system FFmpeg; PyAV brings its own."""
    out = tmp_path / "ours"
    export_lerobot(resolve_episode_references(raw_root), out, version="v3.0")
    theirs = tmp_path / "written_by_lerobot"
    script = textwrap.dedent(f"""
        import json, numpy as np
        from lerobot.datasets.lerobot_dataset import LeRobotDataset
        ours = LeRobotDataset("local/ours", root={str(out)!r}, video_backend="pyav")
        item = ours[40]
        print(json.dumps({{"episodes": ours.num_episodes, "frames": ours.num_frames,
                          "state": item["observation.state.cartesian_position"].tolist(),
                          "image": list(item["observation.images.exterior_1_left"].shape),
                          "task": item["task"]}}))
        features = {{
            "observation.state.cartesian_position": {{"dtype": "float32", "shape": (6,), "names": None}},
            "observation.state.gripper_position": {{"dtype": "float32", "shape": (1,), "names": None}},
            "observation.state.joint_position": {{"dtype": "float32", "shape": (7,), "names": None}},
            "observation.images.exterior_1_left": {{"dtype": "video", "shape": (32, 48, 3),
                                                   "names": ["height", "width", "channels"]}},
        }}
        new = LeRobotDataset.create("local/theirs", fps=15, features=features, root={str(theirs)!r},
                                    robot_type="Franka", use_videos=True, video_backend="pyav")
        for episode in range(2):
            for i in range(12):
                new.add_frame({{"observation.state.cartesian_position": np.full(6, episode + i / 100, np.float32),
                               "observation.state.gripper_position": np.array([i / 11], np.float32),
                               "observation.state.joint_position": np.zeros(7, np.float32),
                               "observation.images.exterior_1_left": np.full((32, 48, 3), 20 * i, np.uint8),
                               "task": "stack"}})
            new.save_episode()
        new.finalize()
    """)
    result = subprocess.run([LEROBOT_PYTHON, "-c", script], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["episodes"] == 3 and loaded["frames"] == 3 * STEPS and loaded["image"] == [3, 48, 64]
    with open_episode(f"{out}#1") as episode:
        np.testing.assert_allclose(loaded["state"], episode.states()[40 - STEPS, :6], atol=1e-5)
        assert loaded["task"] == episode.task
    references = resolve_episode_references(theirs)
    assert len(references) == 2
    with open_episode(references[1]) as episode:
        np.testing.assert_allclose(episode.states()[:, 0], 1 + np.arange(12) / 100, atol=1e-6)
        assert episode.task == "stack"
        levels = episode.read_frames("ext1", [0, 6, 11])[:, 16, 24].mean(axis=1)
        np.testing.assert_allclose(levels, [0, 120, 220], atol=6)
    shutil.rmtree(theirs)


def test_encode_takes_a_lerobot_dataset(exported, tmp_path, capsys):
    """`vjepa-ac encode` on a LeRobot folder: every episode cached under its DROID id, camera ext1 by default."""
    from vjepa_ac.worldmodel import build_encoder, build_predictor, save_ac_checkpoint
    from vjepa_ac.worldmodel.training import LatentCache

    out, raw_references = exported
    checkpoint = save_ac_checkpoint(tmp_path / "tiny.pt", encoder=build_encoder("vit_tiny"),
                                    predictor=build_predictor("vit_ac_tiny"))
    cache_dir = tmp_path / "cache"
    assert main(["encode", str(out), "--out", str(cache_dir), "--encoder-checkpoint", str(checkpoint),
                 "--no-progress"]) == 0, capsys.readouterr().err
    cache = LatentCache.open(cache_dir)
    assert cache.spec.camera == "ext1"
    with open_episode(raw_references[0]) as raw:
        raw_id = raw.episode_id
    cached = {episode.episode_id: episode for episode in cache.episodes()}
    assert len(cached) == 3 and raw_id in cached
    assert cached[raw_id].source.startswith(f"{out}#") and cached[raw_id].num_frames == len(range(0, STEPS, 4))  # every 4th of 15 fps
