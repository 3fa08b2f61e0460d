"""Seeking readers return exactly the frames a full decode gives, for both backends and a real 1280x720 H.264 file."""

import numpy as np
import pytest

from vjepa_ac.data.droid.video import VideoError, decode_all_frames, open_video, write_video


@pytest.fixture(scope="module")
def hd_video(tmp_path_factory):
    """A 1280x720 H.264 MP4 (DROID's per-eye resolution) of 40 frames with moving content and 15-frame GOPs."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (90, 160, 3), dtype=np.uint8).repeat(8, axis=0).repeat(8, axis=1)
    frames = np.stack([np.roll(base, 16 * i, axis=1) for i in range(40)])
    frames[:, :40, :40] = (np.arange(40) * 6)[:, None, None, None]
    path = write_video(tmp_path_factory.mktemp("video") / "hd.mp4", frames, 15.0)
    return path, frames


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_seeking_read_equals_full_decode_hd(hd_video, backend):
    path, source = hd_video
    full = decode_all_frames(path)
    assert full.shape == (40, 720, 1280, 3)
    error = float(np.abs(full.astype(np.int16) - source).mean())
    assert error < 8, error  # lossy (4:2:0 chroma on random colour blocks), but close to the source
    reader = open_video(path, backend=backend)
    assert (reader.num_frames, reader.width, reader.height) == (40, 1280, 720)
    assert reader.average_fps == pytest.approx(15.0)
    indices = [37, 3, 16, 16, 29, 0]
    frames = reader.read(indices)
    again = reader.read([12, 38])  # a reused reader must seek back correctly
    reader.close()
    np.testing.assert_array_equal(again, reader_free_decode(path, backend, [12, 38]))
    if backend == "pyav":
        np.testing.assert_array_equal(frames, full[indices])
    else:  # OpenCV converts YUV->RGB with its own rounding
        assert np.abs(frames.astype(int) - full[indices]).max() <= 3


def reader_free_decode(path, backend, indices):
    """The same frames from a fresh reader."""
    reader = open_video(path, backend=backend)
    frames = reader.read(indices)
    reader.close()
    return frames


def test_out_of_range_and_unreadable(tmp_path, hd_video):
    path, _ = hd_video
    reader = open_video(path)
    with pytest.raises(VideoError, match="outside 0..39"):
        reader.read([40])
    assert reader.read([]).shape == (0, 720, 1280, 3)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(VideoError):
        open_video(bad)
    with pytest.raises(ValueError, match="unknown video backend"):
        open_video(path, backend="decord")


def test_truncated_video_fails_clearly(tmp_path, hd_video):
    path, _ = hd_video
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(VideoError):
        open_video(cut).read([39])


def test_odd_sizes_are_padded(tmp_path):
    frames = np.full((3, 33, 47, 3), 100, np.uint8)
    out = decode_all_frames(write_video(tmp_path / "odd.mp4", frames, 15.0))
    assert out.shape == (3, 34, 48, 3)
