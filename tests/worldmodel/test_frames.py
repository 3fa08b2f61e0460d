"""Frame preprocessing (DROID crop, square crop, ImageNet normalisation) and chunked per-frame encoding."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vjepa_ac.worldmodel import build_encoder, encode_frames, normalize_reps, preprocess_frames
from vjepa_ac.worldmodel.frames import IMAGENET_MEAN, IMAGENET_STD, crop_box


@pytest.mark.parametrize(
    "height, width, crop, box",
    [
        (720, 1280, "droid", (0, 154, 720, 972)),  # the spec's 16:9 example
        (180, 320, "droid", (0, 38, 180, 243)),
        (480, 640, "droid", (0, 0, 480, 640)),  # 4:3 is kept whole
        (640, 400, "droid", (53, 0, 533, 400)),  # portrait: aspect clamped to 0.75
        (180, 320, "square", (0, 70, 180, 180)),
        (180, 320, None, (0, 0, 180, 320)),
    ],
)
def test_crop_boxes(height, width, crop, box):
    assert crop_box(height, width, crop) == box


def test_preprocess_is_crop_resize_then_normalise_on_the_0_255_scale():
    frames = torch.randint(0, 256, (2, 36, 64, 3), dtype=torch.uint8)
    out = preprocess_frames(frames, (32, 32), crop="square")
    crop = frames[:, :, 14:50].permute(0, 3, 1, 2).float()
    resized = F.interpolate(crop, size=(32, 32), mode="bilinear", align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(out, (resized / 255.0 - mean) / std)


def test_encode_frames_matches_manual_duplicated_tubelet_path():
    torch.manual_seed(0)
    encoder = build_encoder("vit_tiny").eval()
    frames = torch.randint(0, 256, (2, 3, 48, 80, 3), dtype=torch.uint8)
    z = encode_frames(encoder, frames, crop="droid")
    assert z.shape == (2, 3, 16, 64) and z.dtype == torch.float32
    pixels = preprocess_frames(frames[1, 2:3], (64, 64), crop="droid")
    with torch.no_grad():
        manual = normalize_reps(encoder(pixels.unsqueeze(2).expand(-1, -1, 2, -1, -1)))
    torch.testing.assert_close(z[1, 2], manual[0])


def test_chunking_does_not_change_results_and_numpy_float_input_works():
    torch.manual_seed(0)
    encoder = build_encoder("vit_tiny").eval()
    frames = np.random.default_rng(0).integers(0, 256, (1, 5, 64, 64, 3)).astype(np.uint8)
    one_chunk = encode_frames(encoder, frames, chunk_size=16)
    many_chunks = encode_frames(encoder, frames.astype(np.float32), chunk_size=2)
    torch.testing.assert_close(one_chunk, many_chunks, atol=1e-5, rtol=1e-5)


def test_encoder_never_sees_more_than_chunk_size_frames():
    encoder = build_encoder("vit_tiny").eval()
    batches = []
    encoder.register_forward_hook(lambda module, inputs, output: batches.append(inputs[0].shape[0]))
    z = encode_frames(encoder, torch.zeros(3, 7, 64, 64, 3, dtype=torch.uint8), chunk_size=4)
    assert z.shape == (3, 7, 16, 64)
    assert batches == [4, 4, 4, 4, 4, 1]


def test_v2_1_uses_the_image_path_and_per_level_norm():
    torch.manual_seed(0)
    encoder = build_encoder("vjepa2_1_vit_tiny").eval()
    frames = torch.randint(0, 256, (1, 2, 64, 64, 3), dtype=torch.uint8)
    z = encode_frames(encoder, frames, crop=None, hierarchical=True)
    assert z.shape == (1, 2, 16, 256)
    pixels = preprocess_frames(frames[0], (64, 64), crop=None)
    with torch.no_grad():
        levels = encoder(pixels.unsqueeze(2), return_hierarchical=True)
    for level in range(4):
        chunk = slice(64 * level, 64 * (level + 1))
        torch.testing.assert_close(z[0, :, :, chunk], normalize_reps(levels[..., chunk]))


@pytest.mark.parametrize(
    "frames, error, message",
    [
        (torch.zeros(2, 64, 64, 3, dtype=torch.uint8), ValueError, r"\[B, T, H, W, 3\]"),
        (torch.zeros(1, 2, 3, 64, 64, dtype=torch.uint8), ValueError, r"\[B, T, H, W, 3\]"),
        (torch.zeros(1, 1, 64, 64, 3, dtype=torch.int32), TypeError, "uint8 or float"),
        (torch.full((1, 1, 64, 64, 3), float("nan")), ValueError, "NaN or infinite"),
        (torch.full((1, 1, 64, 64, 3), -1.0), ValueError, "0-255 scale"),
        ([[1, 2, 3]], TypeError, "numpy array or torch tensor"),
    ],
)
def test_bad_frames(frames, error, message):
    encoder = build_encoder("vit_tiny")
    with pytest.raises(error, match=message):
        encode_frames(encoder, frames)


def test_bad_crop_and_chunk_size():
    encoder = build_encoder("vit_tiny")
    frames = torch.zeros(1, 1, 64, 64, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match="crop must be"):
        encode_frames(encoder, frames, crop="centre")
    with pytest.raises(ValueError, match="chunk_size"):
        encode_frames(encoder, frames, chunk_size=0)


def test_normalize_reps_is_non_affine_layer_norm():
    z = torch.randn(2, 3, 8) * 5 + 2
    out = normalize_reps(z)
    torch.testing.assert_close(out, F.layer_norm(z, (8,), eps=1e-5))
    torch.testing.assert_close(out.mean(-1), torch.zeros(2, 3), atol=1e-5, rtol=0)


def test_multi_view_frames_encode_each_panel_alone_and_lay_the_grids_side_by_side():
    torch.manual_seed(0)
    encoder = build_encoder("vit_tiny", img_size=32).eval()  # 2x2 tokens per view
    left = torch.randint(0, 256, (1, 2, 36, 48, 3), dtype=torch.uint8)
    wrist = torch.randint(0, 256, (1, 2, 36, 48, 3), dtype=torch.uint8)
    joined = encode_frames(encoder, torch.cat([left, wrist], dim=3), views=2)
    assert joined.shape == (1, 2, 8, 64)
    grid = joined.unflatten(2, (2, 4))
    torch.testing.assert_close(grid[:, :, :, :2].flatten(2, 3), encode_frames(encoder, left))
    torch.testing.assert_close(grid[:, :, :, 2:].flatten(2, 3), encode_frames(encoder, wrist))
    with pytest.raises(ValueError, match="width 95 does not split into 2"):
        encode_frames(encoder, torch.zeros(1, 1, 36, 95, 3, dtype=torch.uint8), views=2)
