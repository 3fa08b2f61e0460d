"""`vjepa-ac encode`: run the frozen encoder once over DROID episodes and fill a latent cache.

Episodes are dealt round-robin to the shards (torchrun ranks and/or `--shard i/n` processes); each shard writes only
its own episodes, skips the ones already cached, and reports failures per episode without stopping the others.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from vjepa_ac.data.conventions import camera_views
from vjepa_ac.data.droid import EpisodeError, open_episode
from vjepa_ac.data.droid.sampling import reference_stride
from vjepa_ac.worldmodel import encode_frames

from .latent_cache import CachedEpisode, CacheSpec, LatentCache, content_fingerprint

log = logging.getLogger(__name__)


@dataclass
class EncodeSummary:
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    """reference -> reason."""


def cache_spec_for(encoder: nn.Module, *, checkpoint: str, preset: str | None = None,
                   checkpoint_key: str | None = None, camera: str = "left", fps: float | None = 4.0,
                   crop: str | None = "droid", dtype: str = "float16", hierarchical: bool = False) -> CacheSpec:
    """The CacheSpec describing latents of `encoder`: its geometry plus how to reload it (checkpoint, preset, key)
    for training checkpoints, which carry the encoder. A multi-view camera ("left+wrist") has the views' token grids
    side by side: tokens_per_frame counts all of them."""
    config = encoder.config
    levels = config.num_levels if hierarchical else 1
    return CacheSpec(
        tokens_per_frame=config.tokens_per_frame * len(camera_views(camera)),
        embed_dim=encoder.output_dim(hierarchical),
        dtype=dtype,
        camera=camera,
        fps=fps,
        crop=crop or "none",
        num_levels=levels,
        encoder={"preset": preset, "checkpoint": str(Path(checkpoint).resolve()), "checkpoint_key": checkpoint_key,
                 "img_size": list(config.img_size), "patch_size": config.patch_size,
                 "tubelet_size": config.tubelet_size},
    )


def _latent_chunks(encoder: nn.Module, episode, camera: str, indices: np.ndarray, *, crop: str | None,
                   chunk_frames: int, hierarchical: bool) -> Iterator[Tensor]:
    views = len(camera_views(camera))
    for start in range(0, len(indices), chunk_frames):
        frames = episode.read_camera(camera, indices[start : start + chunk_frames].tolist())
        latents = encode_frames(encoder, torch.from_numpy(np.ascontiguousarray(frames))[None], crop=crop,
                                chunk_size=chunk_frames, hierarchical=hierarchical, views=views)
        yield latents[0].cpu()


def encode_episode(cache: LatentCache, encoder: nn.Module, reference: str, *, chunk_frames: int = 16
                   ) -> CachedEpisode:
    """Encode one episode into the cache (overwriting a partial one); returns its manifest."""
    spec = cache.spec
    crop = None if spec.crop == "none" else spec.crop
    # A multi-view camera's clock and pose are its first view's (the exterior camera of "left+wrist").
    first_view = camera_views(spec.camera)[0]
    with open_episode(reference) as episode:
        usable = episode.usable_steps(spec.camera)
        video_fps = episode.video_fps(first_view) or episode.fps
        stride = reference_stride(video_fps, spec.fps) if spec.fps else 1
        indices = np.arange(0, usable, stride)
        if len(indices) == 0:
            raise EpisodeError(f"{episode.episode_id}: no frames for camera {spec.camera!r}")
        all_states = episode.states()
        states = all_states[indices]
        try:
            extrinsics = episode.extrinsics(first_view)[indices]
        except EpisodeError:
            extrinsics = None  # RLDS records none; the released predictor does not use them
        return cache.write_episode(
            episode.episode_id,
            _latent_chunks(encoder, episode, spec.camera, indices, crop=crop, chunk_frames=chunk_frames,
                           hierarchical=spec.num_levels > 1),
            frame_indices=indices.tolist(),
            states=states,
            extrinsics=extrinsics,
            source=str(reference),
            video_fps=video_fps,
            success=episode.success,
            task=episode.task,
            content=content_fingerprint(all_states),
        )


def encode_to_cache(cache: LatentCache, encoder: nn.Module, references: Sequence[str], *, shard: int = 0,
                    num_shards: int = 1, chunk_frames: int = 16, progress: bool = True) -> EncodeSummary:
    """Encode this shard's share of `references` (every num_shards-th, from `shard`), skipping cached episodes.

    An episode is cached when an episode with its id and the same recorded states is (wherever it was read from, so
    a moved dataset resumes). A second recording with an already used id fails, naming both; it is never merged into
    the first. Skipping needs the episode opened; that is cheap next to decoding video.
    """
    summary = EncodeSummary()
    cached = {episode.episode_id: episode for episode in cache.episodes()}
    mine = list(references)[shard::num_shards]
    for reference in tqdm(mine, desc=f"encode [{shard + 1}/{num_shards}]", unit="episode", disable=not progress):
        try:
            with open_episode(reference) as episode:
                episode_id = episode.episode_id
                content = content_fingerprint(episode.states())
            known = cached.get(episode_id)
            if known is not None:
                # Caches written before fingerprints existed have none: the same source counts as the same episode.
                if known.content == content or (not known.content and known.source == str(reference)):
                    summary.skipped.append(episode_id)
                    continue
                raise ValueError(f"episode id {episode_id!r} of {reference} is already taken by {known.source}, a "
                                 "different recording (copied metadata?); give one of them its own id")
            written = encode_episode(cache, encoder, reference, chunk_frames=chunk_frames)
            cached[episode_id] = written
            summary.written.append(episode_id)
        except (EpisodeError, ValueError, OSError, RuntimeError) as exc:
            log.warning("could not encode %s: %s", reference, exc)
            summary.failed[str(reference)] = f"{type(exc).__name__}: {exc}"
    return summary


def repair_cache(cache: LatentCache) -> dict[str, str]:
    """Verify every cached episode and drop the damaged ones, so that the next encode redoes them.

    Returns {episode key: problem}.
    """
    problems = cache.verify()
    for key in problems:
        cache.remove_episode(key)
    return problems
