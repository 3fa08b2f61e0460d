"""V-JEPA 2 / 2.1 encoder: reference equality, full-size key tables, 2.1 features, bad inputs."""

import copy

import pytest
import torch

from vjepa_ac.worldmodel import ENCODER_PRESETS, build_encoder, load_encoder
from vjepa_ac.worldmodel.encoder import default_hierarchical_layers

from .conftest import REFERENCE_ATOL

# Full-size architectures from the spec (width, depth, heads, MLP hidden); ViT-g is Meta's vit_giant_xformers.
SPEC_SIZES = {
    "vit_large": (1024, 24, 16, 4096),
    "vit_huge": (1280, 32, 16, 5120),
    "vit_giant": (1408, 40, 22, 6144),
    "vit_giant_384": (1408, 40, 22, 6144),
    "vjepa2_1_vit_base_384": (768, 12, 12, 3072),
    "vjepa2_1_vit_large_384": (1024, 24, 16, 4096),
    "vjepa2_1_vit_giant_384": (1408, 40, 22, 6144),
    "vjepa2_1_vit_gigantic_384": (1664, 48, 26, 8192),
}


def expected_key_table(width: int, depth: int, hidden: int, *, v2_1: bool) -> dict[str, tuple[int, ...]]:
    table = {"patch_embed.proj.weight": (width, 3, 2, 16, 16), "patch_embed.proj.bias": (width,)}
    if v2_1:
        table |= {"patch_embed_img.proj.weight": (width, 3, 1, 16, 16), "patch_embed_img.proj.bias": (width,),
                  "img_mod_embed": (1, 1, width), "video_mod_embed": (1, 1, width)}
    for i in range(depth):
        b = f"blocks.{i}."
        table |= {
            b + "norm1.weight": (width,), b + "norm1.bias": (width,),
            b + "attn.qkv.weight": (3 * width, width), b + "attn.qkv.bias": (3 * width,),
            b + "attn.proj.weight": (width, width), b + "attn.proj.bias": (width,),
            b + "norm2.weight": (width,), b + "norm2.bias": (width,),
            b + "mlp.fc1.weight": (hidden, width), b + "mlp.fc1.bias": (hidden,),
            b + "mlp.fc2.weight": (width, hidden), b + "mlp.fc2.bias": (width,),
        }
    if v2_1:
        for i in range(4):
            table |= {f"norms_block.{i}.weight": (width,), f"norms_block.{i}.bias": (width,)}
    else:
        table |= {"norm.weight": (width,), "norm.bias": (width,)}
    return table


@pytest.mark.parametrize("preset", sorted(SPEC_SIZES))
def test_full_size_key_names_and_shapes(preset):
    width, depth, heads, hidden = SPEC_SIZES[preset]
    with torch.device("meta"):
        encoder = build_encoder(preset)
    assert encoder.config.num_heads == heads
    actual = {k: tuple(v.shape) for k, v in encoder.state_dict().items()}
    assert actual == expected_key_table(width, depth, hidden, v2_1=preset.startswith("vjepa2_1"))


def test_vit_giant_parameter_count_matches_reference():
    with torch.device("meta"):
        encoder = build_encoder("vit_giant")
    assert sum(p.numel() for p in encoder.parameters()) == 1_012_173_952


def test_hierarchical_layer_table():
    assert default_hierarchical_layers(12) == (2, 5, 8, 11)
    assert default_hierarchical_layers(48) == (11, 23, 37, 47)  # not evenly spaced in Meta's table
    assert default_hierarchical_layers(4) == (0, 1, 2, 3)
    assert ENCODER_PRESETS["vjepa2_1_vit_giant_384"].hierarchical_layers == (9, 19, 29, 39)


@pytest.mark.parametrize("case", ["frame", "video"])
def test_matches_reference_outputs(reference_checkpoint, reference_cases, case):
    encoder = load_encoder(reference_checkpoint)
    with torch.no_grad():
        out = encoder(reference_cases[f"enc_{case}_x"])
    expected = reference_cases[f"enc_{case}_out"]
    assert out.shape == expected.shape
    assert (out - expected).abs().max() <= REFERENCE_ATOL


def test_reference_is_sensitive_to_the_rope_quirk(reference_checkpoint, reference_cases):
    """The fixture would catch the 'corrected' RoPE: V-JEPA 2 weights need the tiled tables."""
    encoder = load_encoder(reference_checkpoint, rope_interleaved=True)
    with torch.no_grad():
        out = encoder(reference_cases["enc_video_x"])
    assert (out - reference_cases["enc_video_out"]).abs().max() > 0.1


def test_nonsquare_input_uses_raw_patch_indices():
    torch.manual_seed(0)
    encoder = build_encoder("vit_tiny").eval()
    x = torch.randn(1, 3, 2, 64, 96)
    with torch.no_grad():
        out = encoder(x)
    assert out.shape == (1, 4 * 6, 64)


def _tiny_2_1(**overrides):
    torch.manual_seed(0)
    return build_encoder("vjepa2_1_vit_tiny", **overrides).eval()


def test_v2_1_single_frame_uses_the_image_tokenizer():
    encoder = _tiny_2_1()
    x = torch.randn(2, 3, 1, 64, 64)
    with torch.no_grad():
        before = encoder(x)
        encoder.patch_embed.proj.weight.add_(1.0)  # the video tokenizer must not matter for images
        same = encoder(x)
        encoder.patch_embed_img.proj.weight.add_(1.0)
        changed = encoder(x)
    assert before.shape == (2, 16, 64)
    torch.testing.assert_close(before, same)
    assert not torch.allclose(before, changed)


def test_v2_1_modality_embeddings_select_by_input_kind():
    encoder = _tiny_2_1()
    image, video = torch.randn(1, 3, 1, 64, 64), torch.randn(1, 3, 2, 64, 64)
    with torch.no_grad():
        image_out, video_out = encoder(image), encoder(video)
        encoder.img_mod_embed.add_(0.5)
        assert not torch.allclose(encoder(image), image_out)
        torch.testing.assert_close(encoder(video), video_out)


def test_v2_1_hierarchical_output_levels():
    encoder = _tiny_2_1()
    x = torch.randn(1, 3, 2, 64, 64)
    with torch.no_grad():
        final = encoder(x)
        levels = encoder(x, return_hierarchical=True)
    assert levels.shape == (1, 16, 4 * 64)
    # The last level is what eval mode returns; every level went through its own LayerNorm.
    torch.testing.assert_close(levels[..., -64:], final)
    chunks = levels.unflatten(-1, (4, 64))
    assert not torch.allclose(chunks[..., 0, :], chunks[..., 3, :])
    assert encoder.output_dim(hierarchical=True) == 256


def test_v2_1_rope_interpolation_only_acts_off_the_pretraining_grid():
    """At 16x16 patches (256 px) the rescale is 1; at 6x6 positions are stretched to span 0..15."""
    plain = _tiny_2_1(interpolate_rope=False)
    stretched = _tiny_2_1(interpolate_rope=True)
    on_grid, off_grid = torch.randn(1, 3, 1, 256, 256), torch.randn(1, 3, 1, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(plain(on_grid), stretched(on_grid))
        assert not torch.allclose(plain(off_grid), stretched(off_grid), atol=1e-4)


def test_v2_has_no_hierarchical_output():
    encoder = build_encoder("vit_tiny")
    with pytest.raises(ValueError, match="V-JEPA 2.1"):
        encoder(torch.randn(1, 3, 2, 64, 64), return_hierarchical=True)


@pytest.mark.parametrize(
    "shape, message",
    [((1, 3, 64, 64), r"\[B, 3, T, H, W\]"), ((1, 4, 2, 64, 64), r"\[B, 3, T, H, W\]"),
     ((1, 3, 2, 60, 64), "multiple of the patch size"), ((1, 3, 3, 64, 64), "multiple of the tubelet")],
)
def test_bad_input_shapes(shape, message):
    encoder = build_encoder("vit_tiny")
    with pytest.raises(ValueError, match=message):
        encoder(torch.randn(shape))


def test_activation_checkpointing_gives_the_same_gradients():
    x = torch.randn(1, 3, 2, 64, 64)
    grads = []
    for use_ckpt in (False, True):
        torch.manual_seed(0)
        encoder = build_encoder("vit_tiny", use_activation_checkpointing=use_ckpt).train()
        encoder(x).square().mean().backward()
        grads.append(encoder.blocks[0].attn.qkv.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_unknown_preset_and_field():
    with pytest.raises(ValueError, match="unknown encoder preset"):
        build_encoder("vit_enormous")
    with pytest.raises(TypeError, match="num_layers"):
        build_encoder("vit_tiny", num_layers=3)


def test_meta_constructor_arguments_are_accepted_or_refused():
    encoder = build_encoder("vit_tiny", num_frames=64, use_rope=True, use_sdpa=True, uniform_power=False)
    assert encoder.config == ENCODER_PRESETS["vit_tiny"]
    with pytest.raises(ValueError, match="use_rope=False is not supported"):
        build_encoder("vit_tiny", use_rope=False)


# ---------------------------------------------------------------------------------------------------- Meta's 2.1 code
_V2_1_CASES = [("img_x", "img_out", False), ("vid_x", "vid_out", False), ("interp_x", "interp_out", False),
               ("img_x", "img_hier_out", True), ("vid_x", "vid_hier_out", True)]


@pytest.fixture(scope="module")
def v2_1_reference(v2_1_reference_dir):
    encoder = load_encoder(v2_1_reference_dir / "vjepa2_1-tiny.pt", num_heads=2, img_size=64)
    cases = torch.load(v2_1_reference_dir / "cases.pt", map_location="cpu", weights_only=True)
    return encoder, cases


def test_v2_1_reference_checkpoint_is_identified_from_its_keys(v2_1_reference):
    encoder, _ = v2_1_reference
    config = encoder.config
    assert config.is_v2_1 and config.hierarchical_layers == (2, 5, 8, 11)
    assert (config.embed_dim, config.depth, config.img_temporal_dim_size) == (32, 12, 1)
    assert config.rope_interleaved and config.interpolate_rope and config.modality_embedding
    assert sum(p.numel() for p in encoder.parameters()) == 226_560


@pytest.mark.parametrize("inputs, outputs, hierarchical", _V2_1_CASES, ids=[case[1] for case in _V2_1_CASES])
def test_v2_1_matches_meta_reference_outputs(v2_1_reference, inputs, outputs, hierarchical):
    """Image tokenizer, video tokenizer, the four normed levels and RoPE interpolation (6x6 grid on a 4x4 model)."""
    encoder, cases = v2_1_reference
    with torch.no_grad():
        out = encoder(cases[inputs], return_hierarchical=hierarchical)
    assert out.shape == cases[outputs].shape
    torch.testing.assert_close(out, cases[outputs], atol=REFERENCE_ATOL, rtol=REFERENCE_ATOL)


def test_v2_1_reference_catches_swapped_modality_embeddings(v2_1_reference):
    encoder, cases = v2_1_reference
    swapped = copy.deepcopy(encoder)
    with torch.no_grad():
        swapped.img_mod_embed.copy_(encoder.video_mod_embed)
        assert (swapped(cases["img_x"]) - cases["img_out"]).abs().max() > 0.1
