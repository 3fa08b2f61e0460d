"""V-JEPA self-supervised pretraining of a (small) encoder on DROID-layout video, e.g. `vjepa-ac sim collect` output.

Two objectives, chosen by `PretrainConfig.objective` (section numbers: `vjepa2_1_pretraining.md`):

* `vjepa2` (Meta's `app/vjepa/train.py`, reduced to single frames): a context encoder sees only the context tokens
  of a multi-block mask; the `MaskPredictor` fills in the masked tokens; the loss is the L1 distance to the
  layer-normed features of an EMA target encoder that sees the whole frame. Frames are duplicated to fill a tubelet.
* `vjepa2_1` (Meta's `app/vjepa_2_1/train.py`): every step has an image batch (single frames through the tubelet-1
  image tokenizer, 10 blocks of 15%) and a video batch (`clip_frames` consecutive frames through the tubelet-2 video
  tokenizer, two space-time mask sets), weighted 1:1 (§3, §4); the predictor also predicts the context tokens
  (dense loss, weighted by distance to the nearest masked token and a warm-up/hold lambda per modality, §1) and,
  with `deep_supervision`, all four hierarchical levels of the target encoder, each layer-normed on its own (§2).
  `deep_supervision=False` is the "dense loss without deep supervision" ablation: last level only.

Frames are prepared exactly as at planning time (crop, resize, ImageNet normalisation), so the encoder is trained on
the inputs it will later encode.

Output folder: `latest.pt` in Meta's pretraining layout (`encoder`, `target_encoder`, `predictor` with the
`module.backbone.` prefix, `opt`, `epoch`; a 2.1 run also `ema_encoder`, the same tensors as `target_encoder`, as the
2.1 releases name it) plus the architecture under `worldmodel.CONFIG_KEY`, so `worldmodel.load_encoder(latest.pt)`
and `vjepa-ac encode --encoder-checkpoint latest.pt` take the target encoder; `train.jsonl` / `train.csv` hold the
losses, learning rate, EMA momentum, lambda and collapse monitors. A run resumes from `latest.pt` when it exists and
continues at the saved step with the saved random state. Under torchrun every rank takes an equal slice of the same
global batch and DDP averages the gradients, so N ranks train like one process with N times the batch.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from vjepa_ac.data.droid import EpisodeError, open_episode
from vjepa_ac.worldmodel import (
    CONFIG_KEY,
    VisionTransformer,
    build_encoder,
    load_encoder,
    normalize_reps,
    preprocess_frames,
)
from vjepa_ac.worldmodel.checkpoints import atomic_torch_save, encoder_from_checkpoint
from vjepa_ac.worldmodel.frames import Crop, crop_box
from vjepa_ac.worldmodel.precision import autocast
from vjepa_ac.worldmodel.mask_predictor import MaskPredictor, MaskPredictorConfig

from . import distributed
from .distributed import DistInfo
from .masks import nearest_target_distance, sample_block_masks
from .metrics import MetricsLogger
from .objective import (
    MaskSet,
    ModalityBatch,
    PretrainObjective,
    context_weights,
)
from .optim import WSDSchedule, build_optimizer
from .pretrain_config import BlockMaskSpec, PretrainConfig

log = logging.getLogger(__name__)

LATEST = "latest.pt"
PRETRAIN_KEY = "vjepa_ac_pretrain"
"""Checkpoint entry with what a resume needs beyond Meta's keys: step, run config, predictor config, RNG state."""
_PREFIX = "module.backbone."  # Meta's DDP(MultiSeqWrapper(...)) key prefix, for encoders and predictor alike
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


@dataclass
class FrameBank:
    """Decoded frames of all episodes, uint8 [N, h, w, 3] at the encoder resolution, episode after episode;
    `episode_lengths` says where each episode's frames end, so that clips never straddle two episodes."""

    frames: np.ndarray
    episode_lengths: np.ndarray

    def __len__(self) -> int:
        return len(self.frames)

    def clip_starts(self, clip_frames: int) -> np.ndarray:
        """Indices i such that frames i .. i + clip_frames - 1 all belong to one episode."""
        ends = np.cumsum(self.episode_lengths)
        starts = [np.arange(end - length, end - clip_frames + 1) for end, length in zip(ends, self.episode_lengths)
                  if length >= clip_frames]
        return np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)


def load_frame_bank(references: Sequence[str], *, img_size: tuple[int, int], camera: str = "left",
                    crop: Crop = "droid", frame_stride: int = 3, progress: bool = True) -> FrameBank:
    """Decode every `frame_stride`-th frame of `camera` from each episode once, resized to the encoder resolution.
    Unreadable episodes are reported and skipped; none readable is an error."""
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
    return FrameBank(np.concatenate(chunks), np.array([len(chunk) for chunk in chunks], dtype=np.int64))


def frames_to_clips(frames: Tensor, encoder: VisionTransformer) -> Tensor:
    """Normalised pixels [B, 3, h, w] -> encoder input [B, 3, T, h, w] as `encode_frames` builds it: the V-JEPA 2.1
    image tokenizer takes one frame, V-JEPA 2 gets the frame duplicated to fill one tubelet."""
    config = encoder.config
    frames_per_clip = 1 if config.img_temporal_dim_size == 1 else config.tubelet_size
    return frames.unsqueeze(2).expand(-1, -1, frames_per_clip, -1, -1)


def bank_clips(frames: Tensor, starts: Tensor, clip_frames: int, img_size: tuple[int, int]) -> Tensor:
    """Clips of `clip_frames` consecutive bank frames from each start index -> normalised [B, 3, T, h, w]."""
    index = starts.unsqueeze(1) + torch.arange(clip_frames)
    pixels = preprocess_frames(frames[index.flatten()], img_size, crop=None)
    return pixels.unflatten(0, (len(starts), clip_frames)).transpose(1, 2)


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


# ---------------------------------------------------------------------------------------------------- checkpoints
def _prefixed(module: nn.Module) -> dict[str, Tensor]:
    return {f"{_PREFIX}{k}": v.detach().cpu().clone() for k, v in module.state_dict().items()}


def _unprefixed(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k.removeprefix(_PREFIX): v for k, v in state.items()}


@dataclass
class PretrainRun:
    """Everything a step changes: the networks, the optimizer state and the RNG (`build_run` makes one, `train_step`
    advances it). `model` is the loss module, wrapped in DDP under torchrun."""

    encoder: VisionTransformer
    target_encoder: VisionTransformer
    predictor: MaskPredictor
    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: WSDSchedule
    generator: torch.Generator
    dist: DistInfo
    step: int = 0


def _initial_encoder(config: PretrainConfig) -> VisionTransformer:
    if config.init:
        encoder = load_encoder(config.init)
    else:
        torch.manual_seed(config.seed)
        encoder = build_encoder(config.encoder_preset, img_size=(config.img_size, config.img_size))
    return encoder


def _check_encoder_fits(encoder: VisionTransformer, config: PretrainConfig) -> None:
    c = encoder.config
    if config.objective != "vjepa2_1":
        return
    if not (c.is_v2_1 and c.img_temporal_dim_size == 1 and c.modality_embedding):
        raise ValueError("the vjepa2_1 objective needs a V-JEPA 2.1 encoder (image tokenizer, modality embeddings, "
                         "hierarchical output norms), e.g. preset vjepa2_1_vit_tiny; this one is "
                         f"{'V-JEPA 2.1 without them' if c.is_v2_1 else 'V-JEPA 2'}")
    if config.clip_frames % c.tubelet_size:
        raise ValueError(f"clip_frames {config.clip_frames} is not a multiple of the tubelet size {c.tubelet_size}")


def _check_resume_matches(saved: dict[str, Any], config: PretrainConfig, source: Path) -> None:
    for name, default in (("objective", "vjepa2"), ("deep_supervision", True)):
        if saved.get(name, default) != getattr(config, name):
            raise ValueError(f"{source} was trained with {name}={saved.get(name, default)!r}, this run asks for "
                             f"{getattr(config, name)!r}; use another output_dir or the same setting")


def _predictor_config(config: PretrainConfig, encoder: VisionTransformer) -> MaskPredictorConfig:
    shared = {"embed_dim": encoder.embed_dim, "rope_interleaved": encoder.config.rope_interleaved}
    if config.objective == "vjepa2_1":
        # One mask token for every mask set: Meta's 2.1 wrapper indexes mask tokens by fpc group, of which
        # single-length batches have one (§6).
        levels = encoder.config.num_levels if config.deep_supervision else 1
        return dataclasses.replace(config.predictor, **shared, num_mask_tokens=1, num_levels=levels,
                                   predict_context=True, modality_embedding=True)
    return dataclasses.replace(config.predictor, **shared, num_mask_tokens=len(config.mask_specs), num_levels=1,
                               predict_context=False, modality_embedding=False)


def build_run(config: PretrainConfig, dist: DistInfo, resume: dict[str, Any] | None, source: Path) -> PretrainRun:
    """Networks, optimizer and RNG of a run: fresh from `config`, or restored from `resume` (a checkpoint dict read
    from `source`) with the architecture and step saved in it."""
    if resume is not None:
        _check_resume_matches(resume[PRETRAIN_KEY]["config"], config, source)
        encoder, _ = encoder_from_checkpoint(resume, source="resume", checkpoint_key="encoder")
    else:
        encoder = _initial_encoder(config)
    _check_encoder_fits(encoder, config)
    if resume is not None:  # the saved architecture wins over this run's predictor options
        predictor_config = MaskPredictorConfig(**resume[PRETRAIN_KEY]["predictor"])
        if config.objective == "vjepa2" and predictor_config.num_mask_tokens != len(config.mask_specs):
            raise ValueError(f"the checkpoint was trained with {predictor_config.num_mask_tokens} mask generators, "
                             f"this run has {len(config.mask_specs)}")
    else:
        predictor_config = _predictor_config(config, encoder)
    predictor = MaskPredictor(predictor_config)
    target = copy.deepcopy(encoder)
    if resume is not None:
        target.load_state_dict(_unprefixed(resume["target_encoder"]))
        predictor.load_state_dict(_unprefixed(resume["predictor"]))
    for module in (encoder, target, predictor):
        module.to(dist.device)
    encoder.train().requires_grad_(True)
    predictor.train()
    target.eval().requires_grad_(False)
    hierarchical = predictor_config.num_levels > 1
    model: nn.Module = PretrainObjective(encoder, predictor, hierarchical=hierarchical)
    if dist.is_distributed:
        # A 2.1 encoder trained without all its levels (or on frames only) leaves some output norms unused.
        unused = encoder.config.is_v2_1 and not hierarchical
        model = DistributedDataParallel(model, device_ids=[dist.device] if dist.device.type == "cuda" else None,
                                        find_unused_parameters=unused)
    optimizer = build_optimizer(nn.ModuleDict({"encoder": encoder, "predictor": predictor}), config.optim)
    schedule = WSDSchedule(optimizer, config.optim)
    generator = torch.Generator().manual_seed(config.seed)
    run = PretrainRun(encoder, target, predictor, model, optimizer, schedule, generator, dist)
    if resume is not None:
        optimizer.load_state_dict(resume["opt"])
        extra = resume[PRETRAIN_KEY]
        run.step = int(extra["step"])
        schedule.steps_done = run.step
        generator.set_state(extra["generator"])
    return run


def _save(run: PretrainRun, config: PretrainConfig, path: Path, *, frames: int, loss: float) -> Path:
    target = _prefixed(run.target_encoder)
    payload: dict[str, Any] = {
        "encoder": _prefixed(run.encoder),
        "target_encoder": target,
        "predictor": _prefixed(run.predictor),
        "opt": run.optimizer.state_dict(),
        "epoch": run.step * config.batch_size // max(1, frames),
        "loss": loss,
        "batch_size": config.batch_size,
        "world_size": run.dist.world_size,
        "lr": run.optimizer.param_groups[0]["lr"],
        CONFIG_KEY: {"encoder": run.target_encoder.config.to_dict()},
        PRETRAIN_KEY: {"step": run.step, "config": config.to_dict(), "predictor": run.predictor.config.to_dict(),
                       "generator": run.generator.get_state(), "frames": frames},
    }
    if config.objective == "vjepa2_1":
        payload["ema_encoder"] = target  # the name of the 2.1 releases; the same tensors, stored once
    return atomic_torch_save(payload, path)


# ---------------------------------------------------------------------------------------------------- loop
def _rank_slice(values: Tensor, dist: DistInfo) -> Tensor:
    """This rank's equal share of a global batch (dim 0)."""
    share = values.shape[0] // dist.world_size
    return values[dist.rank * share : (dist.rank + 1) * share]


def _mask_sets(grid: tuple[int, int, int], batch_size: int, specs: Sequence[BlockMaskSpec], run: PretrainRun, *,
               shared_token: bool, weighted: bool) -> list[MaskSet]:
    """Masks drawn for the global batch (every rank draws the same), then cut to this rank's samples."""
    sets = []
    for index, spec in enumerate(specs):
        context_idx, target_idx = (_rank_slice(m, run.dist) for m in
                                   sample_block_masks(grid, batch_size, spec, run.generator))
        weights = context_weights(nearest_target_distance(context_idx, target_idx, grid)) if weighted else None
        device = run.dist.device
        sets.append(MaskSet(context_idx.to(device), target_idx.to(device), 0 if shared_token else index,
                            None if weights is None else weights.to(device)))
    return sets


@torch.no_grad()
def _targets(run: PretrainRun, clips: Tensor) -> Tensor:
    """Normalised EMA-encoder features of whole clips, each level on its own when deeply supervised."""
    levels = run.predictor.config.num_levels
    return normalize_reps(run.target_encoder(clips, return_hierarchical=levels > 1).float(), levels)


def step_batches(run: PretrainRun, config: PretrainConfig, bank: Tensor,
                 clip_starts: Tensor) -> list[ModalityBatch]:
    """This step's modality batches (this rank's share), drawn from uint8 bank frames [N, h, w, 3]: frames (vjepa2),
    or images and video clips starting at `clip_starts` indices (vjepa2_1)."""
    encoder, device = run.encoder, run.dist.device
    patch, img_size = encoder.config.patch_size, encoder.config.img_size
    rows, cols = img_size[0] // patch, img_size[1] // patch
    picks = _rank_slice(torch.randint(bank.shape[0], (config.batch_size,), generator=run.generator), run.dist)
    frames = frames_to_clips(preprocess_frames(bank[picks].to(device), img_size, crop=None), encoder)
    if config.objective == "vjepa2":
        masks = _mask_sets((1, rows, cols), config.batch_size, config.mask_specs, run, shared_token=False,
                           weighted=False)
        return [ModalityBatch("image", frames, (1, rows, cols), _targets(run, frames), masks)]
    schedules = config.context_schedules()
    weighted = config.distance_weighting
    image_masks = _mask_sets((1, rows, cols), config.batch_size, config.image_mask_specs, run, shared_token=True,
                             weighted=weighted)
    starts = clip_starts[torch.randint(len(clip_starts), (config.clip_batch_size,), generator=run.generator)]
    clips = bank_clips(bank, _rank_slice(starts, run.dist), config.clip_frames, img_size).to(device)
    video_grid = (config.clip_frames // encoder.config.tubelet_size, rows, cols)
    video_masks = _mask_sets(video_grid, config.clip_batch_size, config.mask_specs, run, shared_token=True,
                             weighted=weighted)
    return [
        ModalityBatch("image", frames, (1, rows, cols), _targets(run, frames), image_masks,
                      schedules["image"].at(run.step)),
        ModalityBatch("video", clips, video_grid, _targets(run, clips), video_masks, schedules["video"].at(run.step)),
    ]


def train_step(run: PretrainRun, config: PretrainConfig, bank: Tensor, clip_starts: Tensor) -> dict[str, float]:
    """One optimizer step and EMA update; returns the step's metrics (averaged over ranks)."""
    device = run.dist.device
    lr = run.schedule.step()
    with autocast(device):
        batches = step_batches(run, config, bank, clip_starts)
        loss, stats = run.model(batches)
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
    ema_update(run.target_encoder, run.encoder, momentum)
    names = ["loss", *sorted(stats)]
    values = torch.stack([loss.detach().float().cpu(), *(stats[k].float().cpu() for k in names[1:])])
    if run.dist.is_distributed:  # gloo reduces CPU tensors; NCCL needs them on the device
        values = distributed.all_reduce_mean(values.to(device)).cpu()
    return {"lr": lr, "ema_momentum": momentum, **dict(zip(names, values.tolist()))}


def check_batches(config: PretrainConfig, dist: DistInfo, bank: FrameBank) -> Tensor:
    """The clip start indices (empty for vjepa2), after checking that the batches split evenly over the ranks."""
    sizes = {"batch_size": config.batch_size}
    if config.objective == "vjepa2_1":
        sizes["clip_batch_size"] = config.clip_batch_size
    for name, size in sizes.items():
        if size % dist.world_size:
            raise ValueError(f"{name} {size} does not split evenly over {dist.world_size} processes")
    if config.objective != "vjepa2_1":
        return torch.zeros(0, dtype=torch.int64)
    starts = bank.clip_starts(config.clip_frames)
    if len(starts) == 0:
        raise ValueError(f"no episode has {config.clip_frames} frames at frame_stride {config.frame_stride} "
                         f"(longest: {int(bank.episode_lengths.max())}); lower clip_frames or frame_stride")
    return torch.from_numpy(starts)


def pretrain_encoder(references: Sequence[str], config: PretrainConfig | None = None, *,
                     progress: bool = True) -> Path:
    """Pretrain an encoder on the frames of `references` (DROID episode folders, index entries or RLDS references);
    resumes from `config.output_dir/latest.pt` when present. Returns the path of the final checkpoint.

    Under torchrun (RANK / WORLD_SIZE set) it joins the process group and trains with DDP; the caller shuts the group
    down (`distributed.shutdown_distributed`)."""
    config = config or PretrainConfig()
    output = Path(config.output_dir)
    latest = output / LATEST
    dist = distributed.init_distributed(config.device)
    # Read fully rather than memory-mapped: the loaded tensors become the trained parameters and optimizer state.
    resume = torch.load(latest, map_location="cpu", weights_only=True) if latest.is_file() else None
    if resume is not None and not isinstance(resume, dict):
        raise ValueError(f"{latest}: expected a checkpoint dict, found {type(resume).__name__}")
    if resume is not None and PRETRAIN_KEY not in resume:
        raise ValueError(f"{latest} is not a pretraining checkpoint (no {PRETRAIN_KEY!r} entry); use another "
                         f"output_dir")
    run = build_run(config, dist, resume, latest)
    img_size = run.encoder.config.img_size
    if any(side % run.encoder.config.patch_size for side in img_size):
        raise ValueError(f"encoder resolution {img_size} is not a multiple of its patch size")
    metrics = MetricsLogger(output, enabled=dist.is_main, tensorboard=False)
    metrics.truncate_after(run.step)
    if run.step >= config.optim.total_steps:
        log.info("%s is already at step %d of %d", latest, run.step, config.optim.total_steps)
        return latest
    crop = None if config.crop in (None, "none") else config.crop
    frame_bank = load_frame_bank(references, img_size=img_size, camera=config.camera, crop=crop,
                                 frame_stride=config.frame_stride, progress=progress and dist.is_main)
    clip_starts = check_batches(config, dist, frame_bank)
    bank = torch.from_numpy(frame_bank.frames)
    log.info("pretraining (%s) on %d frames from %d episode(s)", config.objective, len(frame_bank), len(references))
    bar = tqdm(total=config.optim.total_steps, initial=run.step, desc=f"pretrain {config.objective}", unit="step",
               disable=not (progress and dist.is_main))
    try:
        while run.step < config.optim.total_steps:
            values = train_step(run, config, bank, clip_starts)
            bar.update(1)
            if run.step % config.log_every == 0 or run.step == config.optim.total_steps:
                metrics.log("train", run.step, values)
                bar.set_postfix(loss=f"{values['loss']:.4f}", lr=f"{values['lr']:.2e}")
            if run.step % config.checkpoint_every == 0 or run.step == config.optim.total_steps:
                if dist.is_main:
                    _save(run, config, latest, frames=len(frame_bank), loss=values["loss"])
                distributed.barrier()
    finally:
        bar.close()
        metrics.close()
    return latest
