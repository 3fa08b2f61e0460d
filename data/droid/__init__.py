"""DROID data: read raw episode folders and RLDS shards, cut training clips, write the raw layout, validate.

Entry points: `open_episode` (raw folder, `trajectory.h5`, or `<shard>#<n>`), `DroidClipDataset`, `write_episode`
with `EpisodeRecording` / `CameraRecording`, `validate_episode`, and the `vjepa-ac droid` command.

The API is imported lazily (on first use), so that the `vjepa-ac` command's --help does not load h5py or video decoders.
"""

from __future__ import annotations

from vjepa_ac.data.lazy_exports import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    ".writer": ("CameraRecording", "EpisodeRecording", "write_episode"),
    ".dataset": ("ClipConfig", "DroidClipDataset", "sample_clip"),
    ".sampling": ("ClipTooShortError", "reference_clip_indices", "timestamp_clip_indices"),
    ".episode": ("DroidEpisode", "EpisodeError"),
    ".index": (
        "EpisodeFilter", "iter_episode_references", "open_episode", "read_index", "resolve_episode_references",
        "write_index",
    ),
    ".validate": ("EpisodeReport", "validate_episode", "validate_episodes"),
    ".raw": ("RawEpisode",),
})
