"""The pretraining predictor: shapes, Meta's parameter names, RoPE at true positions, gradient flow."""

from __future__ import annotations

import copy

import pytest
import torch

from worldmodel import build_encoder, normalize_reps
from worldmodel.mask_predictor import (
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
    assert predictor(context, CONTEXT, TARGET, GRID).shape == (2, 3, 64)
    names = set(predictor.state_dict())
    assert {"predictor_embed.weight", "mask_tokens.0", "mask_tokens.1", "predictor_blocks.0.attn.qkv.weight",
            "predictor_norm.weight", "predictor_proj.weight"} <= names
    assert torch.count_nonzero(MaskPredictor(MaskPredictorConfig()).mask_tokens[0]) == 0


def test_context_order_does_not_matter(predictor):
    context = torch.randn(2, 5, 64)
    order = torch.tensor([4, 2, 0, 3, 1])
    torch.testing.assert_close(predictor(context[:, order], CONTEXT[:, order], TARGET, GRID),
                               predictor(context, CONTEXT, TARGET, GRID), atol=1e-5, rtol=0)


def test_positions_and_mask_token_change_predictions(predictor):
    context = torch.randn(2, 5, 64)
    base = predictor(context, CONTEXT, TARGET, GRID)
    moved = predictor(context, CONTEXT, torch.tensor([[10, 11, 12], [10, 11, 12]]), GRID)
    assert not torch.allclose(base, moved, atol=1e-4)
    assert not torch.allclose(base, predictor(context, CONTEXT, TARGET, GRID, mask_index=1), atol=1e-4)


def test_gradients_reach_context_encoder_not_target_encoder():
    torch.manual_seed(0)
    encoder = build_encoder("vit_tiny")
    target = copy.deepcopy(encoder).requires_grad_(False)
    predictor = build_mask_predictor()
    clips = torch.randn(2, 3, 2, 64, 64)
    with torch.no_grad():
        targets = normalize_reps(target(clips))
    predicted = predictor(encoder(clips, masks=CONTEXT), CONTEXT, TARGET, GRID)
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
