"""The architecture of the V-JEPA pretraining predictor (`worldmodel.mask_predictor.MaskPredictor`), in a module
without torch, so that `vjepa-ac pretrain --help` can show the defaults of `PretrainConfig` without loading it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass
class MaskPredictorConfig:
    """Architecture of the pretraining predictor; defaults suit the 64-wide `vit_tiny` encoder."""

    embed_dim: int = 64
    """Width of the encoder it predicts for (input and output)."""
    predictor_embed_dim: int = 64
    depth: int = 2
    num_heads: int = 4
    mlp_ratio: float = 4.0
    num_mask_tokens: int = 2
    """One learned mask token per mask generator (Meta: one per entry of `cfgs_mask`)."""
    qkv_bias: bool = True
    rope_interleaved: bool = False
    """Follow the encoder: tiled (V-JEPA 2) or true pairwise (2.1) RoPE tables."""
    num_levels: int = 1
    """Encoder feature levels taken in and predicted, concatenated on channels (2.1 deep self-supervision: 4)."""
    predict_context: bool = False
    """Also predict the visible tokens' targets through `predictor_proj_context` (2.1 dense loss, `predict_all`)."""
    modality_embedding: bool = False
    """Learned `img_mod_embed` / `video_mod_embed` added to every predictor token (2.1)."""

    def __post_init__(self) -> None:
        if self.predictor_embed_dim % self.num_heads:
            raise ValueError(f"predictor_embed_dim {self.predictor_embed_dim} is not divisible by num_heads "
                             f"{self.num_heads}")
        if self.num_mask_tokens < 1:
            raise ValueError(f"num_mask_tokens must be >= 1, got {self.num_mask_tokens}")
        if self.num_levels < 1:
            raise ValueError(f"num_levels must be >= 1, got {self.num_levels}")

    @property
    def feature_dim(self) -> int:
        """Channels of the encoder features it reads and predicts: `num_levels * embed_dim`."""
        return self.num_levels * self.embed_dim

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
