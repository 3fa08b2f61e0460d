"""Broken episodes get a clear error each while the rest still load; index files; the `vjepa-ac droid` command."""

import json
import shutil

import av
import h5py
import numpy as np
import pytest

from vjepa_ac.data.droid import DroidClipDataset, EpisodeError, open_episode, read_index, write_index
from vjepa_ac.data.droid.validate import validate_episode, validate_episodes
from vjepa_ac.data.droid.video import write_video
from vjepa_ac.cli import main

LEFT_SERIAL = "22222222"


@pytest.fixture(scope="module")
def broken_root(tmp_path_factory, episode_dir):
    """A root with one good episode and one of each kind of damage."""
    root = tmp_path_factory.mktemp("broken") / "LAB" / "success" / "2023-08-06"
    names = ["good", "truncated_h5", "missing_mp4", "nan_rows", "short_video", "very_short_video", "length_mismatch"]
    for name in names:
        shutil.copytree(episode_dir, root / name)
    h5 = root / "truncated_h5" / "trajectory.h5"
    h5.write_bytes(h5.read_bytes()[:5000])
    (root / "missing_mp4" / "recordings" / "MP4" / f"{LEFT_SERIAL}.mp4").unlink()
    with h5py.File(root / "nan_rows" / "trajectory.h5", "r+") as f:
        f["observation/robot_state/cartesian_position"][5:7, 2] = np.nan
    source = open_episode(episode_dir).read_frames("left", range(36))
    write_video(root / "short_video" / "recordings" / "MP4" / f"{LEFT_SERIAL}.mp4", source[:35], 15.0)
    write_video(root / "very_short_video" / "recordings" / "MP4" / f"{LEFT_SERIAL}.mp4", source[:20], 15.0)
    with h5py.File(root / "length_mismatch" / "trajectory.h5", "r+") as f:
        f["observation/robot_state/joint_positions"].resize((30, 7))
    return root.parents[2]


def _reports(broken_root):
    reports = validate_episodes(sorted(str(p) for p in broken_root.glob("*/*/*/*")), progress=False)
    return {r.reference.rsplit("/", 1)[-1]: r for r in reports}


def test_validate_names_each_problem(broken_root):
    reports = _reports(broken_root)
    assert reports["good"].ok and not reports["good"].warnings
    assert "unreadable or truncated" in reports["truncated_h5"].problems[0]
    assert any("missing video" in p for p in reports["missing_mp4"].problems)
    assert any("NaN/inf in 2 rows (first 5)" in p for p in reports["nan_rows"].problems)
    assert reports["short_video"].ok and "one frame short" in reports["short_video"].warnings[0]
    assert any("20 frames for 36" in p for p in reports["very_short_video"].problems)
    assert any("joint_positions has 30 rows" in p for p in reports["length_mismatch"].problems)


def test_readers_keep_going_past_broken_episodes(broken_root):
    folders = sorted(str(p) for p in broken_root.glob("*/*/*/*"))
    dataset = DroidClipDataset(folders, seed=0, clips_per_episode=2)
    ids = {dataset[i]["episode_id"] for i in range(len(dataset))}
    assert ids  # every item came back, bad episodes were replaced
    with pytest.raises(EpisodeError, match="truncated"):
        open_episode(broken_root / "LAB/success/2023-08-06/truncated_h5").states()


def test_validate_cli_summary_report_and_exit_code(broken_root, tmp_path, capsys):
    report = tmp_path / "report.jsonl"
    assert main(["droid", "validate", str(broken_root), "--report", str(report), "--no-progress"]) == 1
    out = capsys.readouterr().out
    rows = {line.rsplit(None, 1)[0].strip(): line.rsplit(None, 1)[1] for line in out.splitlines()[:4]}
    assert rows == {"episodes checked": "7", "ok": "2", "failed": "5", "with warnings": "1"}
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    assert len(lines) == 7 and sum(line["ok"] for line in lines) == 2
    assert (
        main(["droid", "validate", str(broken_root), "--report", str(report), "--workers", "2", "--no-progress"]) == 1
    )
    assert [json.loads(line) for line in report.read_text().splitlines()] == lines  # same reports, same order
    good = str(broken_root / "LAB/success/2023-08-06/good")
    assert main(["droid", "validate", good, "--report", str(report), "--no-progress"]) == 0
    missing = validate_episode(tmp_path / "missing")
    assert missing.problems[0].endswith("not an episode folder (does not exist)")
    assert missing.kinds == ["missing episode"]


def test_index_cli_filters_and_meta_list(droid_root, tmp_path, capsys):
    out = tmp_path / "episodes.txt"
    assert main(["droid", "index", str(droid_root), "-o", str(out), "--no-progress"]) == 0
    assert len(read_index(out)) == 3
    assert (
        main(
            [
                "droid",
                "index",
                str(droid_root),
                "-o",
                str(out),
                "--success-only",
                "--camera",
                "left",
                "--lab",
                "TEST",
                "--min-steps",
                "30",
                "--no-progress",
            ]
        )
        == 0
    )
    kept = read_index(out)
    assert len(kept) == 2 and all("/TEST/success/" in k for k in kept)
    # Meta's list: a CSV read with a space delimiter, first column = trajectory folder; relative paths allowed.
    meta_list = droid_root / "droid_paths.csv"
    relative = [str(k).replace(str(droid_root) + "/", "") for k in kept]
    meta_list.write_text("".join(f"{r} 0\n" for r in relative))
    assert read_index(meta_list) == kept
    assert write_index(tmp_path / "copy.txt", kept) == 2 and read_index(tmp_path / "copy.txt") == kept
    assert len(DroidClipDataset(meta_list)) == 2
    assert main(["droid", "index", str(tmp_path / "absent"), "--no-progress"]) == 2


def test_inspect_cli_summary_and_video(episode_dir, tmp_path, capsys):
    video = tmp_path / "review.mp4"
    assert main(["droid", "inspect", str(episode_dir), "--video", str(video), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "steps     36" in out and "put the cup in the sink" in out and "camera    left" in out
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        assert stream.frames == 36
        assert stream.codec_context.width == 3 * 64 * 180 // 48 and stream.codec_context.height == 180 + 240
    assert main(["droid", "inspect", str(tmp_path / "nope")]) == 1


def _rewrite_record(features: dict, **changes) -> bytes:
    """An RLDS Example with some features replaced (None removes one)."""
    from vjepa_ac.data.droid.rlds import encode_example

    changed = {**features, **changes}
    return encode_example({k: v for k, v in changed.items() if v is not None})


@pytest.fixture(scope="module")
def every_broken_kind(tmp_path_factory, episode_dir, make_episode_recording):
    """A folder mixing one episode of every kind of damage, raw and RLDS, named by the category it must get."""
    from vjepa_ac.data.droid.rlds import CARTESIAN_POSITION, IMAGE_FEATURES, decode_example, episode_to_example, write_tfrecord
    from vjepa_ac.data.droid.writer import write_episode

    top = tmp_path_factory.mktemp("every_kind")
    day = top / "LAB" / "success" / "2023-08-06"
    raw_kinds = ["ok", "missing h5", "unreadable h5", "missing key", "length mismatch", "NaN/inf", "wrong shape",
                 "missing video", "bad video", "missing camera", "bad metadata"]
    for kind in raw_kinds:
        shutil.copytree(episode_dir, day / kind.replace("/", "_").replace(" ", "_"))
    folder = {kind: day / kind.replace("/", "_").replace(" ", "_") for kind in raw_kinds}
    (folder["missing h5"] / "trajectory.h5").unlink()
    h5 = folder["unreadable h5"] / "trajectory.h5"
    h5.write_bytes(h5.read_bytes()[:5000])
    with h5py.File(folder["missing key"] / "trajectory.h5", "r+") as f:
        del f["observation/robot_state/joint_positions"]
    with h5py.File(folder["length mismatch"] / "trajectory.h5", "r+") as f:
        f["observation/robot_state/joint_positions"].resize((30, 7))
    with h5py.File(folder["NaN/inf"] / "trajectory.h5", "r+") as f:
        f["observation/robot_state/cartesian_position"][5:7, 2] = np.nan
    with h5py.File(folder["wrong shape"] / "trajectory.h5", "r+") as f:
        joints = f["observation/robot_state/joint_positions"][:, :6]
        del f["observation/robot_state/joint_positions"]
        f["observation/robot_state/joint_positions"] = joints
    (folder["missing video"] / "recordings" / "MP4" / f"{LEFT_SERIAL}.mp4").unlink()
    (folder["bad video"] / "recordings" / "MP4" / f"{LEFT_SERIAL}.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" * 50)
    # No exterior camera: every camera typed as a wrist camera and no metadata naming the roles.
    for meta in folder["missing camera"].glob("metadata_*.json"):
        meta.unlink()
    with h5py.File(folder["missing camera"] / "trajectory.h5", "r+") as f:
        for serial in f["observation/camera_type"]:
            f["observation/camera_type"][serial][...] = 0
    for meta in folder["bad metadata"].glob("metadata_*.json"):
        meta.write_text("{not json")
    short_root = top / "SHORT"
    write_episode(short_root, make_episode_recording(steps=1, lab="SHORT"))
    (short,) = [p.parent for p in short_root.rglob("trajectory.h5")]

    # RLDS: one shard of good and broken records, one truncated shard, one with a corrupt record length.
    with open_episode(episode_dir) as episode:
        good = episode_to_example(episode, image_size=(48, 64))
    features = decode_example(good)
    states = np.array(features[CARTESIAN_POSITION], np.float64)
    states[10] = np.nan
    images = list(features[IMAGE_FEATURES["ext1"]])
    images[0] = b"\xff\xd8 not a jpeg"
    shard = top / "rlds" / "droid-train.tfrecord-00000-of-00003"
    shard.parent.mkdir()
    write_tfrecord(shard, [
        good,
        _rewrite_record(features, **{CARTESIAN_POSITION: states}),
        _rewrite_record(features, **{"steps/observation/joint_position": None}),
        _rewrite_record(features, **{IMAGE_FEATURES["ext1"]: images}),
    ])
    truncated = shard.with_name("droid-train.tfrecord-00001-of-00003")
    write_tfrecord(truncated, [good, good])
    truncated.write_bytes(truncated.read_bytes()[:-100])
    corrupt = shard.with_name("droid-train.tfrecord-00002-of-00003")
    data = bytearray(good)
    write_tfrecord(corrupt, [bytes(data)])
    raw_bytes = bytearray(corrupt.read_bytes())
    raw_bytes[2] ^= 0xFF  # the record length no longer matches its CRC
    corrupt.write_bytes(bytes(raw_bytes))

    expected = {str(path): kind for kind, path in folder.items()}
    expected[str(short)] = "too short"
    expected.update({
        f"{shard}#0": "ok", f"{shard}#1": "NaN/inf", f"{shard}#2": "missing key", f"{shard}#3": "bad video",
        f"{truncated}#0": "ok", f"{truncated}#1": "truncated shard", f"{corrupt}#0": "corrupt shard",
    })
    return top, expected


def test_validate_names_every_kind_of_damage_raw_and_rlds(every_broken_kind, tmp_path, capsys):
    top, expected = every_broken_kind
    report = tmp_path / "report.jsonl"
    assert main(["droid", "validate", str(top), "--report", str(report), "--no-progress"]) == 1
    lines = {line["reference"]: line for line in map(json.loads, report.read_text().splitlines())}
    assert set(lines) == set(expected)
    got = {reference: (line["kinds"][0] if line["kinds"] else "ok") for reference, line in lines.items()}
    assert got == expected
    out = capsys.readouterr().out
    for kind in set(expected.values()) - {"ok"}:
        assert f"  {kind} " in out  # a row of the summary table per category
    counts = {line.rsplit(None, 1)[0].strip(): int(line.rsplit(None, 1)[1]) for line in out.splitlines()[:3]}
    assert counts == {"episodes checked": len(expected), "ok": 3, "failed": len(expected) - 3}


def test_index_lists_readable_records_and_reports_damaged_shards(every_broken_kind, tmp_path, capsys):
    top, expected = every_broken_kind
    out = tmp_path / "index.txt"
    assert main(["droid", "index", str(top / "rlds"), "-o", str(out), "--no-progress"]) == 0
    damaged_kinds = ("truncated shard", "corrupt shard")
    readable = sorted(r for r, kind in expected.items() if "#" in r and kind not in damaged_kinds)
    assert sorted(read_index(out)) == readable
    captured = capsys.readouterr()
    damaged = [r for r, kind in expected.items() if kind in damaged_kinds]
    assert all(f"skipped {reference}" in captured.err for reference in damaged)
    assert f"wrote {len(readable)} episodes" in captured.out and "(2 unreadable skipped)" in captured.out
