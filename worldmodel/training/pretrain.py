"""V-JEPA self-supervised pretraining of a (small) encoder on DROID-layout video, e.g. `vjepa-ac sim collect` output.

Recipe (Meta's `app/vjepa/train.py`, reduced to single frames): a context encoder sees only the context tokens of a
multi-block mask; the `MaskPredictor` fills in the masked tokens; the loss is the L1 distance to the layer-normed
features of an EMA target encoder that sees the whole frame. Frames are prepared exactly as at planning time (crop,
resize, ImageNet normalisation, each frame duplicated to fill one tubelet), so the encoder is trained on the inputs it
will later encode.

Output folder: `latest.pt` in Meta's pretraining layout (`encoder`, `target_encoder`, `predictor` with the
`module.backbone.` prefix, `opt`, `epoch`) plus the architecture under `worldmodel.CONFIG_KEY`, so
`worldmodel.load_encoder(latest.pt)` and `vjepa-ac encode --encoder-checkpoint latest.pt` take the target encoder;
`train.jsonl` / `train.csv` hold loss, learning rate, EMA momentum and collapse signals. A run resumes from
`latest.pt` when it exists and continues at the saved step with the saved random state.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from data.droid import EpisodeError, open_episode
from worldmodel import (
    CONFIG_KEY,
    VisionTransformer,
    build_encoder,
    load_encoder,
    normalize_reps,
    preprocess_frames,
)
from worldmodel.checkpoints import atomic_torch_save, encoder_from_checkpoint
from worldmodel.frames import Crop, crop_box, device_autocast
from worldmodel.mask_predictor import MaskPredictor, MaskPredictorConfig

from .config import OptimConfig
from .distributed import resolve_device
from .masks import DEFAULT_MASK_SPECS, BlockMaskSpec, sample_block_masks
from .metrics import MetricsLogger
from .optim import WSDSchedule, build_optimizer

log = logging.getLogger(__name__)

LATEST = "latest.pt"
PRETRAIN_KEY = "vjepa_ac_pretrain"
"""Checkpoint entry with what a resume needs beyond Meta's keys: step, run config, predictor config, RNG state."""
_PREFIX = "module.backbone."  # Meta's DDP(MultiSeqWrapper(...)) key prefix, for encoders and predictor alike


def _pretrain_optim() -> OptimConfig:
    return OptimConfig(total_steps=3000, warmup_steps=150, anneal_steps=600, start_lr=1e-4, lr=5e-4,
                       final_lr=1e-5, weight_decay=0.04)


@dataclass
class PretrainConfig:
    """A pretraining run. The defaults pretrain `vit_tiny` at 128 px on one CPU core in about ten minutes."""

    output_dir: str = "runs/pretrain"
    init: str | None = None
    """Encoder checkpoint to start from (its target/EMA encoder); None builds `preset` at `img_size` from `seed`."""
    preset: str = "vit_tiny"
    img_size: int = 128
    seed: int = 0
    """Seeds the initial weights (without `init`), frame sampling and masks."""
    camera: str = "left"
    crop: str | None = "droid"
    """Crop before resizing, as `worldmodel.preprocess_frames` ("droid", "square" or None)."""
    frame_stride: int = 3
    """Keep every n-th video frame (consecutive 15 Hz frames are nearly identical)."""
    batch_size: int = 32
    optim: OptimConfig = field(default_factory=_pretrain_optim)
    """AdamW and the warmup-stable-decay schedule; `optim.total_steps` is the run length."""
    ema: tuple[float, float] = (0.99, 0.999)
    """Target-encoder EMA momentum, ramped linearly from the first to the second value over the run (Meta: `ema`)."""
    predictor: MaskPredictorConfig = field(default_factory=MaskPredictorConfig)
    """`embed_dim`, `num_mask_tokens` and the RoPE layout follow the encoder and `mask_specs`; a resumed run keeps
    the architecture saved in its checkpoint."""
    mask_specs: tuple[BlockMaskSpec, ...] = DEFAULT_MASK_SPECS
    checkpoint_every: int = 500
    log_every: int = 10
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.frame_stride < 1 or self.batch_size < 1:
            raise ValueError(f"frame_stride and batch_size must be >= 1, got {self.frame_stride}, {self.batch_size}")
        if not 0.0 <= self.ema[0] <= self.ema[1] <= 1.0:
            raise ValueError(f"ema must be (start, end) with 0 <= start <= end <= 1, got {self.ema}")
        if self.checkpoint_every < 1 or self.log_every < 1:
            raise ValueError("checkpoint_every and log_every must be >= 1")
        if not self.mask_specs:
            raise ValueError("mask_specs must name at least one mask generator")
        if self.crop not in ("droid", "square", "none", None):
            raise ValueError(f"crop must be 'droid', 'square' or None, got {self.crop!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------------- data
def resize_frames(frames: np.ndarray, img_size: tuple[int, int], crop: Crop = "droid") -> np.ndarray:
    """uint8 frames [K, H, W, 3] -> uint8 [K, h, w, 3] cropped and resized as `preprocess_frames` does (bilinear,
    align_corners=False), rounded back to uint8 so that a large frame bank fits in memory."""
    top, left, crop_h, crop_w = crop_box(frames.shape[1], frames.shape[2], crop)
    x = torch.from_numpy(np.ascontiguousarray(frames[:, top : top + crop_h, left : left + crop_w]))
    x = x.permute(0, 3, 1, 2).float()
    if (crop_h, crop_w) != tuple(img_size):
        x = F.interpolate(x, size=tuple(img_size), mode="bilinear", align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def load_frame_bank(references: Sequence[str], *, img_size: tuple[int, int], camera: str = "left",
                    crop: Crop = "droid", frame_stride: int = 3, progress: bool = True) -> np.ndarray:
    """Decode every `frame_stride`-th frame of `camera` from each episode once -> uint8 [N, h, w, 3] at the encoder
    resolution. Unreadable episodes are reported and skipped; none readable is an error."""
    chunks: list[np.ndarray] = []
    failed = 0
    for reference in tqdm(references, desc="decoding frames", unit="episode", disable=not progress):
        try:
            with open_episode(reference) as episode:
                indices = list(range(0, episode.usable_steps(camera), frame_stride))
                if indices:
                    chunks.append(resize_frames(episode.read_frames(camera, indices), img_size, crop))
        except (EpisodeError, OSError, ValueError) as exc:
            failed += 1
            log.warning("skipping %s: %s", reference, exc)
    if not chunks:
        raise ValueError(f"no frames of camera {camera!r} could be read from {len(references)} episode(s)")
    if failed:
        log.warning("%d of %d episodes could not be read", failed, len(references))
    return np.concatenate(chunks)


def frames_to_clips(frames: Tensor, encoder: VisionTransformer) -> Tensor:
    """Normalised pixels [B, 3, h, w] -> encoder input [B, 3, T, h, w] as `encode_frames` builds it: the V-JEPA 2.1
    image tokenizer takes one frame, V-JEPA 2 gets the frame duplicated to fill one tubelet."""
    config = encoder.config
    frames_per_clip = 1 if config.img_temporal_dim_size == 1 else config.tubelet_size
    return frames.unsqueeze(2).expand(-1, -1, frames_per_clip, -1, -1)


# ---------------------------------------------------------------------------------------------------- math
@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target <- momentum * target + (1 - momentum) * online, parameter by parameter."""
    target_params = list(target.parameters())
    online_params = list(online.parameters())
    if len(target_params) != len(online_params):
        raise ValueError("target and online modules have different parameter lists")
    torch._foreach_mul_(target_params, momentum)
    torch._foreach_add_(target_params, online_params, alpha=1.0 - momentum)


def ema_momentum(step: int, total_steps: int, ema: tuple[float, float]) -> float:
    """Momentum used after optimizer step `step` (1-based): linear from ema[0] to ema[1] over the run."""
    return ema[0] + (ema[1] - ema[0]) * min(1.0, step / max(1, total_steps))


def _gather_tokens(features: Tensor, indices: Tensor) -> Tensor:
    return torch.gather(features, 1, indices.unsqueeze(-1).expand(-1, -1, features.shape[-1]))


# ---------------------------------------------------------------------------------------------------- checkpoints
def _prefixed(module: nn.Module) -> dict[str, Tensor]:
    return {f"{_PREFIX}{k}": v.detach().cpu().clone() for k, v in module.state_dict().items()}


def _unprefixed(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k.removeprefix(_PREFIX): v for k, v in state.items()}


@dataclass
class _Run:
    """Everything a step changes: the three networks, the optimizer state and the RNG."""

    encoder: VisionTransformer
    target_encoder: VisionTransformer
    predictor: MaskPredictor
    optimizer: torch.optim.Optimizer
    schedule: WSDSchedule
    generator: torch.Generator
    step: int = 0


def _initial_encoder(config: PretrainConfig) -> VisionTransformer:
    if config.init:
        encoder = load_encoder(config.init)
    else:
        torch.manual_seed(config.seed)
        encoder = build_encoder(config.preset, img_size=(config.img_size, config.img_size))
    return encoder


def _build_run(config: PretrainConfig, device: torch.device, resume: dict[str, Any] | None) -> _Run:
    if resume is not None:
        encoder, _ = encoder_from_checkpoint(resume, source="resume", checkpoint_key="encoder")
    else:
        encoder = _initial_encoder(config)
    if resume is not None:  # the saved architecture wins over this run's predictor options
        predictor_config = MaskPredictorConfig(**resume[PRETRAIN_KEY]["predictor"])
        if predictor_config.num_mask_tokens != len(config.mask_specs):
            raise ValueError(f"the checkpoint was trained with {predictor_config.num_mask_tokens} mask generators, "
                             f"this run has {len(config.mask_specs)}")
    else:
        predictor_config = dataclasses.replace(config.predictor, embed_dim=encoder.embed_dim,
                                               num_mask_tokens=len(config.mask_specs),
                                               rope_interleaved=encoder.config.rope_interleaved)
    predictor = MaskPredictor(predictor_config)
    target = copy.deepcopy(encoder)
    if resume is not None:
        target.load_state_dict(_unprefixed(resume["target_encoder"]))
        predictor.load_state_dict(_unprefixed(resume["predictor"]))
    for module in (encoder, target, predictor):
        module.to(device)
    encoder.train().requires_grad_(True)
    predictor.train()
    target.eval().requires_grad_(False)
    optimizer = build_optimizer(nn.ModuleDict({"encoder": encoder, "predictor": predictor}), config.optim)
    schedule = WSDSchedule(optimizer, config.optim)
    generator = torch.Generator().manual_seed(config.seed)
    run = _Run(encoder, target, predictor, optimizer, schedule, generator)
    if resume is not None:
        optimizer.load_state_dict(resume["opt"])
        extra = resume[PRETRAIN_KEY]
        run.step = int(extra["step"])
        schedule.steps_done = run.step
        generator.set_state(extra["generator"])
    return run


def _save(run: _Run, config: PretrainConfig, path: Path, *, frames: int, loss: float) -> Path:
    return atomic_torch_save({
        "encoder": _prefixed(run.encoder),
        "target_encoder": _prefixed(run.target_encoder),
        "predictor": _prefixed(run.predictor),
        "opt": run.optimizer.state_dict(),
        "epoch": run.step * config.batch_size // max(1, frames),
        "loss": loss,
        "batch_size": config.batch_size,
        "lr": run.optimizer.param_groups[0]["lr"],
        CONFIG_KEY: {"encoder": run.target_encoder.config.to_dict()},
        PRETRAIN_KEY: {"step": run.step, "config": config.to_dict(), "predictor": run.predictor.config.to_dict(),
                       "generator": run.generator.get_state(), "frames": frames},
    }, path)


# ---------------------------------------------------------------------------------------------------- loop
def _train_step(run: _Run, config: PretrainConfig, bank: Tensor, device: torch.device) -> dict[str, float]:
    encoder = run.encoder
    patch = encoder.config.patch_size
    grid = (1, bank.shape[1] // patch, bank.shape[2] // patch)
    picks = torch.randint(bank.shape[0], (config.batch_size,), generator=run.generator)
    pixels = preprocess_frames(bank[picks].to(device), encoder.config.img_size, crop=None)
    clips = frames_to_clips(pixels, encoder)
    lr = run.schedule.step()
    with device_autocast(device):
        with torch.no_grad():
            targets = normalize_reps(run.target_encoder(clips).float())
        losses = []
        for mask_index, spec in enumerate(config.mask_specs):
            context_idx, target_idx = (m.to(device) for m in
                                       sample_block_masks(grid, config.batch_size, spec, run.generator))
            context = encoder(clips, masks=context_idx)
            predicted = run.predictor(context, context_idx, target_idx, grid, mask_index=mask_index)
            losses.append((predicted.float() - _gather_tokens(targets, target_idx)).abs().mean())
        loss = torch.stack(losses).mean()
    if not torch.isfinite(loss):
        raise FloatingPointError(f"pretraining loss became {loss.item()} at step {run.step + 1}; lower optim.lr")
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.optim.clip_grad_norm is not None:
        nn.utils.clip_grad_norm_([p for g in run.optimizer.param_groups for p in g["params"]],
                                 config.optim.clip_grad_norm)
    run.optimizer.step()
    run.step += 1
    momentum = ema_momentum(run.step, config.optim.total_steps, config.ema)
    ema_update(run.target_encoder, encoder, momentum)
    return {
        "loss": loss.item(),
        "lr": lr,
        "ema_momentum": momentum,
        # Collapse signal: per-channel spread of the target features over tokens; it falls towards 0 on collapse.
        "target_std": targets.flatten(0, 1).std(dim=0).mean().item(),
        "prediction_std": predicted.detach().float().flatten(0, 1).std(dim=0).mean().item(),
    }


def pretrain_encoder(references: Sequence[str], config: PretrainConfig | None = None, *,
                     progress: bool = True) -> Path:
    """Pretrain an encoder on the frames of `references` (DROID episode folders, index entries or RLDS references);
    resumes from `config.output_dir/latest.pt` when present. Returns the path of the final checkpoint."""
    config = config or PretrainConfig()
    output = Path(config.output_dir)
    latest = output / LATEST
    device = resolve_device(config.device)
    # Read fully rather than memory-mapped: the loaded tensors become the trained parameters and optimizer state.
    resume = torch.load(latest, map_location="cpu", weights_only=True) if latest.is_file() else None
    if resume is not None and not isinstance(resume, dict):
        raise ValueError(f"{latest}: expected a checkpoint dict, found {type(resume).__name__}")
    if resume is not None and PRETRAIN_KEY not in resume:
        raise ValueError(f"{latest} is not a pretraining checkpoint (no {PRETRAIN_KEY!r} entry); use another "
                         f"output_dir")
    run = _build_run(config, device, resume)
    img_size = run.encoder.config.img_size
    if any(side % run.encoder.config.patch_size for side in img_size):
        raise ValueError(f"encoder resolution {img_size} is not a multiple of its patch size")
    metrics = MetricsLogger(output, tensorboard=False)
    metrics.truncate_after(run.step)
    if run.step >= config.optim.total_steps:
        log.info("%s is already at step %d of %d", latest, run.step, config.optim.total_steps)
        return latest
    crop = None if config.crop in (None, "none") else config.crop
    bank = torch.from_numpy(load_frame_bank(references, img_size=img_size, camera=config.camera, crop=crop,
                                            frame_stride=config.frame_stride, progress=progress))
    log.info("pretraining on %d frames from %d episode(s)", bank.shape[0], len(references))
    bar = tqdm(total=config.optim.total_steps, initial=run.step, desc="pretrain", unit="step", disable=not progress)
    try:
        while run.step < config.optim.total_steps:
            values = _train_step(run, config, bank, device)
            bar.update(1)
            if run.step % config.log_every == 0 or run.step == config.optim.total_steps:
                metrics.log("train", run.step, values)
                bar.set_postfix(loss=f"{values['loss']:.4f}", target_std=f"{values['target_std']:.3f}")
            if run.step % config.checkpoint_every == 0 or run.step == config.optim.total_steps:
                _save(run, config, latest, frames=bank.shape[0], loss=values["loss"])
    finally:
        bar.close()
        metrics.close()
    return latest
