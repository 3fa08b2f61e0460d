"""Training the action-conditioned predictor over a frozen encoder.

`vjepa-ac encode` fills a `LatentCache` once; `vjepa-ac train CONFIG` runs `Trainer` (teacher-forcing + rollout L1,
AdamW with the reference's warmup-stable-decay schedule, DDP under torchrun, resumable atomic checkpoints).
`vjepa-ac pretrain` (`pretrain_encoder`) pretrains an encoder itself with V-JEPA 2's masked-latent objective or
V-JEPA 2.1's dense, deeply supervised one on images and video clips.

The API is imported lazily (on first use), so that the `vjepa-ac` command's --help does not load torch or tensorstore.
"""

from __future__ import annotations

from data.lazy_exports import lazy_getattr

_EXPORTS = {
    "CacheSpec": "worldmodel.training.latent_cache",
    "CachedEpisode": "worldmodel.training.latent_cache",
    "CorruptCacheError": "worldmodel.training.latent_cache",
    "DataConfig": "worldmodel.training.config",
    "LatentCache": "worldmodel.training.latent_cache",
    "LossConfig": "worldmodel.training.config",
    "LossTerms": "worldmodel.training.losses",
    "ModelConfig": "worldmodel.training.config",
    "OptimConfig": "worldmodel.training.config",
    "PretrainConfig": "worldmodel.training.pretrain",
    "RunConfig": "worldmodel.training.config",
    "TrainConfig": "worldmodel.training.config",
    "Trainer": "worldmodel.training.trainer",
    "ac_loss": "worldmodel.training.losses",
    "load_config": "worldmodel.training.config",
    "pretrain_encoder": "worldmodel.training.pretrain",
    "rollout_predictions": "worldmodel.training.losses",
    "teacher_forcing_predictions": "worldmodel.training.losses",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
