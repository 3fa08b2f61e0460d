"""AC predictor: reference equality, block causality, incremental step == forward, cache, widths, bad inputs."""

import pytest
import torch

from vjepa_ac.worldmodel import PredictorCache, RolloutBuffer, build_predictor, load_predictor, normalize_reps

from .conftest import REFERENCE_ATOL


def spec_predictor_table() -> dict[str, tuple[int, ...]]:
    """The 300-key table of the released vjepa2-ac-vitg.pt predictor (spec section 2.3)."""
    table = {
        "predictor_embed.weight": (1024, 1408), "predictor_embed.bias": (1024,),
        "action_encoder.weight": (1024, 7), "action_encoder.bias": (1024,),
        "state_encoder.weight": (1024, 7), "state_encoder.bias": (1024,),
        "extrinsics_encoder.weight": (1024, 6), "extrinsics_encoder.bias": (1024,),
        "predictor_norm.weight": (1024,), "predictor_norm.bias": (1024,),
        "predictor_proj.weight": (1408, 1024), "predictor_proj.bias": (1408,),
    }
    for i in range(24):
        b = f"predictor_blocks.{i}."
        table |= {
            b + "norm1.weight": (1024,), b + "norm1.bias": (1024,),
            b + "attn.qkv.weight": (3072, 1024), b + "attn.qkv.bias": (3072,),
            b + "attn.proj.weight": (1024, 1024), b + "attn.proj.bias": (1024,),
            b + "norm2.weight": (1024,), b + "norm2.bias": (1024,),
            b + "mlp.fc1.weight": (4096, 1024), b + "mlp.fc1.bias": (4096,),
            b + "mlp.fc2.weight": (1024, 4096), b + "mlp.fc2.bias": (1024,),
        }
    return table


def test_full_size_key_table_and_parameter_count():
    with torch.device("meta"):
        predictor = build_predictor("vit_ac_giant")
    actual = {k: tuple(v.shape) for k, v in predictor.state_dict().items()}
    assert len(actual) == 300
    assert actual == spec_predictor_table()
    assert sum(p.numel() for p in predictor.parameters()) == 305_220_992
    assert predictor.tokens_per_frame == 256


@pytest.fixture(scope="module")
def reference_predictor(reference_checkpoint):
    return load_predictor(reference_checkpoint, img_size=64)


@pytest.mark.parametrize("steps", [1, 3])
def test_matches_reference_outputs(reference_predictor, reference_cases, steps):
    c = reference_cases
    with torch.no_grad():
        out = reference_predictor(c[f"pred_T{steps}_x"], c[f"pred_T{steps}_actions"], c[f"pred_T{steps}_states"])
    assert out.shape == c[f"pred_T{steps}_out"].shape
    assert (out - c[f"pred_T{steps}_out"]).abs().max() <= REFERENCE_ATOL


def test_block_causality_against_reference(reference_predictor, reference_cases):
    c = reference_cases
    with torch.no_grad():
        base = reference_predictor(c["pred_T3_x"], c["pred_T3_actions"], c["pred_T3_states"])
        perturbed = reference_predictor(c["pred_T3_x"], c["pred_T3_actions_perturbed"], c["pred_T3_states"])
    n = reference_predictor.tokens_per_frame
    # Only the last step may change, and it changes exactly as in the reference.
    assert torch.equal(base[:, : 2 * n], perturbed[:, : 2 * n])
    assert (base[:, 2 * n :] - perturbed[:, 2 * n :]).abs().max() > 0.1
    assert (perturbed - c["pred_T3_out_perturbed"]).abs().max() <= REFERENCE_ATOL


@pytest.mark.parametrize("perturb", ["x", "actions", "states"])
def test_step_t_never_sees_later_inputs(perturb):
    torch.manual_seed(0)
    predictor = build_predictor("vit_ac_tiny").eval()
    x, actions, states = torch.randn(2, 4 * 16, 64), torch.randn(2, 4, 7), torch.randn(2, 4, 7)
    inputs = {"x": x, "actions": actions, "states": states}
    changed = dict(inputs)
    changed[perturb] = inputs[perturb].clone()
    if perturb == "x":
        changed["x"][:, 2 * 16 :] += 1.0
    else:
        changed[perturb][:, 2:] += 1.0
    with torch.no_grad():
        a, b = predictor(**inputs), predictor(**changed)
    assert torch.equal(a[:, : 2 * 16], b[:, : 2 * 16])
    assert not torch.allclose(a[:, 2 * 16 :], b[:, 2 * 16 :])


def test_e2e_case(reference_checkpoint, reference_cases):
    c = reference_cases
    predictor = load_predictor(reference_checkpoint, img_size=64)
    with torch.no_grad():
        out = predictor(c["e2e_reps"], c["e2e_actions"], c["e2e_states"])
    assert (out - c["e2e_pred_out"]).abs().max() <= REFERENCE_ATOL
    next_rep = normalize_reps(out[:, -predictor.tokens_per_frame :])
    assert (next_rep - c["e2e_next_rep"]).abs().max() <= REFERENCE_ATOL


def _rollout_by_steps(predictor, x, actions, states, extrinsics=None, cache=None):
    outs = []
    n = predictor.tokens_per_frame
    for t in range(actions.shape[1]):
        ext = extrinsics[:, t] if extrinsics is not None else None
        out, cache = predictor.step(x[:, t * n : (t + 1) * n], actions[:, t], states[:, t], cache, ext)
        outs.append(out)
    return torch.cat(outs, dim=1), cache


def test_incremental_step_equals_forward_on_reference(reference_predictor, reference_cases):
    c = reference_cases
    with torch.no_grad():
        full = reference_predictor(c["pred_T3_x"], c["pred_T3_actions"], c["pred_T3_states"])
        stepped, cache = _rollout_by_steps(reference_predictor, c["pred_T3_x"], c["pred_T3_actions"],
                                           c["pred_T3_states"])
    assert cache.num_steps == 3 and cache.batch_size == 2
    assert (stepped - full).abs().max() <= 1e-5
    assert (stepped - c["pred_T3_out"]).abs().max() <= REFERENCE_ATOL


@pytest.mark.parametrize(
    "overrides",
    [
        {"use_extrinsics": True},  # 3 conditioning tokens per step
        {"img_size": (96, 64)},  # non-square grid, 24 tokens per frame
        {"img_size": 384},  # V-JEPA 2.1 resolution, 576 tokens per frame
        {"embed_dim": 4 * 32},  # V-JEPA 2.1 hierarchical features: 4 levels of a 32-d encoder
    ],
)
def test_step_equals_forward_for_other_layouts(overrides):
    torch.manual_seed(0)
    predictor = build_predictor("vit_ac_tiny", **overrides).eval()
    cfg = predictor.config
    steps, n = 3, predictor.tokens_per_frame
    x = normalize_reps(torch.randn(2, steps * n, cfg.embed_dim))
    actions, states = torch.randn(2, steps, 7), torch.randn(2, steps, 7)
    extrinsics = torch.randn(2, steps, 6) if cfg.use_extrinsics else None
    with torch.no_grad():
        full = predictor(x, actions, states, extrinsics)
        stepped, _ = _rollout_by_steps(predictor, x, actions, states, extrinsics)
    assert full.shape == (2, steps * n, cfg.embed_dim)
    assert (stepped - full).abs().max() <= 1e-5


def test_extrinsics_change_the_output_only_when_used():
    torch.manual_seed(0)
    x, a, s = torch.randn(1, 32, 64), torch.randn(1, 2, 7), torch.randn(1, 2, 7)
    plain = build_predictor("vit_ac_tiny").eval()
    with torch.no_grad():  # ignored, as in the reference, when use_extrinsics is off
        torch.testing.assert_close(plain(x, a, s), plain(x, a, s, torch.randn(1, 2, 6)))
    with_ext = build_predictor("vit_ac_tiny", use_extrinsics=True).eval()
    with torch.no_grad():
        assert not torch.allclose(with_ext(x, a, s, torch.zeros(1, 2, 6)), with_ext(x, a, s, torch.ones(1, 2, 6)))
    with pytest.raises(ValueError, match="use_extrinsics"):
        with_ext(x, a, s)


def test_expanded_cache_is_a_view_and_matches_a_batched_rollout():
    torch.manual_seed(0)
    predictor = build_predictor("vit_ac_tiny").eval()
    n, samples = predictor.tokens_per_frame, 5
    context, a0, s0 = torch.randn(1, n, 64), torch.randn(1, 7), torch.randn(1, 7)
    next_x, a1, s1 = torch.randn(samples, n, 64), torch.randn(samples, 7), torch.randn(samples, 7)
    with torch.no_grad():
        _, cache = predictor.step(context, a0, s0)
        shared = cache.expand(samples)
        assert shared.batch_size == samples
        assert shared.keys[0].data_ptr() == cache.keys[0].data_ptr()  # no copy
        out, grown = predictor.step(next_x, a1, s1, shared)
        full = predictor(
            torch.cat([context.expand(samples, -1, -1), next_x], dim=1),
            torch.stack([a0.expand(samples, -1), a1], dim=1),
            torch.stack([s0.expand(samples, -1), s1], dim=1),
        )
    assert (out - full[:, n:]).abs().max() <= 1e-5
    assert cache.num_steps == 1 and grown.num_steps == 2  # the seed cache is untouched


def test_rollout_buffer_and_shared_embedded_frame_match_the_concatenating_cache():
    torch.manual_seed(0)
    predictor = build_predictor("vit_ac_tiny").eval()
    n, samples = predictor.tokens_per_frame, 4
    context, a0, s0 = torch.randn(1, n, 64), torch.randn(1, 7), torch.randn(1, 7)
    shared_x, a1, s1 = torch.randn(1, n, 64), torch.randn(samples, 7), torch.randn(samples, 7)
    x2, a2, s2 = torch.randn(samples, n, 64), torch.randn(samples, 7), torch.randn(samples, 7)
    with torch.no_grad():
        _, prefix = predictor.step(context, a0, s0)
        out1, cache = predictor.step(shared_x.expand(samples, -1, -1), a1, s1, prefix.expand(samples))
        out2, cache = predictor.step(x2, a2, s2, cache)
        buffer = RolloutBuffer.allocate(predictor, samples, 3, prefix=prefix)
        got1, same = predictor.step(predictor.embed_frames(shared_x), a1, s1, buffer, embedded=True)
        got2, _ = predictor.step(x2, a2, s2, buffer)
        assert same is buffer and buffer.num_steps == 3
        with pytest.raises(ValueError, match="buffer is full"):
            predictor.step(x2, a2, s2, buffer)
    torch.testing.assert_close(got1, out1, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got2, out2, atol=1e-5, rtol=1e-5)
    # The buffer holds exactly the keys the concatenating cache built, prefix included.
    torch.testing.assert_close(buffer.keys[1], cache.keys[1], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="no room"):
        RolloutBuffer.allocate(predictor, samples, 1, prefix=prefix)
    with pytest.raises(ValueError, match="x_t must be"):
        predictor.step(torch.randn(1, n, 32), a2, s2, embedded=True)


def test_cache_errors():
    predictor = build_predictor("vit_ac_tiny").eval()
    x, a, s = torch.randn(2, 16, 64), torch.randn(2, 7), torch.randn(2, 7)
    with torch.no_grad():
        _, cache = predictor.step(x, a, s)
        with pytest.raises(ValueError, match="only a batch-1 cache"):
            cache.expand(4)
        with pytest.raises(ValueError, match=r"cache.expand\(3\)"):
            predictor.step(torch.randn(3, 16, 64), torch.randn(3, 7), torch.randn(3, 7), cache)
        other = build_predictor("vit_ac_tiny", depth=3).eval()
        with pytest.raises(ValueError, match="cache has 2 layers, this predictor has 3"):
            other.step(x, a, s, cache)


@pytest.mark.parametrize("field", ["actions", "states"])
def test_nan_conditions_are_rejected(field):
    predictor = build_predictor("vit_ac_tiny")
    inputs = {"x": torch.randn(1, 32, 64), "actions": torch.randn(1, 2, 7), "states": torch.randn(1, 2, 7)}
    inputs[field][0, 1, 3] = float("nan")
    with pytest.raises(ValueError, match=f"{field} contain NaN"):
        predictor(**inputs)


def test_mismatched_token_counts_and_shapes_are_rejected():
    predictor = build_predictor("vit_ac_tiny")
    a, s = torch.randn(1, 2, 7), torch.randn(1, 2, 7)
    with pytest.raises(ValueError, match="not a positive multiple of 16 tokens per frame"):
        predictor(torch.randn(1, 30, 64), a, s)
    with pytest.raises(ValueError, match=r"actions must be \[B=1, T=3, 7\]"):
        predictor(torch.randn(1, 48, 64), a, s)
    with pytest.raises(ValueError, match=r"x must be"):
        predictor(torch.randn(1, 32, 65), a, s)
    with pytest.raises(ValueError, match=r"x_t must be"):
        predictor.step(torch.randn(1, 17, 64), a[:, 0], s[:, 0])
    x = torch.randn(1, 32, 64)
    x[0, 3, 3] = float("inf")
    with pytest.raises(ValueError, match="frame features contain NaN"):
        predictor(x, a, s)


def test_no_prebuilt_mask_or_position_buffers():
    """Masks and RoPE tables are built lazily for the lengths actually used, never stored in the state dict."""
    with torch.device("meta"):
        predictor = build_predictor("vit_ac_giant")
    assert list(predictor.buffers()) == []
    predictor = build_predictor("vit_ac_tiny").eval()
    with torch.no_grad():
        predictor(torch.randn(1, 3 * 16, 64), torch.randn(1, 3, 7), torch.randn(1, 3, 7))
    (mask,) = predictor._mask_cache.values()
    assert mask.shape == (3 * 18, 3 * 18)
    step = torch.arange(3).repeat_interleave(18)
    assert torch.equal(mask == 0, step[:, None] >= step[None, :])


def test_activation_checkpointing_gives_the_same_gradients():
    x, a, s = torch.randn(2, 48, 64), torch.randn(2, 3, 7), torch.randn(2, 3, 7)
    grads = []
    for use_ckpt in (False, True):
        torch.manual_seed(0)
        predictor = build_predictor("vit_ac_tiny", use_activation_checkpointing=use_ckpt).train()
        predictor(x, a, s).abs().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in predictor.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[0], grads[1])


def test_gradients_reach_every_used_parameter():
    predictor = build_predictor("vit_ac_tiny").train()
    predictor(torch.randn(2, 32, 64), torch.randn(2, 2, 7), torch.randn(2, 2, 7)).abs().mean().backward()
    without_grad = {n for n, p in predictor.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0}
    assert without_grad == {"extrinsics_encoder.weight", "extrinsics_encoder.bias"}


def test_predictor_cache_is_immutable():
    cache = PredictorCache((torch.zeros(1, 1, 2, 4),), (torch.zeros(1, 1, 2, 4),), 1)
    with pytest.raises(AttributeError):
        cache.num_steps = 2  # type: ignore[misc]


@pytest.mark.slow
def test_full_size_predictor_step_equals_forward():
    """The released architecture (305M parameters, head_dim 64 -> RoPE 20/20/20 + 4), random weights."""
    torch.manual_seed(0)
    predictor = build_predictor("vit_ac_giant").eval()
    x = normalize_reps(torch.randn(1, 2 * 256, 1408))
    actions, states = torch.randn(1, 2, 7), torch.randn(1, 2, 7)
    with torch.no_grad():
        full = predictor(x, actions, states)
        stepped, cache = _rollout_by_steps(predictor, x, actions, states)
    assert cache.keys[0].shape == (1, 16, 2 * 258, 64)
    assert (stepped - full).abs().max() <= 1e-4


def test_tables_cached_while_planning_serve_a_later_training_step():
    # Planning may run under inference_mode first; the RoPE tables and masks it caches must still work with autograd.
    torch.manual_seed(0)
    predictor = build_predictor("vit_ac_tiny")
    x = torch.randn(1, 2 * predictor.tokens_per_frame, 64)
    actions, states = torch.randn(1, 2, 7), torch.randn(1, 2, 7)
    with torch.inference_mode():
        predictor(x, actions, states)
    predictor(x, actions, states).abs().mean().backward()
    assert predictor.predictor_embed.weight.grad is not None
