"""The world model: frozen V-JEPA 2 / 2.1 encoders and the V-JEPA 2-AC action-conditioned predictor.

Loading Meta's released files by path (architecture inferred from the tensors, strict key check)::

    from vjepa_ac.worldmodel import load_encoder, load_world_model
    wm = load_world_model("vjepa2-ac-vitg.pt")              # encoder + AC predictor, frozen, eval mode
    encoder = load_encoder("vitg-384.pt", preset="vit_giant_384")
    encoder = load_encoder("vjepa2_1_vitl_dist_vitG_384.pt")  # 2.1: `ema_encoder` entry, hierarchical norms
    encoder = load_encoder("path/to/facebook--vjepa2-vitl-fpc64-256/snapshot")  # Hugging Face folder

Planning-style use of the predictor, one imagined step at a time with a key/value cache::

    z = wm.encode(frames)                                      # [B, T, N, D], normalised
    raw, cache = wm.predictor.step(z[:, 0], action, state)     # predicts frame 1
    z1 = normalize_reps(raw, wm.num_levels)

`vjepa-ac info CHECKPOINT` reports what a file holds and whether it loads.

The API is imported lazily (on first use), so that the `vjepa-ac` command's --help does not load torch.
"""

from __future__ import annotations

from vjepa_ac.data.lazy_exports import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    ".predictor": ("ACPredictor", "PREDICTOR_PRESETS", "PredictorCache", "PredictorConfig", "RolloutBuffer", "build_predictor"),
    ".checkpoints": (
        "CONFIG_KEY", "CheckpointError", "LoadReport", "freeze", "load_encoder", "load_predictor", "read_checkpoint",
        "save_ac_checkpoint",
    ),
    ".encoder": ("ENCODER_PRESETS", "EncoderConfig", "VisionTransformer", "build_encoder"),
    ".mask_predictor": ("MaskPredictor", "build_mask_predictor"),
    ".mask_predictor_config": ("MaskPredictorConfig",),
    ".world_model": ("WorldModel", "load_world_model"),
    ".frames": ("encode_frames", "normalize_reps", "preprocess_frames"),
})
