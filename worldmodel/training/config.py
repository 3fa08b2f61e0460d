"""Training configuration: dataclasses with working defaults, loaded from YAML with dotted `key=value` overrides
(`data.config`, the one configuration style of every command).

The field names follow the reference recipe (`configs/train/vitg16/droid-256px-8f.yaml`) where one exists, but the
schedule is counted in optimizer steps rather than epochs x iterations-per-epoch, so that a config reads the same
whatever the dataset size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from vjepa_ac.data.config import ConfigError, load, to_dict


@dataclass
class DataConfig:
    """Where clips come from and how they are cut."""

    source: str = "cache"
    """"cache": latents from a `vjepa-ac encode` store (no encoder in the loop); "raw": DROID episodes, encoded on
    the fly by the frozen encoder."""
    cache: str | None = None
    """Latent cache root (source "cache")."""
    episodes: str | list[str] | None = None
    """Source "raw": an episode index file or a list of episode folders. Source "cache": optional subset of
    episode ids (default: every episode in the cache)."""
    val_episodes: list[str] | None = None
    """Held-out episode ids; when unset, `val_fraction` of the episodes are held out by a stable hash of the id."""
    val_fraction: float = 0.05
    frames_per_clip: int = 8
    fps: float = 4.0
    camera: str | None = None
    """Raw source only: camera role to train on; None = left for raw episodes, ext1 for RLDS records (which have no
    left/right roles), as `data.droid.index.default_camera` picks. The cache source uses the cache's camera."""
    crop: str = "droid"
    """Raw source only: "droid" (the reference's training crop), "square" (the planning crop) or "none"."""
    batch_size: int = 8
    """Clips per rank per micro-step."""
    num_workers: int = 2


@dataclass
class ModelConfig:
    """The frozen encoder and the predictor to train."""

    encoder: str | None = None
    """Encoder preset name (e.g. "vit_giant"); default: inferred from the checkpoint (raw source) or taken from the
    cache's record of its encoder (cache source)."""
    encoder_checkpoint: str | None = None
    """Checkpoint holding the frozen encoder's weights (e.g. Meta's vitg.pt)."""
    encoder_checkpoint_key: str | None = "target_encoder"
    hierarchical: bool = False
    """Raw source with a V-JEPA 2.1 encoder: train on its four feature levels concatenated (the cache source
    follows what the cache holds)."""
    predictor_preset: str = "vit_ac_giant"
    """Starting point of the predictor architecture (see `worldmodel.predictor.PREDICTOR_PRESETS`)."""
    predictor: dict[str, Any] = field(default_factory=dict)
    """Overrides of PredictorConfig fields (depth, predictor_embed_dim, num_heads, ...). embed_dim, img_size,
    patch_size and tubelet_size are taken from the encoder (or the cache) when not given."""
    init_checkpoint: str | None = None
    """Start the predictor from this AC checkpoint instead of a random init (fine-tuning)."""
    use_activation_checkpointing: bool = False
    compile: bool = False


@dataclass
class LossConfig:
    """V-JEPA 2-AC objective: L1 teacher forcing plus L1 autoregressive rollout."""

    rollout_steps: int = 2
    """Frames covered by the rollout loss (the reference's `auto_steps`); needs frames_per_clip > rollout_steps."""
    teacher_forcing_weight: float = 1.0
    rollout_weight: float = 1.0
    loss_exp: float = 1.0
    """1.0 = L1 (the reference); the loss is mean(|z - h| ** loss_exp) / loss_exp."""


@dataclass
class OptimConfig:
    """AdamW with the reference's warmup-constant-decay learning-rate schedule."""

    total_steps: int = 94_500
    warmup_steps: int = 4_500
    anneal_steps: int = 4_500
    start_lr: float = 7.5e-5
    lr: float = 4.25e-4
    final_lr: float = 0.0
    weight_decay: float = 0.04
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    grad_accum_steps: int = 1
    """Micro-batches per optimizer step (effective batch = batch_size x ranks x grad_accum_steps)."""
    clip_grad_norm: float | None = None
    """The reference does not clip; set a value to clip the global gradient norm."""


@dataclass
class RunConfig:
    """Bookkeeping: output folder, seed, precision, logging, validation and checkpoint cadence."""

    output_dir: str = "runs/ac_predictor"
    seed: int = 239
    device: str = "auto"
    """"auto" (CUDA when present), "cpu", "cuda" or "cuda:N"."""
    dtype: str = "bfloat16"
    """Autocast dtype on CUDA ("bfloat16" or "float32"); CPU always trains in float32."""
    log_every: int = 1
    val_every: int = 500
    val_batches: int = 8
    val_rollout_steps: int | None = None
    """Horizon of the validation rollout (default: frames_per_clip - 1)."""
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    """Numbered checkpoints kept besides latest.pt (0 keeps only latest.pt)."""
    resume: bool = True
    """Continue from output_dir/latest.pt when it exists."""
    tensorboard: bool = True
    """Also log to TensorBoard when the `tensorboard` package is installed."""


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def validate(self) -> None:
        """Reject settings that cannot work, naming the offending key."""
        d, lo, o, r = self.data, self.loss, self.optim, self.run
        if d.source not in ("cache", "raw"):
            raise ValueError(f"data.source must be 'cache' or 'raw', got {d.source!r}")
        if d.source == "cache" and not d.cache:
            raise ValueError("data.source is 'cache' but data.cache (the latent cache folder) is not set")
        if d.source == "raw" and not d.episodes:
            raise ValueError("data.source is 'raw' but data.episodes (index file or folders) is not set")
        if d.crop not in ("droid", "square", "none"):
            raise ValueError(f"data.crop must be 'droid', 'square' or 'none', got {d.crop!r}")
        if d.frames_per_clip < 2:
            raise ValueError(f"data.frames_per_clip must be >= 2, got {d.frames_per_clip}")
        if not 1 <= lo.rollout_steps < d.frames_per_clip:
            raise ValueError(
                f"loss.rollout_steps={lo.rollout_steps} needs 1 <= rollout_steps < data.frames_per_clip="
                f"{d.frames_per_clip} (the rollout is scored against ground-truth frames 1..rollout_steps)"
            )
        if lo.loss_exp <= 0:
            raise ValueError(f"loss.loss_exp must be > 0, got {lo.loss_exp}")
        for name in ("batch_size", "fps"):
            if getattr(d, name) <= 0:
                raise ValueError(f"data.{name} must be > 0, got {getattr(d, name)}")
        if not 0.0 <= d.val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be in [0, 1), got {d.val_fraction}")
        if o.total_steps < 1 or o.grad_accum_steps < 1:
            raise ValueError("optim.total_steps and optim.grad_accum_steps must be >= 1")
        if o.warmup_steps < 0 or o.anneal_steps < 0 or o.warmup_steps + o.anneal_steps > o.total_steps:
            raise ValueError(
                f"optim.warmup_steps ({o.warmup_steps}) + optim.anneal_steps ({o.anneal_steps}) must fit in "
                f"optim.total_steps ({o.total_steps})"
            )
        if r.dtype not in ("bfloat16", "float32"):
            raise ValueError(f"run.dtype must be 'bfloat16' or 'float32', got {r.dtype!r}")
        for name in ("log_every", "val_every", "checkpoint_every"):
            if getattr(r, name) < 1:
                raise ValueError(f"run.{name} must be >= 1, got {getattr(r, name)}")
        if r.val_rollout_steps is not None and not 1 <= r.val_rollout_steps < d.frames_per_clip:
            raise ValueError(f"run.val_rollout_steps must be in [1, frames_per_clip), got {r.val_rollout_steps}")

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML config (or start from the defaults when `path` is None), apply overrides, validate."""
    config = load(TrainConfig, path, overrides)
    try:
        config.validate()
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}" if path is not None else str(exc)) from None
    return config
