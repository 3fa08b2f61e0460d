"""DROID data: read raw episode folders and RLDS shards, cut training clips, write the raw layout, validate.

Entry points: `open_episode` (raw folder, `trajectory.h5`, or `<shard>#<n>`), `DroidClipDataset`, `write_episode`
with `EpisodeRecording` / `CameraRecording`, `validate_episode`, and the `vjepa-ac droid` command.
"""

from data.droid.dataset import ClipConfig, DroidClipDataset, sample_clip
from data.droid.episode import DroidEpisode, EpisodeError
from data.droid.index import (
    EpisodeFilter,
    iter_episode_references,
    open_episode,
    read_index,
    resolve_episode_references,
    write_index,
)
from data.droid.raw import RawEpisode
from data.droid.sampling import ClipTooShortError, reference_clip_indices, timestamp_clip_indices
from data.droid.validate import EpisodeReport, validate_episode, validate_episodes
from data.droid.writer import CameraRecording, EpisodeRecording, write_episode

__all__ = [
    "CameraRecording",
    "ClipConfig",
    "ClipTooShortError",
    "DroidClipDataset",
    "DroidEpisode",
    "EpisodeError",
    "EpisodeFilter",
    "EpisodeRecording",
    "EpisodeReport",
    "RawEpisode",
    "iter_episode_references",
    "open_episode",
    "read_index",
    "reference_clip_indices",
    "resolve_episode_references",
    "sample_clip",
    "timestamp_clip_indices",
    "validate_episode",
    "validate_episodes",
    "write_episode",
    "write_index",
]
