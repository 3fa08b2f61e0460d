"""The world model: frozen V-JEPA 2 / 2.1 encoders and the V-JEPA 2-AC action-conditioned predictor.

Loading Meta's released files by path (architecture inferred from the tensors, strict key check)::

    from worldmodel import load_encoder, load_world_model
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

from data.lazy_exports import lazy_getattr

_EXPORTS = {
    "ACPredictor": "worldmodel.predictor",
    "CONFIG_KEY": "worldmodel.checkpoints",
    "CheckpointError": "worldmodel.checkpoints",
    "ENCODER_PRESETS": "worldmodel.encoder",
    "EncoderConfig": "worldmodel.encoder",
    "LoadReport": "worldmodel.checkpoints",
    "MaskPredictor": "worldmodel.mask_predictor",
    "MaskPredictorConfig": "worldmodel.mask_predictor",
    "PREDICTOR_PRESETS": "worldmodel.predictor",
    "PredictorCache": "worldmodel.predictor",
    "RolloutBuffer": "worldmodel.predictor",
    "PredictorConfig": "worldmodel.predictor",
    "VisionTransformer": "worldmodel.encoder",
    "WorldModel": "worldmodel.world_model",
    "build_encoder": "worldmodel.encoder",
    "build_mask_predictor": "worldmodel.mask_predictor",
    "build_predictor": "worldmodel.predictor",
    "encode_frames": "worldmodel.frames",
    "freeze": "worldmodel.checkpoints",
    "load_encoder": "worldmodel.checkpoints",
    "load_predictor": "worldmodel.checkpoints",
    "load_world_model": "worldmodel.world_model",
    "normalize_reps": "worldmodel.frames",
    "preprocess_frames": "worldmodel.frames",
    "read_checkpoint": "worldmodel.checkpoints",
    "save_ac_checkpoint": "worldmodel.checkpoints",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
