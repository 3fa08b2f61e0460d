"""The settings of a `vjepa-ac pretrain` run (`PretrainConfig`) and the value types they hold (mask generators, the
context-loss schedule), in a module without torch: `vjepa-ac pretrain --help` lists the defaults, and a YAML file
plus dotted overrides fill them (`data.config`, the style of every command). The run itself is `pretrain.py`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from vjepa_ac.worldmodel.mask_predictor_config import MaskPredictorConfig

from .config import OptimConfig


@dataclass(frozen=True)
class BlockMaskSpec:
    """One mask generator: `num_blocks` blocks, each `spatial_scale` of a frame's tokens."""

    spatial_scale: float = 0.15
    num_blocks: int = 8
    aspect_ratio: tuple[float, float] = (0.75, 1.5)
    temporal_scale: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.spatial_scale <= 1.0:
            raise ValueError(f"spatial_scale must be in (0, 1], got {self.spatial_scale}")
        if self.num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {self.num_blocks}")
        low, high = self.aspect_ratio
        if not 0.0 < low <= high:
            raise ValueError(f"aspect_ratio must be (low, high) with 0 < low <= high, got {self.aspect_ratio}")
        if not 0.0 < self.temporal_scale <= 1.0:
            raise ValueError(f"temporal_scale must be in (0, 1], got {self.temporal_scale}")


DEFAULT_MASK_SPECS: tuple[BlockMaskSpec, ...] = (
    BlockMaskSpec(spatial_scale=0.15, num_blocks=8),
    BlockMaskSpec(spatial_scale=0.7, num_blocks=2),
)


IMAGE_MASK_SPECS: tuple[BlockMaskSpec, ...] = (BlockMaskSpec(spatial_scale=0.15, num_blocks=10),)
"""V-JEPA 2.1's `img_mask`: 10 blocks of 15% on single frames (aspect ratio 0.75-1.5)."""


@dataclass(frozen=True)
class ContextLambda:
    """Meta's `Lambda_LinearWarmupHold`: 0 before step `start`, linear to `value` at step `end`, then `value`.

    Steps are 0-based optimizer steps (Meta's global iteration epoch * ipe + itr). `start == end` is a constant weight
    (the cooldown's `lambda_progressive: false`).
    """

    value: float
    start: int
    end: int

    def __post_init__(self) -> None:
        if self.value < 0 or not 0 <= self.start <= self.end:
            raise ValueError(f"need value >= 0 and 0 <= start <= end, got {self.value}, {self.start}, {self.end}")

    def at(self, step: int) -> float:
        if step >= self.end:
            return self.value
        if step < self.start:
            return 0.0
        return self.value * (step - self.start) / (self.end - self.start)


Objective = Literal["vjepa2", "vjepa2_1"]
OBJECTIVES: tuple[str, ...] = ("vjepa2", "vjepa2_1")
DEFAULT_PRESETS = {"vjepa2": "vit_tiny", "vjepa2_1": "vjepa2_1_vit_tiny"}
"""Encoder preset per objective when none is given: 2.1 needs the image tokenizer and four output levels."""


def _pretrain_optim() -> OptimConfig:
    return OptimConfig(total_steps=3000, warmup_steps=150, anneal_steps=600, start_lr=1e-4, lr=5e-4,
                       final_lr=1e-5, weight_decay=0.04)


@dataclass
class PretrainConfig:
    """A pretraining run. The defaults pretrain `vit_tiny` at 128 px with the V-JEPA 2 objective on one CPU core in
    about ten minutes; `objective="vjepa2_1"` switches to V-JEPA 2.1 (see the module docstring)."""

    output_dir: str = "runs/pretrain"
    objective: Objective = "vjepa2"
    """"vjepa2": masked prediction on single frames. "vjepa2_1": images + video clips, dense (context) loss, and with
    `deep_supervision` the four hierarchical levels."""
    deep_supervision: bool = True
    """vjepa2_1 only: predict all four levels of the target encoder (§2); False = last level only (the ablation)."""
    init: str | None = None
    """Encoder checkpoint to start from (its target/EMA encoder); None builds `preset` at `img_size` from `seed`."""
    preset: str | None = None
    """Encoder architecture without `init`; None = vit_tiny (vjepa2) or vjepa2_1_vit_tiny (vjepa2_1)."""
    img_size: int = 128
    seed: int = 0
    """Seeds the initial weights (without `init`), frame sampling and masks."""
    camera: str = "left"
    crop: str | None = "droid"
    """Crop before resizing, as `worldmodel.preprocess_frames` ("droid", "square" or None; "none" is read as None)."""
    frame_stride: int = 3
    """Keep every n-th video frame (consecutive 15 Hz frames are nearly identical); clips are consecutive kept
    frames, i.e. 5 fps at the default (Meta samples video at 4 fps)."""
    batch_size: int = 32
    """Single frames per step (vjepa2: frames; vjepa2_1: the image batch)."""
    clip_batch_size: int = 16
    """vjepa2_1: video clips per step. Meta's pretraining configs draw 1.5 images per clip; either way the two
    modalities' losses weigh 1:1 (§4)."""
    clip_frames: int = 4
    """vjepa2_1: frames per clip, a multiple of the encoder's tubelet (4 frames = 2 token-frames)."""
    optim: OptimConfig = field(default_factory=_pretrain_optim)
    """AdamW and the warmup-stable-decay schedule; `optim.total_steps` is the run length."""
    ema: tuple[float, float] = (0.99, 0.999)
    """Target-encoder EMA momentum, ramped linearly from the first to the second value over the run (Meta: `ema`)."""
    predictor: MaskPredictorConfig = field(default_factory=MaskPredictorConfig)
    """`embed_dim`, `num_mask_tokens`, levels, heads and the RoPE layout follow the encoder and the objective; a
    resumed run keeps the architecture saved in its checkpoint."""
    mask_specs: tuple[BlockMaskSpec, ...] = DEFAULT_MASK_SPECS
    """Mask generators of vjepa2 frames and of vjepa2_1 clips (8 x 15% and 2 x 70%, full-length tubes)."""
    image_mask_specs: tuple[BlockMaskSpec, ...] = IMAGE_MASK_SPECS
    """vjepa2_1: mask generators of the image batch (10 x 15%)."""
    context_lambda: tuple[float, float] = (0.5, 0.5)
    """vjepa2_1: weight of the context loss for (images, video); Meta's configs: 0.5 / 0.5 (§1). 0 turns it off."""
    context_lambda_ramp: tuple[int, int] = (150, 300)
    """vjepa2_1: lambda is 0 before the first step, rises linearly to `context_lambda` at the second, then holds
    (Meta: 15k-30k of 300k steps; here the same 5%-10% of the default 3000). Equal values = constant lambda."""
    distance_weighting: bool = True
    """vjepa2_1: weight each context token's error by 1/sqrt(distance to the nearest masked token) (§1)."""
    checkpoint_every: int = 500
    log_every: int = 10
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if min(self.frame_stride, self.batch_size, self.clip_batch_size, self.clip_frames) < 1:
            raise ValueError("frame_stride, batch_size, clip_batch_size and clip_frames must be >= 1")
        if not 0.0 <= self.ema[0] <= self.ema[1] <= 1.0:
            raise ValueError(f"ema must be (start, end) with 0 <= start <= end <= 1, got {self.ema}")
        if self.checkpoint_every < 1 or self.log_every < 1:
            raise ValueError("checkpoint_every and log_every must be >= 1")
        if not self.mask_specs or not self.image_mask_specs:
            raise ValueError("mask_specs and image_mask_specs must name at least one mask generator")
        if self.crop not in ("droid", "square", "none", None):
            raise ValueError(f"crop must be 'droid', 'square' or None, got {self.crop!r}")
        if self.crop == "none":  # the command line's spelling of no crop
            self.crop = None
        for value in self.context_lambda:
            ContextLambda(value, *self.context_lambda_ramp)  # validates both

    @property
    def encoder_preset(self) -> str:
        return self.preset or DEFAULT_PRESETS[self.objective]

    def context_schedules(self) -> dict[str, ContextLambda]:
        """The lambda schedule of each modality."""
        image, video = self.context_lambda
        return {"image": ContextLambda(image, *self.context_lambda_ramp),
                "video": ContextLambda(video, *self.context_lambda_ramp)}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
