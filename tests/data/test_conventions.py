"""Conventions shared by every layer: multi-view camera names and joined frames."""

import numpy as np
import pytest

from vjepa_ac.data.conventions import camera_views, join_views


def test_camera_views_split_on_plus_and_refuse_empty_or_repeated_roles():
    assert camera_views("left") == ("left",)
    assert camera_views("left+wrist") == ("left", "wrist")
    assert camera_views(" left + wrist ") == ("left", "wrist")
    for bad in ("", "left+", "+wrist", "left+left"):
        with pytest.raises(ValueError, match="join distinct camera roles"):
            camera_views(bad)


def test_join_views_lays_frames_side_by_side_and_needs_one_size():
    a, b = np.zeros((2, 3, 4, 3), np.uint8), np.ones((2, 3, 4, 3), np.uint8)
    joined = join_views([a, b], "a+b")
    assert joined.shape == (2, 3, 8, 3) and joined[..., :4, :].max() == 0 and joined[..., 4:, :].min() == 1
    assert join_views([a]) is a
    with pytest.raises(ValueError, match="camera 'a\\+b': its views must have frames of one size"):
        join_views([a, b[:, :, :3]], "a+b")
