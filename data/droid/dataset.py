"""A torch Dataset of DROID clips for training the action-conditioned predictor."""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from vjepa_ac.data.droid.episode import DroidEpisode, EpisodeError
from vjepa_ac.data.droid.index import open_episode, resolve_episode_references
from vjepa_ac.data.conventions import camera_views
from vjepa_ac.data.droid.poses import states_to_actions, states_to_camera_frame
from vjepa_ac.data.droid.sampling import ClipTooShortError, reference_clip_indices, timestamp_clip_indices

logger = logging.getLogger(__name__)

SamplingMode = Literal["reference", "timestamp"]


@dataclass(frozen=True)
class ClipConfig:
    """How clips are cut from episodes (defaults = V-JEPA 2-AC training: 8 frames at ~4 fps, left exterior camera)."""

    frames_per_clip: int = 8
    fps: float = 4.0
    camera: str | tuple[str, ...] = "left"  # several roles: one is drawn per clip, like the reference's camera_views
    sampling: SamplingMode = "reference"
    frameskip: int = 1  # keep every n-th clip frame's state (the reference trains with 1)
    camera_frame: bool = False  # express states in the camera frame before computing actions

    def __post_init__(self):
        if self.frames_per_clip < 2:
            raise ValueError(f"frames_per_clip must be >= 2 to give at least one action, got {self.frames_per_clip}")
        if self.fps <= 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if self.sampling not in ("reference", "timestamp"):
            raise ValueError(f"sampling must be 'reference' or 'timestamp', got {self.sampling!r}")
        if self.frameskip < 1:
            raise ValueError(f"frameskip must be >= 1, got {self.frameskip}")

    @property
    def cameras(self) -> tuple[str, ...]:
        return (self.camera,) if isinstance(self.camera, str) else tuple(self.camera)


def sample_clip(episode: DroidEpisode, config: ClipConfig, rng: np.random.Generator) -> dict:
    """One clip of `episode` as a dict of tensors (see `DroidClipDataset`); raises EpisodeError/ClipTooShortError."""
    cameras = config.cameras
    role = cameras[int(rng.integers(len(cameras)))] if len(cameras) > 1 else cameras[0]
    usable = episode.usable_steps(role)
    first_view = camera_views(role)[0]  # a multi-view camera's clock and pose are its first view's
    if config.sampling == "timestamp":
        stamps = episode.frame_timestamps_ms(first_view)
        if stamps is None:
            raise EpisodeError(
                f"{episode.episode_id}: no frame timestamps for camera {role!r}; use sampling='reference'"
            )
        indices = timestamp_clip_indices(
            stamps[:usable], frames_per_clip=config.frames_per_clip, fps=config.fps, rng=rng
        )
    else:
        video_fps = episode.video_fps(first_view) or episode.fps
        indices = reference_clip_indices(
            usable, video_fps, frames_per_clip=config.frames_per_clip, fps=config.fps, rng=rng
        )
    states = episode.states()[indices][:: config.frameskip]
    try:
        extrinsics = episode.extrinsics(first_view)[indices][:: config.frameskip]
    except EpisodeError:
        if config.camera_frame:
            raise
        extrinsics = np.zeros((len(states), 6))  # RLDS records no extrinsics; the released predictor ignores them
    if config.camera_frame:
        states = states_to_camera_frame(states, extrinsics)
    if not np.all(np.isfinite(states)):
        raise EpisodeError(f"{episode.episode_id}: non-finite states in clip steps {indices.tolist()}")
    frames = episode.read_camera(role, indices)
    return {
        "frames": torch.from_numpy(np.ascontiguousarray(frames)),
        "actions": torch.from_numpy(states_to_actions(states).astype(np.float32)),
        "states": torch.from_numpy(states.astype(np.float32)),
        "extrinsics": torch.from_numpy(np.asarray(extrinsics, dtype=np.float32)),
        "episode_id": episode.episode_id,
        "frame_indices": torch.from_numpy(indices),
    }


class DroidClipDataset(Dataset):
    """Clips from DROID episodes: item = dict with

    - `frames` uint8 [T, H, W, 3] RGB (or whatever `transform` returns),
    - `actions` float32 [T'-1, 7], `states` float32 [T', 7], `extrinsics` float32 [T', 6]
      (T' = T with frameskip 1), `episode_id` str, `frame_indices` int64 [T].

    `episodes` is a list of references (raw folders, `shard#n`), an index file, or a folder to scan. Item i is a clip
    of episode `i % len(episodes)`, drawn from a generator seeded by (seed, epoch, i): the same seed gives the same
    clips with any number of workers or ranks. Call `set_epoch` (as with DistributedSampler) for new clips each epoch.
    A bad episode is logged and replaced by another one drawn from the same generator, so one broken file among
    thousands does not stop training; after `max_retries` failures in a row the error is raised.
    """

    def __init__(
        self,
        episodes: str | Path | Iterable[str | Path],
        *,
        frames_per_clip: int = 8,
        fps: float = 4.0,
        camera: str | Sequence[str] = "left",
        seed: int = 0,
        sampling: SamplingMode = "reference",
        frameskip: int = 1,
        camera_frame: bool = False,
        clips_per_episode: int = 1,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        max_retries: int = 10,
        video_backend: str | None = None,
        open_episodes: int = 8,
    ):
        self.references = resolve_episode_references(episodes)
        if not self.references:
            raise ValueError(f"no episodes in {episodes!r}")
        self.config = ClipConfig(
            frames_per_clip=frames_per_clip,
            fps=fps,
            camera=camera if isinstance(camera, str) else tuple(camera),
            sampling=sampling,
            frameskip=frameskip,
            camera_frame=camera_frame,
        )
        self.seed = seed
        self.epoch = 0
        self.clips_per_episode = clips_per_episode
        self.transform = transform
        self.max_retries = max_retries
        self.video_backend = video_backend
        self.open_episodes = open_episodes
        self._cache: OrderedDict[str, DroidEpisode] = OrderedDict()
        self._cache_pid = os.getpid()

    def __len__(self) -> int:
        return len(self.references) * self.clips_per_episode

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()  # open files stay in the process that opened them
        return state

    def episode(self, reference: str) -> DroidEpisode:
        """The opened episode for a reference, from a small per-process LRU of open episodes."""
        if self._cache_pid != os.getpid():
            # A forked worker inherited the parent's open files; it must open its own.
            self._cache, self._cache_pid = OrderedDict(), os.getpid()
        if reference in self._cache:
            self._cache.move_to_end(reference)
            return self._cache[reference]
        episode = open_episode(reference, video_backend=self.video_backend)
        self._cache[reference] = episode
        while len(self._cache) > self.open_episodes:
            self._cache.popitem(last=False)[1].close()
        return episode

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} clips")
        rng = np.random.default_rng([self.seed, self.epoch, index])
        reference = self.references[index % len(self.references)]
        for attempt in range(self.max_retries + 1):
            try:
                item = sample_clip(self.episode(reference), self.config, rng)
                break
            except (EpisodeError, ClipTooShortError) as exc:
                if attempt == self.max_retries:
                    raise EpisodeError(
                        f"{self.max_retries + 1} episodes in a row failed; last: {reference}: {exc}"
                    ) from exc
                logger.warning("skipping episode %s: %s", reference, exc)
                reference = self.references[int(rng.integers(len(self.references)))]
        if self.transform is not None:
            item["frames"] = self.transform(item["frames"])
        return item
