"""LeRobot datasets (codebase v2.0, v2.1, v3.0) in and out: read them as DROID episodes (a source for `vjepa-ac
encode`, `train` and `pretrain` beside raw DROID and RLDS) and export DROID-format episodes as a LeRobot dataset.

Entry points: `LeRobotDataset` / `open_dataset`, `LeRobotEpisode` (episodes are also opened by
`data.droid.open_episode("<root>#<episode_index>")`), `export_lerobot`, and the `vjepa-ac lerobot` command. The
API is imported lazily, so the command's --help loads neither pyarrow nor video decoders.
"""

from __future__ import annotations

from vjepa_ac.data.lazy_exports import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    ".writer": ("ExportSummary", "export_lerobot"),
    ".reader": ("LeRobotDataset", "LeRobotEpisode", "open_dataset"),
    ".format": ("LeRobotFormatError", "LeRobotInfo", "read_info"),
})
