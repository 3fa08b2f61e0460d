"""Training clips from the latent cache, the resumable distributed sampler, and the train/validation split.

Resumability rests on one rule: all randomness of a sample comes from the seed the sampler hands out with its index,
`(index, sample_seed)`, and that seed depends only on (run seed, epoch, slot in the epoch). The sampler's whole state
is therefore the number of samples a rank has consumed, which the checkpoint stores; DataLoader workers, prefetching
and process restarts cannot change which clip comes next.
"""

from __future__ import annotations

import hashlib
import logging
import math
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from vjepa_ac.data.droid.poses import states_to_actions
from vjepa_ac.data.droid.sampling import reference_stride

from .latent_cache import CachedEpisode, LatentCache

log = logging.getLogger(__name__)

SampleKey = tuple[int, int]
"""(dataset index, per-sample seed), as yielded by `ResumableSampler`."""


def sample_seed(seed: int, epoch: int, slot: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, slot]).generate_state(1)[0])


class ResumableSampler(Sampler[SampleKey]):
    """Endless, per-rank shuffled stream of `(index, sample_seed)`, restartable at any sample count.

    Each epoch is a permutation of all items (seeded by run seed and epoch), padded by wrap-around to a multiple of
    the world size and dealt out round-robin, like `DistributedSampler`. `start` = samples this rank already consumed.
    """

    def __init__(self, num_items: int, *, seed: int, rank: int = 0, world_size: int = 1, shuffle: bool = True,
                 start: int = 0) -> None:
        if num_items < 1:
            raise ValueError("cannot sample from an empty dataset")
        self.num_items = num_items
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.start = start
        self.per_rank = math.ceil(num_items / world_size)

    def _epoch_slots(self, epoch: int) -> np.ndarray:
        order = (np.random.default_rng([self.seed, epoch]).permutation(self.num_items) if self.shuffle
                 else np.arange(self.num_items))
        padded = np.resize(order, self.per_rank * self.world_size)
        return padded[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[SampleKey]:
        position = self.start
        while True:
            epoch, offset = divmod(position, self.per_rank)
            slots = self._epoch_slots(epoch)
            for i in range(offset, self.per_rank):
                yield int(slots[i]), sample_seed(self.seed, epoch, i * self.world_size + self.rank)
            position = (epoch + 1) * self.per_rank


def split_episodes(episode_ids: Sequence[str], *, val_fraction: float,
                   val_episodes: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """(train, validation) ids. Explicit `val_episodes` win; otherwise a stable hash of each id decides, so the
    split does not change when episodes are added or reordered."""
    if val_episodes is not None:
        held_out = set(val_episodes)
        unknown = held_out - set(episode_ids)
        if unknown:
            raise ValueError(f"data.val_episodes not found in the dataset: {sorted(unknown)[:5]}")
    else:
        def unit(eid: str) -> float:
            return int(hashlib.sha1(eid.encode()).hexdigest()[:12], 16) / 16**12

        held_out = {eid for eid in episode_ids if unit(eid) < val_fraction}
        if val_fraction > 0 and not held_out and len(episode_ids) > 1:
            held_out = {min(episode_ids, key=unit)}
    train = [eid for eid in episode_ids if eid not in held_out]
    if not train:
        raise ValueError("no training episodes left after holding out the validation split")
    return train, [eid for eid in episode_ids if eid in held_out]


def check_finite(episode_id: str, frame_indices: Sequence[int], **arrays: np.ndarray) -> None:
    """ValueError naming the episode, the array and the first bad video frame if anything is NaN or infinite."""
    for name, values in arrays.items():
        finite = np.isfinite(values).reshape(len(values), -1).all(axis=1)
        if not finite.all():
            bad = int(np.argmin(finite))
            frame = frame_indices[min(bad, len(frame_indices) - 1)]
            raise ValueError(f"episode {episode_id}: {name} contain NaN or inf (clip row {bad}, near video frame "
                             f"{frame}); fix or drop this episode")


class CachedClipDataset(Dataset):
    """Clips of cached latents: item = dict like `data.droid.DroidClipDataset`'s, with `latents` [T, N, D] float32
    in place of `frames`. One item per episode; the window inside it is drawn from the sample seed.

    Clip frames are `reference_stride(video_fps, fps)` video frames apart (the reference rule), which must be a
    multiple of the cache's own frame stride.
    """

    def __init__(self, cache: LatentCache, episodes: Sequence[CachedEpisode], *, frames_per_clip: int = 8,
                 fps: float = 4.0, verify: bool = True) -> None:
        self.cache = cache
        self.frames_per_clip = frames_per_clip
        self.fps = fps
        self.verify = verify
        self.episodes: list[CachedEpisode] = []
        self.steps: list[int] = []
        too_short = 0
        for episode in episodes:
            step = self._position_step(episode)
            if episode.num_frames < (frames_per_clip - 1) * step + 1:
                too_short += 1
                continue
            self.episodes.append(episode)
            self.steps.append(step)
        if too_short:
            log.warning("skipped %d cached episodes shorter than one %d-frame clip", too_short, frames_per_clip)

    def _position_step(self, episode: CachedEpisode) -> int:
        clip = reference_stride(episode.video_fps, self.fps)
        cached = reference_stride(episode.video_fps, self.cache.spec.fps) if self.cache.spec.fps else 1
        if clip % cached:
            raise ValueError(
                f"clips at {self.fps} fps step {clip} video frames, but the cache holds every {cached}th frame "
                f"(cache fps {self.cache.spec.fps}); re-encode with a compatible --fps or change data.fps"
            )
        return clip // cached

    def __len__(self) -> int:
        return len(self.episodes)

    def __getitem__(self, key: SampleKey | int) -> dict:
        index, seed = key if isinstance(key, tuple) else (key, 0)
        episode, step = self.episodes[index], self.steps[index]
        span = (self.frames_per_clip - 1) * step
        start = int(np.random.default_rng(seed).integers(0, episode.num_frames - span))
        positions = list(range(start, start + span + 1, step))
        frame_indices = [episode.frame_indices[p] for p in positions]
        states = episode.states[positions]
        extrinsics = episode.extrinsics[positions]
        actions = states_to_actions(states)
        check_finite(episode.episode_id, frame_indices, states=states, actions=actions, extrinsics=extrinsics)
        return {
            "latents": self.cache.read(episode, positions, verify=self.verify),
            "actions": torch.from_numpy(actions).float(),
            "states": torch.from_numpy(states).float(),
            "extrinsics": torch.from_numpy(extrinsics).float(),
            "episode_id": episode.episode_id,
            "frame_indices": torch.tensor(frame_indices, dtype=torch.int64),
        }
