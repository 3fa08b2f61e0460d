"""The pretraining loss: V-JEPA 2.1's lambda schedule, distance weights, dense and 4-level losses, checked by hand."""

from __future__ import annotations

import pytest
import torch

from vjepa_ac.worldmodel import build_encoder, build_mask_predictor, normalize_reps
from vjepa_ac.worldmodel.training.masks import nearest_target_distance
from vjepa_ac.worldmodel.training.objective import (
    MaskSet,
    ModalityBatch,
    PretrainObjective,
    collapse_monitors,
    context_weights,
    effective_rank,
    gather_tokens,
)
from vjepa_ac.worldmodel.training.pretrain_config import ContextLambda

GRID = (1, 4, 4)


def test_context_lambda_is_meta_linear_warmup_hold():
    schedule = ContextLambda(0.5, 15_000, 30_000)  # Meta's defaults
    assert [schedule.at(step) for step in (0, 14_999, 15_000)] == [0.0, 0.0, 0.0]
    assert schedule.at(22_500) == pytest.approx(0.25)
    assert schedule.at(29_999) == pytest.approx(0.5 * 14_999 / 15_000)
    assert schedule.at(30_000) == schedule.at(10**6) == 0.5
    assert ContextLambda(0.5, 0, 0).at(0) == 0.5  # constant (lambda_progressive off)
    with pytest.raises(ValueError):
        ContextLambda(0.5, 300, 150)


def test_context_weights_are_inverse_square_roots_of_the_distance():
    distance = nearest_target_distance(torch.tensor([[0, 3, 6, 15]]), torch.tensor([[5]]), GRID)
    expected = torch.tensor([[2**-0.25, 5**-0.25, 1.0, 8**-0.25]])
    torch.testing.assert_close(context_weights(distance), expected)


def _tiny_2_1(levels: int = 4):
    torch.manual_seed(0)
    encoder = build_encoder("vjepa2_1_vit_tiny")  # 64 px -> 4x4 tokens, depth 4, 4 levels
    predictor = build_mask_predictor(embed_dim=64, predictor_embed_dim=32, num_heads=4, num_mask_tokens=1,
                                     num_levels=levels, predict_context=True, modality_embedding=True,
                                     rope_interleaved=True)
    return encoder, predictor


def _hand_mask(batch: int, weighted: bool) -> MaskSet:
    context = torch.tensor([[0, 3, 6, 15]]).expand(batch, -1)
    target = torch.tensor([[5, 9]]).expand(batch, -1)
    weights = context_weights(nearest_target_distance(context, target, GRID)) if weighted else None
    return MaskSet(context, target, 0, weights)


def _image_batch(encoder, lam: float, weighted: bool, levels: int = 4) -> ModalityBatch:
    clips = torch.randn(2, 3, 1, 64, 64)
    with torch.no_grad():
        targets = normalize_reps(encoder(clips, return_hierarchical=levels > 1), levels)
    return ModalityBatch("image", clips, GRID, targets, [_hand_mask(2, weighted)], lam)


def test_four_level_loss_is_the_mean_of_the_per_level_losses_and_the_dense_term_is_weighted_by_hand():
    encoder, predictor = _tiny_2_1()
    objective = PretrainObjective(encoder, predictor, hierarchical=True)
    batch = _image_batch(encoder, 0.5, weighted=True)
    loss, stats = objective([batch])

    per_level = torch.stack([stats[f"loss_pred_level{i}"] for i in range(4)])
    torch.testing.assert_close(stats["loss_pred_image"], per_level.sum() / 4)  # equal weights, no per-level factor
    mask = batch.masks[0]
    with torch.no_grad():
        context = encoder(batch.clips, masks=mask.context_idx, return_hierarchical=True)
        out = predictor(context, mask.context_idx, mask.target_idx, GRID, modality="image")
    pred = (out.targets - gather_tokens(batch.targets, mask.target_idx)).abs().mean()
    ctx = ((out.context - gather_tokens(batch.targets, mask.context_idx)).abs() * mask.weights[..., None]).mean()
    torch.testing.assert_close(stats["loss_pred_image"], pred)
    torch.testing.assert_close(stats["loss_ctx_image"], ctx)
    torch.testing.assert_close(loss, pred + 0.5 * ctx)
    # token 15 = (3, 3) is nearest to target 9 = (2, 1): d = sqrt(5)
    assert mask.weights[0].tolist() == pytest.approx([2**-0.25, 5**-0.25, 1.0, 5**-0.25])


def test_modalities_weigh_equally_and_lambda_zero_drops_the_context_term():
    encoder, predictor = _tiny_2_1()
    objective = PretrainObjective(encoder, predictor, hierarchical=True)
    image = _image_batch(encoder, 0.0, weighted=False)
    clips = torch.randn(2, 3, 4, 64, 64)  # 4 frames -> 2 token-frames through the video tokenizer
    with torch.no_grad():
        targets = normalize_reps(encoder(clips, return_hierarchical=True), 4)
    assert targets.shape == (2, 32, 256)
    video_mask = MaskSet(torch.tensor([[0, 1, 16, 17]] * 2), torch.tensor([[5, 21, 30]] * 2))
    video = ModalityBatch("video", clips, (2, 4, 4), targets, [video_mask], 0.7)
    loss, stats = objective([image, video])
    torch.testing.assert_close(stats["loss_image"], stats["loss_pred_image"])
    torch.testing.assert_close(stats["loss_video"], stats["loss_pred_video"] + 0.7 * stats["loss_ctx_video"])
    torch.testing.assert_close(loss, (stats["loss_image"] + stats["loss_video"]) / 2)
    loss.backward()
    for name in ("patch_embed_img.proj.weight", "patch_embed.proj.weight", "img_mod_embed", "video_mod_embed",
                 "norms_block.0.weight"):
        assert encoder.get_parameter(name).grad.abs().sum() > 0, name
    assert predictor.predictor_proj_context.weight.grad.abs().sum() > 0


def test_single_level_ablation_predicts_only_the_last_level():
    encoder, predictor = _tiny_2_1(levels=1)
    with pytest.raises(ValueError, match="feature levels"):
        PretrainObjective(encoder, predictor, hierarchical=True)
    objective = PretrainObjective(encoder, predictor, hierarchical=False)
    loss, stats = objective([_image_batch(encoder, 0.5, weighted=True, levels=1)])
    assert torch.isfinite(loss) and "loss_pred_level0" not in stats
    loss.backward()
    assert encoder.norms_block[0].weight.grad is None and encoder.norms_block[3].weight.grad is not None


def test_collapse_monitors_see_collapse():
    torch.manual_seed(0)
    healthy = normalize_reps(torch.randn(4, 16, 4 * 8), 4)
    collapsed = normalize_reps(torch.randn(1, 1, 4 * 8).expand(4, 16, -1) + 1e-3 * torch.randn(4, 16, 32), 4)
    good, bad = collapse_monitors(healthy, 4), collapse_monitors(collapsed, 4)
    assert set(good) == {"target_std_l0", "target_std_l1", "target_std_l2", "target_std_l3", "target_rank"}
    assert all(good[f"target_std_l{i}"] > 0.9 for i in range(4))
    assert all(bad[f"target_std_l{i}"] < 0.1 for i in range(4))
    assert effective_rank(torch.eye(8)) == pytest.approx(7, rel=1e-4)  # centring removes one direction
    assert effective_rank(torch.randn(64, 1) @ torch.randn(1, 8)) < 1.01
