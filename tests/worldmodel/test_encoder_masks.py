"""`VisionTransformer.forward(masks=...)`: keeping token indices as Meta's `apply_masks` does, with their RoPE
positions."""

from __future__ import annotations

import pytest
import torch

from vjepa_ac.worldmodel import build_encoder


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return build_encoder("vit_tiny").eval()  # 64 px: 4x4 = 16 tokens per tubelet


@pytest.fixture(scope="module")
def clips():
    torch.manual_seed(1)
    return torch.randn(3, 3, 2, 64, 64)


def test_keep_all_mask_equals_no_mask(encoder, clips):
    keep_all = torch.arange(16).expand(3, -1)
    torch.testing.assert_close(encoder(clips, masks=keep_all), encoder(clips), atol=1e-6, rtol=0)


def test_permuted_mask_permutes_the_output(encoder, clips):
    """Tokens carry their own RoPE positions, so reordering the kept indices only reorders the outputs."""
    order = torch.randperm(16, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(encoder(clips, masks=order.expand(3, -1)), encoder(clips)[:, order], atol=1e-5,
                               rtol=0)


def test_per_sample_masks_equal_samples_run_alone(encoder, clips):
    masks = torch.tensor([[0, 3, 5, 9, 15], [1, 2, 4, 8, 12], [6, 7, 10, 11, 13]])
    batched = encoder(clips, masks=masks)
    assert batched.shape == (3, 5, 64)
    for i in range(3):
        torch.testing.assert_close(batched[i : i + 1], encoder(clips[i : i + 1], masks=masks[i : i + 1]),
                                   atol=1e-6, rtol=0)


def test_dropped_tokens_change_the_kept_ones(encoder, clips):
    kept = torch.tensor([[0, 3, 5, 9]]).expand(3, -1)
    assert not torch.allclose(encoder(clips, masks=kept), encoder(clips)[:, [0, 3, 5, 9]], atol=1e-4)


def test_hierarchical_image_encoder_accepts_masks():
    torch.manual_seed(0)
    encoder = build_encoder("vjepa2_1_vit_tiny").eval()
    images = torch.randn(2, 3, 1, 64, 64)
    keep_all = torch.arange(16).expand(2, -1)
    torch.testing.assert_close(encoder(images, masks=keep_all, return_hierarchical=True),
                               encoder(images, return_hierarchical=True), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("masks", "message"),
    [
        (torch.arange(16).expand(2, -1), "B=3"),
        (torch.full((3, 4), 16), r"\[0, 16\)"),
        (torch.zeros(3, 4), "integer"),
    ],
)
def test_bad_masks_are_rejected(encoder, clips, masks, message):
    with pytest.raises(ValueError, match=message):
        encoder(clips, masks=masks)
