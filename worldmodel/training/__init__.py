"""Training the action-conditioned predictor over a frozen encoder.

`vjepa-ac encode` fills a `LatentCache` once; `vjepa-ac train CONFIG` runs `Trainer` (teacher-forcing + rollout L1,
AdamW with the reference's warmup-stable-decay schedule, DDP under torchrun, resumable atomic checkpoints).
`vjepa-ac pretrain` (`pretrain_encoder`) pretrains an encoder itself with V-JEPA 2's masked-latent objective or
V-JEPA 2.1's dense, deeply supervised one on images and video clips.

The API is imported lazily (on first use), so that the `vjepa-ac` command's --help does not load torch or tensorstore.
"""

from __future__ import annotations

from vjepa_ac.data.lazy_exports import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    ".latent_cache": ("CacheSpec", "CachedEpisode", "CorruptCacheError", "LatentCache"),
    ".config": ("DataConfig", "LossConfig", "ModelConfig", "OptimConfig", "RunConfig", "TrainConfig", "load_config"),
    ".losses": ("LossTerms", "ac_loss", "rollout_predictions", "teacher_forcing_predictions"),
    ".pretrain": ("pretrain_encoder",),
    ".pretrain_config": ("PretrainConfig",),
    ".trainer": ("Trainer",),
})
