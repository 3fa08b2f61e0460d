"""Held-out sim episodes for the open-loop part of `vjepa-ac eval`: collected fresh with `sim.collect` (the same
scripted experts and DROID writer as the training data, on seeds the recipe never uses), then cut into clips by the
DROID reader at the frame rate the model was trained at."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vjepa_ac.sim import TASK_NAMES
from vjepa_ac.report import OpenLoopError


def episodes_per_task(total: int, tasks: Sequence[str]) -> dict[str, int]:
    """Split `total` episodes over `tasks` as evenly as possible (earlier tasks get the remainder)."""
    if total < 0:
        raise ValueError(f"total must be >= 0, got {total}")
    if not tasks:
        raise ValueError("no tasks to collect")
    base, extra = divmod(total, len(tasks))
    counts = {task: base + (i < extra) for i, task in enumerate(tasks)}
    return {task: n for task, n in counts.items() if n}


def collect_heldout(folder: Path, defaults, *, episodes: int, seed: int,
                    tasks: Sequence[str] = TASK_NAMES) -> Path:
    """Collect (or, when already there, reuse) the held-out episodes in `folder`; returns the folder."""
    from vjepa_ac.sim.collect import CollectConfig, collect

    sim = dict(defaults.sim)
    for task, count in episodes_per_task(episodes, tasks).items():
        config = CollectConfig(
            task=task,
            episodes=count,
            seed=seed,
            image_size=tuple(sim.get("image_size", CollectConfig.image_size)),
            randomize_appearance=bool(sim.get("randomize_appearance", False)),
            # The held-out set keeps the expert/exploration mix it always had, so open-loop errors stay comparable.
            noisy_fraction=0.0,
            failed_fraction=0.0,
        )
        collect(folder, config, progress=False)
    return folder


def heldout_open_loop_error(world_model, defaults, folder: Path, *, episodes: int, horizon: int,
                            seed: int) -> OpenLoopError:
    """Open-loop error per horizon step on `episodes` held-out sim episodes (one clip each)."""
    from vjepa_ac.data.droid import DroidClipDataset
    from vjepa_ac.openloop import open_loop_error

    collect_heldout(folder, defaults, episodes=episodes, seed=seed)
    clips = DroidClipDataset(folder, frames_per_clip=horizon + 1, fps=defaults.fps, camera=defaults.camera,
                             seed=seed)
    return open_loop_error(world_model, (clips[i] for i in range(len(clips))), horizon=horizon)
