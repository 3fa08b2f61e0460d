"""The pretraining predictor: shapes, Meta's parameter names, RoPE at true positions, gradient flow, and the V-JEPA 2.1
additions (4-level fusion, context head, modality embeddings)."""

from __future__ import annotations

import copy

import pytest
import torch

from vjepa_ac.worldmodel import build_encoder, normalize_reps
from vjepa_ac.worldmodel.mask_predictor import (
    MaskPredictor,
    MaskPredictorConfig,
    build_mask_predictor,
)

GRID = (1, 4, 4)
CONTEXT = torch.tensor([[0, 1, 2, 5, 6], [3, 4, 8, 9, 15]])
TARGET = torch.tensor([[3, 4, 7], [0, 1, 2]])


@pytest.fixture(scope="module")
def predictor() -> MaskPredictor:
    torch.manual_seed(0)
    model = build_mask_predictor(embed_dim=64, predictor_embed_dim=32, depth=2, num_heads=4)
    with torch.no_grad():  # distinct tokens so that mask_index matters (they start at zero, as Meta's)
        model.mask_tokens[1].normal_()
    return model.eval()


def test_shapes_and_meta_parameter_names(predictor):
    context = torch.randn(2, 5, 64)
    out = predictor(context, CONTEXT, TARGET, GRID)
    assert out.targets.shape == (2, 3, 64) and out.context is None
    names = set(predictor.state_dict())
    assert {"predictor_embed.weight", "mask_tokens.0", "mask_tokens.1", "predictor_blocks.0.attn.qkv.weight",
            "predictor_norm.weight", "predictor_proj.weight"} <= names
    assert torch.count_nonzero(MaskPredictor(MaskPredictorConfig()).mask_tokens[0]) == 0


def test_context_order_does_not_matter(predictor):
    context = torch.randn(2, 5, 64)
    order = torch.tensor([4, 2, 0, 3, 1])
    torch.testing.assert_close(predictor(context[:, order], CONTEXT[:, order], TARGET, GRID).targets,
                               predictor(context, CONTEXT, TARGET, GRID).targets, atol=1e-5, rtol=0)


def test_positions_and_mask_token_change_predictions(predictor):
    context = torch.randn(2, 5, 64)
    base = predictor(context, CONTEXT, TARGET, GRID).targets
    moved = predictor(context, CONTEXT, torch.tensor([[10, 11, 12], [10, 11, 12]]), GRID).targets
    assert not torch.allclose(base, moved, atol=1e-4)
    assert not torch.allclose(base, predictor(context, CONTEXT, TARGET, GRID, mask_index=1).targets, atol=1e-4)


def test_gradients_reach_context_encoder_not_target_encoder():
    torch.manual_seed(0)
    encoder = build_encoder("vit_tiny")
    target = copy.deepcopy(encoder).requires_grad_(False)
    predictor = build_mask_predictor()
    clips = torch.randn(2, 3, 2, 64, 64)
    with torch.no_grad():
        targets = normalize_reps(target(clips))
    predicted = predictor(encoder(clips, masks=CONTEXT), CONTEXT, TARGET, GRID).targets
    wanted = torch.gather(targets, 1, TARGET.unsqueeze(-1).expand(-1, -1, 64))
    (predicted - wanted).abs().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.blocks.parameters())
    assert encoder.patch_embed.proj.weight.grad.abs().sum() > 0
    assert predictor.mask_tokens[0].grad.abs().sum() > 0 and predictor.mask_tokens[1].grad is None
    assert all(p.grad is None for p in target.parameters())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mask_index": 2}, "mask_index"),
        ({"target_idx": torch.tensor([[3, 4, 16], [0, 1, 2]])}, r"\[0, 16\)"),
        ({"context": torch.randn(2, 5, 32)}, "context must be"),
        ({"context_idx": CONTEXT[:, :4]}, "context_idx"),
    ],
)
def test_bad_inputs_are_rejected(predictor, kwargs, message):
    args = {"context": torch.randn(2, 5, 64), "context_idx": CONTEXT, "target_idx": TARGET}
    mask_index = kwargs.pop("mask_index", 0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        predictor(args["context"], args["context_idx"], args["target_idx"], GRID, mask_index=mask_index)


def test_config_checks():
    with pytest.raises(ValueError, match="divisible"):
        MaskPredictorConfig(predictor_embed_dim=30, num_heads=4)


def _v2_1_predictor(**overrides) -> MaskPredictor:
    torch.manual_seed(0)
    values = {"embed_dim": 64, "predictor_embed_dim": 32, "depth": 2, "num_heads": 4, "num_mask_tokens": 1,
              "num_levels": 4, "predict_context": True, "modality_embedding": True, "rope_interleaved": True}
    return build_mask_predictor(**{**values, **overrides}).eval()


def test_v2_1_predictor_names_and_shapes_follow_meta():
    predictor = _v2_1_predictor()
    shapes = {k: tuple(v.shape) for k, v in predictor.state_dict().items()}
    assert shapes["predictor_embed.0.weight"] == (64, 256)  # Linear(4D -> D)
    assert shapes["predictor_embed.2.weight"] == (32, 64)  # GELU, Linear(D -> predictor width)
    assert shapes["predictor_proj.weight"] == shapes["predictor_proj_context.weight"] == (256, 32)
    assert shapes["img_mod_embed"] == shapes["video_mod_embed"] == (1, 1, 32)
    out = predictor(torch.randn(2, 5, 256), CONTEXT, TARGET, GRID, modality="image")
    assert out.targets.shape == (2, 3, 256) and out.context.shape == (2, 5, 256)
    with pytest.raises(ValueError, match=r"\[B, Kc, 256\]"):
        predictor(torch.randn(2, 5, 64), CONTEXT, TARGET, GRID)


def test_v2_1_predictor_modality_embedding_selects_by_modality():
    predictor = _v2_1_predictor()
    context = torch.randn(2, 5, 256)
    with torch.no_grad():
        predictor.img_mod_embed.normal_()
        image = predictor(context, CONTEXT, TARGET, GRID, modality="image")
        video = predictor(context, CONTEXT, TARGET, GRID, modality="video")
        predictor.img_mod_embed.zero_()
        video_again = predictor(context, CONTEXT, TARGET, GRID, modality="video")
    assert not torch.allclose(image.targets, video.targets, atol=1e-4)
    torch.testing.assert_close(video.context, video_again.context)
    with pytest.raises(ValueError, match="modality"):
        predictor(context, CONTEXT, TARGET, GRID, modality="audio")


def test_single_level_predictor_keeps_the_plain_embedding():
    predictor = _v2_1_predictor(num_levels=1)
    assert isinstance(predictor.predictor_embed, torch.nn.Linear)
    assert predictor(torch.randn(2, 5, 64), CONTEXT, TARGET, GRID).context.shape == (2, 5, 64)
