"""Clip frame selection: the reference rule exactly, and the timestamp mode on jittery clocks."""

import math

import numpy as np
import pytest

from vjepa_ac.data.droid.sampling import ClipTooShortError, reference_clip_indices, reference_stride, timestamp_clip_indices


def test_reference_rule_matches_the_formula():
    # ceil(15 / 4) = 4, 8 frames -> a window of 32 frames, ef ~ U[32, vlen), indices = arange(ef - 32, ef, 4).
    assert reference_stride(15.0, 4.0) == 4 and reference_stride(30.0, 4.0) == 8 and reference_stride(4.0, 4.0) == 1
    for seed in range(50):
        expected_rng, rng = np.random.default_rng(seed), np.random.default_rng(seed)
        indices = reference_clip_indices(100, 15.0, frames_per_clip=8, fps=4.0, rng=rng)
        ef = int(expected_rng.integers(32, 100))
        np.testing.assert_array_equal(indices, np.arange(ef - 32, ef, 4))
        assert indices.dtype == np.int64 and indices.max() < 100


def test_reference_rule_covers_all_windows_and_edges():
    rng = np.random.default_rng(0)
    starts = {int(reference_clip_indices(40, 15.0, frames_per_clip=8, fps=4.0, rng=rng)[0]) for _ in range(400)}
    assert starts == set(range(40 - 32))  # ef < vlen, so the last frame never ends a window, as in the reference
    np.testing.assert_array_equal(
        reference_clip_indices(32, 15.0, frames_per_clip=8, fps=4.0, rng=rng), np.arange(0, 32, 4)
    )
    with pytest.raises(ClipTooShortError, match="31 frames"):
        reference_clip_indices(31, 15.0, frames_per_clip=8, fps=4.0, rng=rng)


def test_timestamp_mode_follows_the_clock_not_the_frame_count():
    rng = np.random.default_rng(1)
    # A 15 Hz recording with jitter and one 200 ms stall: frame counting would drift, timestamps do not.
    periods = 1000 / 15 + rng.normal(0, 4, 200)
    periods[50] += 200
    stamps = np.cumsum(periods).astype(np.int64)
    for _ in range(20):
        indices = timestamp_clip_indices(stamps, frames_per_clip=8, fps=4.0, rng=rng)
        times = stamps[indices]
        targets = times[0] + 250 * np.arange(8)
        assert np.all(np.abs(times - targets) <= periods.max() / 2 + 1)  # the nearest frame to each target time
        assert indices.max() < len(stamps)


def test_timestamp_mode_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(ClipTooShortError):
        timestamp_clip_indices(np.arange(10) * 66, frames_per_clip=8, fps=4.0, rng=rng)
    with pytest.raises(ValueError, match="non-decreasing"):
        timestamp_clip_indices(np.array([0, 100, 50, 200]), frames_per_clip=2, fps=4.0, rng=rng)
    assert math.isclose(reference_stride(29.97, 4.0), 8)
