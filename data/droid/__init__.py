"""DROID data: read raw episode folders and RLDS shards, cut training clips, write the raw layout, validate.

Entry points: `open_episode` (raw folder, `trajectory.h5`, or `<shard>#<n>`), `DroidClipDataset`, `write_episode`
with `EpisodeRecording` / `CameraRecording`, `validate_episode`, and the `vjepa-ac droid` command.

The API is imported lazily (on first use), so that the `vjepa-ac` command's --help does not load h5py or video decoders.
"""

from __future__ import annotations

from data.lazy_exports import lazy_getattr

_EXPORTS = {
    "CameraRecording": "data.droid.writer",
    "ClipConfig": "data.droid.dataset",
    "ClipTooShortError": "data.droid.sampling",
    "DroidClipDataset": "data.droid.dataset",
    "DroidEpisode": "data.droid.episode",
    "EpisodeError": "data.droid.episode",
    "EpisodeFilter": "data.droid.index",
    "EpisodeRecording": "data.droid.writer",
    "EpisodeReport": "data.droid.validate",
    "RawEpisode": "data.droid.raw",
    "iter_episode_references": "data.droid.index",
    "open_episode": "data.droid.index",
    "read_index": "data.droid.index",
    "reference_clip_indices": "data.droid.sampling",
    "resolve_episode_references": "data.droid.index",
    "sample_clip": "data.droid.dataset",
    "timestamp_clip_indices": "data.droid.sampling",
    "validate_episode": "data.droid.validate",
    "validate_episodes": "data.droid.validate",
    "write_episode": "data.droid.writer",
    "write_index": "data.droid.index",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
