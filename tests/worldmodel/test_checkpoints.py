"""Checkpoint loading and saving: Meta layouts, architecture inference, strictness, HF snapshots, bad files."""

import pytest
import torch

from vjepa_ac.worldmodel import (
    CONFIG_KEY,
    CheckpointError,
    build_encoder,
    build_predictor,
    load_encoder,
    load_predictor,
    load_world_model,
    normalize_reps,
    read_checkpoint,
    save_ac_checkpoint,
)
from vjepa_ac.worldmodel.summary import describe_checkpoint

from .conftest import REFERENCE_ATOL


def _meta_layout(state: dict, prefix: str) -> dict:
    return {prefix + k: v.clone() for k, v in state.items()}


def test_world_model_end_to_end_against_reference(reference_checkpoint, reference_cases, reference_config):
    c = reference_cases
    wm = load_world_model(reference_checkpoint)
    assert wm.img_size == (64, 64) and wm.tokens_per_frame == reference_config["predictor"]["tokens_per_frame"]
    assert wm.num_levels == 1
    expected_params = reference_config["checkpoint"]["num_params"]
    assert sum(p.numel() for p in wm.encoder.parameters()) == expected_params["encoder"]
    assert sum(p.numel() for p in wm.predictor.parameters()) == expected_params["predictor"]
    assert not wm.encoder.training and not any(p.requires_grad for p in wm.predictor.parameters())
    clip = c["e2e_clip"]
    with torch.no_grad():
        # Each frame on its own, duplicated to fill a tubelet, then the non-affine layer norm.
        reps = torch.cat(
            [normalize_reps(wm.encoder(clip[:, :, t : t + 1].expand(-1, -1, 2, -1, -1))) for t in range(2)], dim=1
        )
        out = wm.predictor(reps, c["e2e_actions"], c["e2e_states"])
    assert (reps - c["e2e_reps"]).abs().max() <= REFERENCE_ATOL
    assert (out - c["e2e_pred_out"]).abs().max() <= REFERENCE_ATOL


def test_load_with_dtype_and_entry_choice(reference_checkpoint):
    encoder = load_encoder(reference_checkpoint, checkpoint_key="encoder", dtype=torch.float64)
    assert next(encoder.parameters()).dtype == torch.float64
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())
    with pytest.raises(CheckpointError, match="no entry 'ema_encoder'"):
        load_encoder(reference_checkpoint, checkpoint_key="ema_encoder")


def test_save_round_trip_in_meta_layout(tmp_path, reference_checkpoint, reference_cases):
    wm = load_world_model(reference_checkpoint)
    path = save_ac_checkpoint(tmp_path / "ac.pt", encoder=wm.encoder, predictor=wm.predictor,
                              extra={"epoch": 7, "opt": {"lr": 1e-4}})
    assert [p.name for p in tmp_path.iterdir()] == ["ac.pt"]  # no temporary file left behind
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert {"encoder", "target_encoder", "predictor", "epoch", "opt", CONFIG_KEY} <= set(raw)
    assert raw["epoch"] == 7
    assert all(k.startswith("module.backbone.") for k in raw["encoder"])
    assert all(k.startswith("module.") and not k.startswith("module.backbone.") for k in raw["predictor"])
    # Same key set as Meta's file, so their loaders accept ours and ours accepts theirs.
    reference = torch.load(reference_checkpoint, map_location="cpu", weights_only=True)
    for part in ("encoder", "target_encoder", "predictor"):
        assert set(raw[part]) == set(reference[part])
    again = load_world_model(path)  # no architecture arguments needed
    c = reference_cases
    with torch.no_grad():
        out = again.predictor(c["pred_T3_x"], c["pred_T3_actions"], c["pred_T3_states"])
    assert (out - c["pred_T3_out"]).abs().max() <= REFERENCE_ATOL


def test_save_refuses_to_overwrite_model_entries(tmp_path):
    encoder, predictor = build_encoder("vit_tiny"), build_predictor("vit_ac_tiny")
    with pytest.raises(ValueError, match="'predictor'"):
        save_ac_checkpoint(tmp_path / "x.pt", encoder=encoder, predictor=predictor, extra={"predictor": {}})
    with pytest.raises(TypeError, match="ACPredictor"):
        save_ac_checkpoint(tmp_path / "x.pt", encoder=encoder, predictor=encoder)


def test_v2_1_hierarchical_world_model_round_trip(tmp_path):
    torch.manual_seed(0)
    encoder = build_encoder("vjepa2_1_vit_tiny").eval()
    predictor = build_predictor("vit_ac_tiny", embed_dim=4 * 64).eval()
    path = save_ac_checkpoint(tmp_path / "ac21.pt", encoder=encoder, predictor=predictor)
    wm = load_world_model(path)
    assert wm.num_levels == 4 and wm.encoder.config.rope_interleaved
    frames = torch.randint(0, 256, (1, 2, 48, 80, 3), dtype=torch.uint8)
    z = wm.encode(frames)
    assert z.shape == (1, 2, 16, 256)
    with torch.no_grad():
        out = wm.predictor(z.flatten(1, 2), torch.zeros(1, 2, 7), torch.zeros(1, 2, 7))
        expected = predictor(z.flatten(1, 2), torch.zeros(1, 2, 7), torch.zeros(1, 2, 7))
    torch.testing.assert_close(out, expected)


def test_v2_1_encoder_from_ema_encoder_entry_is_inferred(tmp_path):
    torch.manual_seed(0)
    encoder = build_encoder("vjepa2_1_vit_tiny").eval()
    path = tmp_path / "vjepa2_1.pt"
    torch.save({"ema_encoder": _meta_layout(encoder.state_dict(), "module.backbone."), "epoch": 3}, path)
    loaded = load_encoder(path)
    assert loaded.config == encoder.config
    x = torch.randn(1, 3, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), encoder(x))


def test_unused_pos_embed_is_skipped_but_other_extra_keys_fail(tmp_path):
    encoder = build_encoder("vit_tiny")
    state = _meta_layout(encoder.state_dict(), "module.backbone.")
    state["module.backbone.pos_embed"] = torch.zeros(1, 16, 64)
    torch.save({"encoder": state}, tmp_path / "ok.pt")
    load_encoder(tmp_path / "ok.pt")
    state["module.backbone.blocks.7.norm1.weight"] = torch.zeros(64)
    torch.save({"encoder": state}, tmp_path / "extra.pt")
    with pytest.raises(CheckpointError, match=r"unexpected: blocks\.7\.norm1\.weight"):
        load_encoder(tmp_path / "extra.pt", preset="vit_tiny")


def test_missing_and_misshaped_keys_are_named(tmp_path, reference_checkpoint):
    data = torch.load(reference_checkpoint, map_location="cpu", weights_only=True)
    del data["predictor"]["module.predictor_blocks.1.mlp.fc2.bias"]
    data["predictor"]["module.state_encoder.weight"] = torch.zeros(64, 8)
    torch.save(data, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError) as info:
        load_predictor(tmp_path / "broken.pt", img_size=64)
    message = str(info.value)
    assert "missing: predictor_blocks.1.mlp.fc2.bias" in message
    assert "state_encoder.weight (checkpoint (64, 8), model (64, 7))" in message


def test_wrong_preset_is_a_named_mismatch(reference_checkpoint):
    with pytest.raises(CheckpointError, match="shape mismatch: patch_embed.proj.weight"):
        load_encoder(reference_checkpoint, preset="vit_large")


def test_legacy_serialization_loads(tmp_path, reference_checkpoint, reference_cases):
    data = torch.load(reference_checkpoint, map_location="cpu", weights_only=True)
    torch.save(data, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)  # cannot be memory-mapped
    encoder = load_encoder(tmp_path / "legacy.pt")
    with torch.no_grad():
        out = encoder(reference_cases["enc_frame_x"])
    assert (out - reference_cases["enc_frame_out"]).abs().max() <= REFERENCE_ATOL


def test_truncated_file(tmp_path, reference_checkpoint):
    blob = reference_checkpoint.read_bytes()
    (tmp_path / "cut.pt").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_encoder(tmp_path / "cut.pt")


def test_arbitrary_pickled_objects_are_refused(tmp_path):
    torch.save({"encoder": {}, "args": CheckpointError("not a tensor")}, tmp_path / "pickled.pt")
    with pytest.raises(CheckpointError, match="not loaded for safety"):
        read_checkpoint(tmp_path / "pickled.pt")


def test_missing_file():
    with pytest.raises(CheckpointError, match="not found"):
        load_world_model("/nonexistent/ac.pt")


def test_foreign_checkpoint(tmp_path):
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}, "step": 3}, tmp_path / "resnet.pt")
    with pytest.raises(CheckpointError, match="no V-JEPA encoder found.*top-level keys: model, step"):
        load_encoder(tmp_path / "resnet.pt")
    with pytest.raises(CheckpointError, match="no AC predictor found"):
        load_predictor(tmp_path / "resnet.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="expected a dict"):
        read_checkpoint(tmp_path / "list.pt")


def test_pretraining_predictor_is_not_mistaken_for_an_ac_predictor(tmp_path):
    encoder = build_encoder("vit_tiny")
    torch.save({
        "encoder": _meta_layout(encoder.state_dict(), "module.backbone."),
        "predictor": {"module.backbone.mask_tokens.0": torch.zeros(1, 1, 32),
                      "module.backbone.predictor_embed.weight": torch.zeros(32, 64)},
    }, tmp_path / "vitl.pt")
    load_encoder(tmp_path / "vitl.pt")
    with pytest.raises(CheckpointError, match="masked-pretraining predictor"):
        load_predictor(tmp_path / "vitl.pt")


def test_unknown_width_needs_num_heads(tmp_path):
    torch.manual_seed(0)
    encoder = build_encoder("vit_tiny", embed_dim=96, num_heads=6).eval()
    torch.save({"target_encoder": encoder.state_dict()}, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match="pass num_heads="):
        load_encoder(tmp_path / "odd.pt")
    loaded = load_encoder(tmp_path / "odd.pt", num_heads=6, img_size=64)
    x = torch.randn(1, 3, 2, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), encoder(x))


def test_mismatched_pair_is_rejected(tmp_path):
    encoder, predictor = build_encoder("vit_tiny"), build_predictor("vit_ac_tiny", img_size=(96, 96))
    path = save_ac_checkpoint(tmp_path / "pair.pt", encoder=encoder, predictor=predictor)
    with pytest.raises(CheckpointError, match="36 tokens per frame but the encoder gives 16"):
        load_world_model(path)
    # A grid as high as the encoder's and a whole number of its widths is a multi-view pair; 1.5 widths is not.
    wide = save_ac_checkpoint(tmp_path / "wide.pt", encoder=encoder,
                              predictor=build_predictor("vit_ac_tiny", img_size=(64, 192)))
    assert load_world_model(wide).views == 3
    odd = save_ac_checkpoint(tmp_path / "odd.pt", encoder=encoder,
                             predictor=build_predictor("vit_ac_tiny", img_size=(64, 96)))
    with pytest.raises(CheckpointError, match="24 tokens per frame but the encoder gives 16"):
        load_world_model(odd)


def test_world_model_takes_another_encoder_only_when_its_predictor_fits(tmp_path):
    from vjepa_ac.worldmodel import WorldModel

    torch.manual_seed(0)
    model = WorldModel(encoder=build_encoder("vit_tiny"), predictor=build_predictor("vit_ac_tiny"), crop="square")
    other = build_encoder("vit_tiny")
    swapped = model.with_encoder(other)
    assert swapped.encoder is other and swapped.predictor is model.predictor and swapped.crop == "square"
    assert model.encoder is not other  # the original pair is left as it was
    with pytest.raises(CheckpointError, match="tokens per frame"):
        model.with_encoder(build_encoder("vit_tiny", img_size=(96, 96)))
    with pytest.raises(CheckpointError, match="-d features"):
        model.with_encoder(build_encoder("vit_tiny", embed_dim=96, num_heads=4))


def test_safetensors_file(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    encoder = build_encoder("vit_tiny").eval()
    save_file({k: v.contiguous() for k, v in encoder.state_dict().items()}, str(tmp_path / "enc.safetensors"))
    loaded = load_encoder(tmp_path / "enc.safetensors")
    x = torch.randn(1, 3, 2, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), encoder(x))


def test_hugging_face_snapshot_matches_transformers(tmp_path):
    transformers = pytest.importorskip("transformers", reason="transformers is in the test extra")
    config = transformers.VJEPA2Config(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, crop_size=64, frames_per_clip=4,
        pred_hidden_size=32, pred_num_hidden_layers=1, pred_num_attention_heads=2,
    )
    torch.manual_seed(0)
    hf_model = transformers.VJEPA2Model(config).eval()
    with torch.no_grad():  # random LayerNorm affines so that a wrong mapping cannot hide
        for name, param in hf_model.named_parameters():
            if "norm" in name:
                param.add_(0.1 * torch.randn_like(param))
    hf_model.save_pretrained(tmp_path)
    encoder = load_encoder(tmp_path)
    assert encoder.config.img_size == (64, 64) and encoder.config.num_heads == 4
    video = torch.randn(2, 4, 3, 64, 64)  # transformers takes [B, T, C, H, W]
    with torch.no_grad():
        expected = hf_model(pixel_values_videos=video, skip_predictor=True).last_hidden_state
        ours = encoder(video.permute(0, 2, 1, 3, 4))
    assert (ours - expected).abs().max() <= 1e-4
    report = describe_checkpoint(tmp_path)
    assert report["kind"] == "V-JEPA 2 encoder (Hugging Face snapshot)" and report["encoder"]["num_params"] > 0
    hf_model.save_pretrained(tmp_path / "sharded", max_shard_size="200KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    with torch.no_grad():
        torch.testing.assert_close(load_encoder(tmp_path / "sharded")(video.permute(0, 2, 1, 3, 4)), ours)


def test_folder_without_config_is_rejected(tmp_path):
    with pytest.raises(CheckpointError, match="config.json"):
        load_encoder(tmp_path)
