"""Training the action-conditioned predictor over a frozen encoder.

`vjepa-ac encode` fills a `LatentCache` once; `vjepa-ac train CONFIG` runs `Trainer` (teacher-forcing + rollout L1,
AdamW with the reference's warmup-stable-decay schedule, DDP under torchrun, resumable atomic checkpoints).
`vjepa-ac pretrain` (`pretrain_encoder`) pretrains an encoder itself with V-JEPA 2's masked-latent objective or
V-JEPA 2.1's dense, deeply supervised one on images and video clips.
"""

from worldmodel.training.config import (
    DataConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
    load_config,
)
from worldmodel.training.latent_cache import (
    CachedEpisode,
    CacheSpec,
    CorruptCacheError,
    LatentCache,
)
from worldmodel.training.losses import (
    LossTerms,
    ac_loss,
    rollout_predictions,
    teacher_forcing_predictions,
)
from worldmodel.training.pretrain import PretrainConfig, pretrain_encoder
from worldmodel.training.trainer import Trainer

__all__ = [
    "CacheSpec",
    "CachedEpisode",
    "CorruptCacheError",
    "DataConfig",
    "LatentCache",
    "LossConfig",
    "LossTerms",
    "ModelConfig",
    "OptimConfig",
    "PretrainConfig",
    "RunConfig",
    "TrainConfig",
    "Trainer",
    "ac_loss",
    "load_config",
    "pretrain_encoder",
    "rollout_predictions",
    "teacher_forcing_predictions",
]
