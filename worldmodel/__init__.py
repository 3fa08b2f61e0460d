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
"""

from worldmodel.checkpoints import (
    CONFIG_KEY,
    CheckpointError,
    LoadReport,
    freeze,
    load_encoder,
    load_predictor,
    read_checkpoint,
    save_ac_checkpoint,
)
from worldmodel.encoder import ENCODER_PRESETS, EncoderConfig, VisionTransformer, build_encoder
from worldmodel.frames import encode_frames, normalize_reps, preprocess_frames
from worldmodel.mask_predictor import MaskPredictor, MaskPredictorConfig, build_mask_predictor
from worldmodel.predictor import PREDICTOR_PRESETS, ACPredictor, PredictorCache, PredictorConfig, build_predictor
from worldmodel.world_model import WorldModel, load_world_model

__all__ = [
    "CONFIG_KEY",
    "ENCODER_PRESETS",
    "PREDICTOR_PRESETS",
    "ACPredictor",
    "CheckpointError",
    "EncoderConfig",
    "LoadReport",
    "MaskPredictor",
    "MaskPredictorConfig",
    "PredictorCache",
    "PredictorConfig",
    "VisionTransformer",
    "WorldModel",
    "build_encoder",
    "build_mask_predictor",
    "build_predictor",
    "encode_frames",
    "freeze",
    "load_encoder",
    "load_predictor",
    "load_world_model",
    "normalize_reps",
    "preprocess_frames",
    "read_checkpoint",
    "save_ac_checkpoint",
]
