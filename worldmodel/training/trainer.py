"""The training loop of the action-conditioned predictor over a frozen encoder.

`Trainer(config).fit()` runs single-process or under `torchrun` (DDP), from the latent cache or from raw video, and
can be killed at any moment: `latest.pt` (Meta's AC layout plus optimizer, schedule, RNG and data position) is always
a complete file, and resuming from it continues with exactly the losses the uninterrupted run would have had (on
CPU; GPU kernels are not bitwise deterministic).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import multiprocessing
import random
import shutil
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from vjepa_ac.data.conventions import camera_views
from vjepa_ac.worldmodel import (
    ACPredictor,
    CheckpointError,
    PredictorConfig,
    build_predictor,
    encode_frames,
    load_encoder,
    read_checkpoint,
    save_ac_checkpoint,
)
from vjepa_ac.worldmodel.checkpoints import ENCODER_KEYS, encoder_state, predictor_from_checkpoint
from vjepa_ac.worldmodel.precision import autocast
from vjepa_ac.worldmodel.predictor import predictor_config

from . import distributed
from .config import TrainConfig
from .data import CachedClipDataset, ResumableSampler, check_finite, split_episodes
from .latent_cache import LatentCache
from .losses import ac_loss, per_step_l1, rollout_predictions, teacher_forcing_predictions
from .metrics import MetricsLogger
from .optim import WSDSchedule, build_optimizer

log = logging.getLogger(__name__)

TRAINER_STATE_KEY = "trainer_state"
LATEST = "latest.pt"


def _views_side_by_side(geometry: dict[str, Any], camera: str) -> dict[str, Any]:
    """The predictor's geometry for frames of `camera`: a multi-view camera's token grids lie side by side, so its
    image is as many encoder images wide as it has views."""
    views = len(camera_views(camera))
    if views == 1 or "img_size" not in geometry:
        return geometry
    height, width = geometry["img_size"]
    return {**geometry, "img_size": [height, width * views]}


@dataclasses.dataclass
class TrainProgress:
    step: int = 0
    """Optimizer steps done."""
    samples_consumed: int = 0
    """Clips this rank has drawn from its sampler (the data position)."""


class SeededClips(torch.utils.data.Dataset):
    """Adapts `data.droid.DroidClipDataset` to `(index, sample_seed)` keys: the sample seed takes the place of its
    epoch, so every clip is a pure function of the key, as with the cache."""

    def __init__(self, clips) -> None:
        self.clips = clips

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        index, seed = key
        self.clips.set_epoch(seed)
        return self.clips[index]


def _rng_state() -> dict[str, Any]:
    """Every global RNG as plain lists and numbers: loadable with weights_only and gatherable across ranks."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, python_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state().tolist(),
        "numpy": [kind, keys.tolist(), pos, has_gauss, gauss],
        "python": [version, list(internal), python_gauss],
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


class Trainer:
    """Owns model, optimizer, data and bookkeeping of one training run; `fit()` trains to `optim.total_steps`."""

    def __init__(self, config: TrainConfig) -> None:
        config.validate()
        self.config = config
        self.dist = distributed.init_distributed(config.run.device)
        self.device = self.dist.device
        self.output_dir = Path(config.run.output_dir)
        if self.dist.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        on_cuda_bf16 = self.device.type == "cuda" and config.run.dtype == "bfloat16"
        self.precision = "bfloat16" if on_cuda_bf16 else "float32"
        self._seed_everything(config.run.seed + self.dist.rank)

        self.encoder: nn.Module | None = None
        self._encoder_source: dict[str, Any] = {}
        self._views = 1
        """Camera views per raw frame (a "left+wrist" camera: 2), for encoding raw clips."""
        self.train_set, self.val_set, latent_info = self._build_data()
        self.num_levels = latent_info["num_levels"]
        self.predictor = self._build_predictor(latent_info)
        self.optimizer = build_optimizer(self.predictor, config.optim)
        self.schedule = WSDSchedule(self.optimizer, config.optim)
        self.progress = TrainProgress()
        self.metrics = MetricsLogger(self.output_dir, enabled=self.dist.is_main, tensorboard=config.run.tensorboard)
        self._resume_if_possible()
        self.model: nn.Module = self.predictor
        if self.dist.is_distributed:
            self.model = DistributedDataParallel(
                self.predictor, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        if config.model.compile:
            self.model = torch.compile(self.model)

    # ------------------------------------------------------------------ setup

    @staticmethod
    def _seed_everything(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)

    def _frozen_encoder(self, source: dict[str, Any]) -> nn.Module:
        checkpoint = source.get("checkpoint")
        if not checkpoint:
            raise ValueError(
                "a frozen encoder checkpoint is needed (model.encoder_checkpoint, or the one recorded in the cache): "
                "training checkpoints carry the encoder in Meta's layout"
            )
        if not Path(checkpoint).exists():
            raise FileNotFoundError(
                f"frozen encoder checkpoint {checkpoint} not found; set model.encoder_checkpoint=PATH (e.g. when the "
                "latent cache was made on another machine)"
            )
        return load_encoder(checkpoint, preset=source.get("preset"), checkpoint_key=source.get("checkpoint_key"),
                            device=self.device if self.config.data.source == "raw" else "cpu")

    def _build_data(self) -> tuple[torch.utils.data.Dataset, torch.utils.data.Dataset | None, dict[str, Any]]:
        """Train/validation datasets and what the predictor must match (latent width, tokens, image geometry)."""
        train, val, info = self._cache_data() if self.config.data.source == "cache" else self._raw_data()
        if len(train) == 0:
            raise ValueError("no training episode is long enough for one clip")
        return train, (val if val is not None and len(val) else None), info

    def _cache_data(self) -> tuple[CachedClipDataset, CachedClipDataset | None, dict[str, Any]]:
        d, m = self.config.data, self.config.model
        cache = LatentCache.open(d.cache)
        episodes = cache.episodes()
        if d.episodes is not None:
            wanted = {d.episodes} if isinstance(d.episodes, str) else set(d.episodes)
            episodes = [e for e in episodes if e.episode_id in wanted]
        if not episodes:
            raise ValueError(f"latent cache {d.cache} holds no (selected) episodes")
        train_ids, val_ids = split_episodes([e.episode_id for e in episodes], val_fraction=d.val_fraction,
                                            val_episodes=d.val_episodes)

        def clips(ids: list[str]) -> CachedClipDataset:
            chosen = set(ids)
            return CachedClipDataset(cache, [e for e in episodes if e.episode_id in chosen],
                                     frames_per_clip=d.frames_per_clip, fps=d.fps)

        spec = cache.spec
        self._encoder_source = {**spec.encoder}
        for key, value in (("preset", m.encoder), ("checkpoint", m.encoder_checkpoint)):
            if value:
                self._encoder_source[key] = value
        # The encoder only goes into checkpoints; load it now so that a missing file fails before training starts.
        if self.dist.is_main:
            self.encoder = self._frozen_encoder(self._encoder_source)
        geometry = {k: spec.encoder[k] for k in ("img_size", "patch_size", "tubelet_size") if k in spec.encoder}
        info = {"embed_dim": spec.embed_dim, "tokens_per_frame": spec.tokens_per_frame,
                "num_levels": spec.num_levels, **_views_side_by_side(geometry, spec.camera)}
        return clips(train_ids), (clips(val_ids) if val_ids else None), info

    def _raw_data(self) -> tuple[SeededClips, SeededClips | None, dict[str, Any]]:
        from vjepa_ac.data.droid import DroidClipDataset, resolve_episode_references
        from vjepa_ac.data.droid.index import default_camera

        d, m = self.config.data, self.config.model
        references = resolve_episode_references(d.episodes)
        train_refs, val_refs = split_episodes(references, val_fraction=d.val_fraction, val_episodes=d.val_episodes)
        camera = d.camera
        if camera is None:
            camera, why = default_camera(references)
            log.info("camera %s (%s; set data.camera to choose another)", camera, why)

        def clips(refs: list[str]) -> SeededClips:
            return SeededClips(DroidClipDataset(refs, frames_per_clip=d.frames_per_clip, fps=d.fps, camera=camera,
                                                seed=self.config.run.seed))

        self._encoder_source = {"preset": m.encoder, "checkpoint": m.encoder_checkpoint,
                                "checkpoint_key": m.encoder_checkpoint_key}
        self.encoder = self._frozen_encoder(self._encoder_source)
        ec = self.encoder.config
        self._views = len(camera_views(camera))
        info = {"embed_dim": self.encoder.output_dim(m.hierarchical),
                "tokens_per_frame": ec.tokens_per_frame * self._views,
                "num_levels": ec.num_levels if m.hierarchical else 1,
                **_views_side_by_side({"img_size": ec.img_size, "patch_size": ec.patch_size,
                                       "tubelet_size": ec.tubelet_size}, camera)}
        return clips(train_refs), (clips(val_refs) if val_refs else None), info

    def _predictor_config(self, info: dict[str, Any]) -> PredictorConfig:
        m = self.config.model
        overrides = {k: info[k] for k in ("embed_dim", "img_size", "patch_size", "tubelet_size") if k in info}
        overrides.update(m.predictor)
        overrides["use_activation_checkpointing"] = m.use_activation_checkpointing
        config = predictor_config(m.predictor_preset, **overrides)
        if config.tokens_per_frame != info["tokens_per_frame"] or config.embed_dim != info["embed_dim"]:
            raise ValueError(
                f"predictor expects {config.tokens_per_frame} tokens of width {config.embed_dim} per frame, the "
                f"data has {info['tokens_per_frame']} of width {info['embed_dim']}; fix model.predictor "
                "(img_size, patch_size, embed_dim)"
            )
        return config

    def _build_predictor(self, info: dict[str, Any]) -> ACPredictor:
        config = self._predictor_config(info)
        m = self.config.model
        if m.init_checkpoint:
            checkpoint = read_checkpoint(m.init_checkpoint)
            predictor, _ = predictor_from_checkpoint(checkpoint, source=m.init_checkpoint)
            self._check_same_architecture(predictor.config, config, m.init_checkpoint)
            self._check_same_encoder(checkpoint, m.init_checkpoint)
            predictor.config.use_activation_checkpointing = config.use_activation_checkpointing
        else:
            torch.manual_seed(self.config.run.seed)  # identical initial weights on every rank
            predictor = build_predictor(config)
        predictor.train()
        predictor.requires_grad_(True)
        if not config.use_extrinsics:
            # Unused by the forward pass; frozen so DDP need not search for parameters without gradients.
            predictor.extrinsics_encoder.requires_grad_(False)
        return predictor.to(self.device)

    def _check_same_encoder(self, checkpoint: dict[str, Any], source: str) -> None:
        """Fine-tuning: a predictor reads the latents of the encoder it was trained with, so the data's encoder (the
        cache's or model.encoder_checkpoint) must be the one the init checkpoint holds, weight for weight."""
        if self.encoder is None:  # only the main rank of a cache run loads the encoder; it does the check
            return
        if not any(key in checkpoint for key in ENCODER_KEYS):
            log.warning("%s holds no encoder: cannot check that the data's encoder is the one its predictor was "
                        "trained with", source)
            return
        key = self._encoder_source.get("checkpoint_key")
        _, theirs, _, _ = encoder_state(checkpoint, source=source, checkpoint_key=key if key in checkpoint else None)
        ours = self.encoder.state_dict()
        same = set(ours) == set(theirs) and all(
            ours[k].shape == theirs[k].shape and torch.equal(ours[k].detach().cpu().float(), theirs[k].float())
            for k in ours)
        if not same:
            raise CheckpointError(
                f"model.init_checkpoint {source} was trained on another encoder than the data's "
                f"({self._encoder_source.get('checkpoint')}): its predictor would be fine-tuned on foreign latents. "
                f"Encode the episodes with the checkpoint's own encoder (vjepa-ac encode ... --encoder-checkpoint "
                f"{source}) or set model.encoder_checkpoint={source}")

    @staticmethod
    def _check_same_architecture(found: PredictorConfig, wanted: PredictorConfig, source: str) -> None:
        ignore = {"use_activation_checkpointing"}
        a, b = found.to_dict(), wanted.to_dict()
        diff = {k: (a[k], b[k]) for k in a if k not in ignore and a[k] != b[k]}
        if diff:
            raise CheckpointError(
                f"{source} holds a predictor of another architecture (checkpoint, config): {diff}"
            )

    # ------------------------------------------------------------------ checkpoints

    def _resume_if_possible(self) -> None:
        path = self.output_dir / LATEST
        if not (self.config.run.resume and path.is_file()):
            return
        data = read_checkpoint(path)
        state = data.get(TRAINER_STATE_KEY)
        if not isinstance(state, dict):
            raise CheckpointError(f"{path} is not a training checkpoint of this trainer (no {TRAINER_STATE_KEY!r})")
        loaded, _ = predictor_from_checkpoint(data, source=str(path))
        self._check_same_architecture(loaded.config, self.predictor.config, str(path))
        self.predictor.load_state_dict(loaded.state_dict())
        self.optimizer.load_state_dict(data["opt"])
        self.schedule.load_state_dict(state["schedule"])
        self.progress = TrainProgress(step=int(state["step"]), samples_consumed=int(state["samples_consumed"]))
        rng_states = state["rng"]
        if len(rng_states) == self.dist.world_size:
            _set_rng_state(rng_states[self.dist.rank])
        else:
            log.warning("resuming with %d ranks from a %d-rank run: data order changes, RNGs are reseeded",
                        self.dist.world_size, len(rng_states))
            per_rank_before = state["samples_consumed"] * len(rng_states)
            self.progress.samples_consumed = per_rank_before // self.dist.world_size
        self.metrics.truncate_after(self.progress.step)
        if self.dist.is_main:
            log.info("resumed from %s at step %d", path, self.progress.step)

    def save_checkpoint(self, last_loss: float | None = None) -> Path | None:
        """Write latest.pt (all ranks must call: RNG states are gathered); keep numbered copies as hard links."""
        rng = distributed.all_gather_objects(_rng_state())
        if not self.dist.is_main:
            return None
        c = self.config
        per_epoch = math.ceil(len(self.train_set) / self.dist.world_size)
        extra = {
            "opt": self.optimizer.state_dict(),
            "scaler": None,
            "epoch": self.progress.samples_consumed // per_epoch,
            "loss": last_loss,
            "batch_size": c.data.batch_size,
            "world_size": self.dist.world_size,
            "lr": c.optim.lr,
            TRAINER_STATE_KEY: {
                "step": self.progress.step,
                "samples_consumed": self.progress.samples_consumed,
                "schedule": self.schedule.state_dict(),
                "rng": rng,
                "config": c.to_dict(),
                "encoder_source": self._encoder_source,
            },
        }
        latest = save_ac_checkpoint(self.output_dir / LATEST, encoder=self.encoder, predictor=self.predictor,
                                    extra=extra)
        if c.run.keep_checkpoints > 0:
            numbered = self.output_dir / f"step_{self.progress.step:08d}.pt"
            numbered.unlink(missing_ok=True)
            try:
                numbered.hardlink_to(latest)
            except OSError:  # file systems without hard links
                shutil.copy2(latest, numbered)
            for old in sorted(self.output_dir.glob("step_*.pt"))[: -c.run.keep_checkpoints]:
                old.unlink(missing_ok=True)
        return latest

    # ------------------------------------------------------------------ steps

    def batch_stream(self, dataset, *, start: int, seed: int, shuffle: bool = True,
                     num_workers: int | None = None) -> Iterator[dict]:
        """Endless batches of this rank's share of `dataset`, starting after `start` consumed samples."""
        sampler = ResumableSampler(len(dataset), seed=seed, rank=self.dist.rank, world_size=self.dist.world_size,
                                   shuffle=shuffle, start=start)
        workers = self.config.data.num_workers if num_workers is None else num_workers
        # tensorstore aborts a process forked after it started its threads: workers start from a clean server.
        context = None
        if workers > 0:
            context = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        return iter(DataLoader(dataset, batch_size=self.config.data.batch_size, sampler=sampler,
                               num_workers=workers, multiprocessing_context=context,
                               pin_memory=self.device.type == "cuda"))

    def prepare_batch(self, batch: dict) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(latents [B,T,N,D], actions, states, extrinsics) on the device; raw frames go through the encoder."""
        ids = batch["episode_id"]
        for i, eid in enumerate(ids):
            frames = batch["frame_indices"][i].tolist()
            check_finite(eid, frames, actions=batch["actions"][i].numpy(), states=batch["states"][i].numpy())
        move = lambda t: t.to(self.device, non_blocking=True)  # noqa: E731
        actions, states, extrinsics = move(batch["actions"]), move(batch["states"]), move(batch["extrinsics"])
        if "latents" in batch:
            latents = move(batch["latents"])
        else:
            crop = None if self.config.data.crop == "none" else self.config.data.crop
            with torch.no_grad(), autocast(self.device, self.precision):
                latents = encode_frames(self.encoder, move(batch["frames"]), crop=crop,
                                        hierarchical=self.config.model.hierarchical, views=self._views).float()
        return latents, actions, states, extrinsics

    def train_step(self, batches: Iterator[dict]) -> dict[str, float]:
        """One optimizer step over `grad_accum_steps` micro-batches; returns rank-averaged metrics."""
        c = self.config
        lr = self.schedule.step()
        accum = c.optim.grad_accum_steps
        totals = torch.zeros(3, device=self.device)
        for micro in range(accum):
            latents, actions, states, extrinsics = self.prepare_batch(next(batches))
            self.progress.samples_consumed += latents.shape[0]
            sync = micro == accum - 1 or not isinstance(self.model, DistributedDataParallel)
            with (contextlib.nullcontext() if sync else self.model.no_sync()), autocast(self.device, self.precision):
                terms = ac_loss(self.model, latents, actions, states, extrinsics, c.loss, num_levels=self.num_levels)
            (terms.total / accum).backward()
            totals += torch.stack([terms.total.detach(), terms.teacher_forcing.detach(), terms.rollout.detach()])
        grad_norm = None
        if c.optim.clip_grad_norm is not None:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.predictor.parameters(), c.optim.clip_grad_norm))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.progress.step += 1
        loss, tf, rollout = (distributed.all_reduce_mean(totals / accum)).tolist()
        if not math.isfinite(loss):
            raise FloatingPointError(f"loss became {loss} at step {self.progress.step}; lower optim.lr or check data")
        metrics = {"loss": loss, "loss_teacher_forcing": tf, "loss_rollout": rollout, "lr": lr}
        if grad_norm is not None:
            metrics["grad_norm"] = grad_norm
        return metrics

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Teacher-forcing and rollout L1 per horizon step on the same held-out clips every time."""
        if self.val_set is None:
            return {}
        c = self.config
        horizon = c.run.val_rollout_steps or c.data.frames_per_clip - 1
        self.predictor.eval()
        # In-process loading: a few batches do not repay starting worker processes at every validation.
        batches = self.batch_stream(self.val_set, start=0, seed=c.run.seed + 1, shuffle=False, num_workers=0)
        num = max(1, min(c.run.val_batches, math.ceil(len(self.val_set) / self.dist.world_size / c.data.batch_size)))
        tf_sum = torch.zeros(c.data.frames_per_clip - 1, device=self.device)
        ro_sum = torch.zeros(horizon, device=self.device)
        for _ in range(num):
            latents, actions, states, extrinsics = self.prepare_batch(next(batches))
            with autocast(self.device, self.precision):
                tf = teacher_forcing_predictions(self.predictor, latents, actions, states, extrinsics,
                                                 num_levels=self.num_levels)
                ro = rollout_predictions(self.predictor, latents, actions, states, extrinsics, steps=horizon,
                                         num_levels=self.num_levels, incremental=True)
            tf_sum += per_step_l1(tf, latents[:, 1:])
            ro_sum += per_step_l1(ro, latents[:, 1 : horizon + 1])
        self.predictor.train()
        tf_mean = distributed.all_reduce_mean(tf_sum / num).tolist()
        ro_mean = distributed.all_reduce_mean(ro_sum / num).tolist()
        metrics = {"val_teacher_forcing": float(np.mean(tf_mean)), "val_rollout": float(np.mean(ro_mean))}
        metrics.update({f"val_teacher_forcing_t{i + 1}": v for i, v in enumerate(tf_mean)})
        metrics.update({f"val_rollout_t{i + 1}": v for i, v in enumerate(ro_mean)})
        return metrics

    def fit(self) -> dict[str, float]:
        """Train until `optim.total_steps`; returns the last step's metrics."""
        c = self.config
        batches = self.batch_stream(self.train_set, start=self.progress.samples_consumed, seed=c.run.seed)
        bar = tqdm(total=c.optim.total_steps, initial=self.progress.step, desc="train", unit="step",
                   disable=not self.dist.is_main, dynamic_ncols=True)
        metrics: dict[str, float] = {}
        try:
            while self.progress.step < c.optim.total_steps:
                metrics = self.train_step(batches)
                step = self.progress.step
                bar.update(1)
                bar.set_postfix(loss=f"{metrics['loss']:.4f}", lr=f"{metrics['lr']:.2e}")
                if step % c.run.log_every == 0 or step == c.optim.total_steps:
                    self.metrics.log("train", step, metrics)
                if step % c.run.val_every == 0 or step == c.optim.total_steps:
                    val = self.validate()
                    if val:
                        self.metrics.log("val", step, val)
                        metrics = {**metrics, **val}
                if step % c.run.checkpoint_every == 0 or step == c.optim.total_steps:
                    self.save_checkpoint(metrics["loss"])
        finally:
            bar.close()
            self.metrics.close()
        return metrics
