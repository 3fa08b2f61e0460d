"""LeRobot datasets (codebase v2.0, v2.1, v3.0) in and out: read them as DROID episodes (a source for `vjepa-ac
encode`, `train` and `pretrain` beside raw DROID and RLDS) and export DROID-format episodes as a LeRobot dataset.

Entry points: `LeRobotDataset` / `open_dataset`, `LeRobotEpisode` (episodes are also opened by
`data.droid.open_episode("<root>#<episode_index>")`), `export_lerobot`, and the `vjepa-ac lerobot` command. The
API is imported lazily, so the command's --help loads neither pyarrow nor video decoders.
"""

from __future__ import annotations

from data.lazy_exports import lazy_getattr

_EXPORTS = {
    "ExportSummary": "data.lerobot.writer",
    "LeRobotDataset": "data.lerobot.reader",
    "LeRobotEpisode": "data.lerobot.reader",
    "LeRobotFormatError": "data.lerobot.format",
    "LeRobotInfo": "data.lerobot.format",
    "export_lerobot": "data.lerobot.writer",
    "open_dataset": "data.lerobot.reader",
    "read_info": "data.lerobot.format",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
