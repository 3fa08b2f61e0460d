"""Outputs of a closed-loop run: the per-step JSONL log, energy plots and an MP4 of the executed episode."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vjepa_ac.data.droid.video import write_video

if TYPE_CHECKING:
    from vjepa_ac.planner.mpc import EpisodeLog


def json_safe(value):
    """`value` with every non-finite float (in nested dicts, lists and tuples) replaced by None: JSON has no NaN or
    Infinity, so strict parsers accept the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


class JsonlWriter:
    """Appends one JSON object per line and flushes it, so the log survives a crash mid-episode."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")

    def write(self, record: dict) -> None:
        self._file.write(json.dumps(json_safe(record)) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_jsonl(path: str | Path) -> list[dict]:
    with Path(path).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_energies(episode: EpisodeLog, path: str | Path) -> Path:
    """Two panels: the best energy over planner iterations (one line per control step), and the observed and
    planned energies over control steps with sub-goal switches marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    path = Path(path)
    fig, (ax_iter, ax_step) = plt.subplots(1, 2, figsize=(11, 4))
    cmap = plt.get_cmap("viridis")
    count = max(len(episode.steps), 1)
    for i, record in enumerate(episode.steps):
        best = [row[0] for row in record.iteration_energies]
        ax_iter.plot(range(1, len(best) + 1), best, color=cmap(i / count), lw=1)
    ax_iter.set(xlabel="planner iteration", ylabel="best imagined energy", title="energy over iterations")
    if episode.steps:
        sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, count - 1))
        fig.colorbar(sm, ax=ax_iter, label="control step")
    steps = [r.step for r in episode.steps]
    ax_step.plot(steps, [r.observed_energy for r in episode.steps], "o-", label="observed frame vs goal")
    ax_step.plot(steps, [r.planned_energy for r in episode.steps], "s--", label="imagined (planned) vs goal")
    for prev, cur in zip(episode.steps, episode.steps[1:], strict=False):
        if cur.goal_index != prev.goal_index:
            ax_step.axvline(cur.step - 0.5, color="grey", ls=":")
    ax_step.set(xlabel="control step", ylabel="energy", title=f"episode: {episode.outcome or 'running'}")
    ax_step.legend()
    for ax in (ax_iter, ax_step):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def side_by_side(frame: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """The frame with the goal image resized to its height on the right."""
    import cv2

    height = frame.shape[0]
    width = max(1, round(goal.shape[1] * height / goal.shape[0]))
    goal = cv2.resize(goal, (width, height), interpolation=cv2.INTER_AREA)
    return np.concatenate([frame, goal], axis=1)


def write_episode_video(episode: EpisodeLog, path: str | Path, fps: float = 4.0) -> Path:
    """H.264 MP4 of the executed episode, each camera frame shown beside the goal image in force at that moment."""
    pairs = zip(episode.frames, episode.frame_goals, strict=True)
    return write_video(path, np.stack([side_by_side(frame, episode.goal_images[goal]) for frame, goal in pairs]), fps)


def save_episode(
    episode: EpisodeLog, out_dir: str | Path, *, video: bool = True, fps: float = 4.0
) -> dict[str, Path]:
    """Write `energies.png` and (unless `video` is False) `episode.mp4` into `out_dir`; the JSONL log is written
    during the run."""
    out_dir = Path(out_dir)
    outputs = {"energies": plot_energies(episode, out_dir / "energies.png")}
    if video and episode.frames:
        outputs["video"] = write_episode_video(episode, out_dir / "episode.mp4", fps)
    return outputs
