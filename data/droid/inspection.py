"""Human-readable views of one episode: a text summary and a review video (camera views over state/action plots)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from vjepa_ac.data.droid.episode import DroidEpisode, EpisodeError
from vjepa_ac.data.droid.video import write_video

_PANEL_HEIGHT = 180


def episode_summary(episode: DroidEpisode) -> str:
    """Length, cameras, task, outcome and value ranges, one fact per line."""
    lines = [
        f"episode   {episode.episode_id}",
        f"steps     {episode.num_steps} ({episode.num_steps / episode.fps:.1f} s at {episode.fps:g} Hz)",
        f"success   {episode.success}",
        f"task      {episode.task or '-'}",
        f"lab       {episode.lab or '-'}",
        f"version   {episode.version or '-'}",
    ]
    for role, serial in sorted(episode.camera_roles.items()):
        try:
            frames = episode.num_frames(role)
            first = episode.read_frames(role, [0])[0]
            detail = f"{frames} frames, {first.shape[1]}x{first.shape[0]}"
        except EpisodeError as exc:
            detail = f"unreadable: {exc}"
        lines.append(f"camera    {role:<6} {serial}  {detail}")
    states = episode.states()
    names = ("x", "y", "z", "roll", "pitch", "yaw", "gripper")
    for name, column in zip(names, states.T):
        lines.append(f"state     {name:<8} min {np.nanmin(column):+.3f}  max {np.nanmax(column):+.3f}")
    return "\n".join(lines)


def _plot_background(
    states: np.ndarray, actions: np.ndarray, width: int, height: int
) -> tuple[np.ndarray, tuple[float, float, list[float]]]:
    """RGB image of the state and action curves; pixel x of step 0 and of the last step on the first plot, and each
    plot's horizontal offset from the first (for the time cursor)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dpi = 100
    fig, axes = plt.subplots(1, 3, figsize=(width / dpi, height / dpi), dpi=dpi, sharex=True)
    steps = np.arange(len(states))
    for k, label in enumerate("xyz"):
        axes[0].plot(steps, states[:, k], label=label)
    axes[0].set_title("position [m]", fontsize=8)
    for k, label in enumerate(("roll", "pitch", "yaw")):
        axes[1].plot(steps, states[:, 3 + k], label=label)
    axes[1].plot(steps, states[:, 6], label="gripper", color="k")
    axes[1].set_title("orientation [rad], gripper", fontsize=8)
    if len(actions):
        for k, label in enumerate(("dx", "dy", "dz")):
            axes[2].plot(steps[:-1], actions[:, k], label=label)
    axes[2].set_title("actions Δxyz [m]", fontsize=8)
    for ax in axes:
        ax.legend(fontsize=6, loc="upper right")
        ax.tick_params(labelsize=6)
        ax.set_xlim(0, max(len(states) - 1, 1))
    fig.tight_layout()
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    # Pixel columns of step 0 and the last step on the first axes (all share x).
    x0, _ = axes[0].transData.transform((0, 0))
    x1, _ = axes[0].transData.transform((max(len(states) - 1, 1), 0))
    lefts = [ax.transData.transform((0, 0))[0] - x0 for ax in axes]
    plt.close(fig)
    return image, (x0, x1, lefts)


def render_review_video(episode: DroidEpisode, out: str | Path, *, progress: bool = True) -> Path:
    """Write an MP4 with every camera side by side (height 180) above state/action plots with a moving time cursor."""
    # One panel per physical camera, named by its most telling role.
    preference = ("left", "right", "wrist", "ext1", "ext2")
    by_serial: dict[str, str] = {}
    for role, serial in sorted(
        episode.camera_roles.items(), key=lambda kv: (preference.index(kv[0]) if kv[0] in preference else 99, kv[0])
    ):
        by_serial.setdefault(serial, role)
    roles = list(by_serial.values())
    if not roles:
        raise EpisodeError(f"{episode.episode_id}: no cameras to show")
    steps = min(episode.usable_steps(role) for role in roles)
    states = episode.states()[:steps]
    actions = episode.actions()[: max(steps - 1, 0)] if steps > 1 else np.zeros((0, 7))
    scaled = {}
    for role in roles:
        first = episode.read_frames(role, [0])[0]
        scaled[role] = max(1, round(first.shape[1] * _PANEL_HEIGHT / first.shape[0]))
    width = sum(scaled.values())
    width += width % 2
    plot, (x0, x1, lefts) = _plot_background(states, actions, width, 240)
    plot = cv2.resize(plot, (width, 240))
    chunk = 64
    video = []
    for start in tqdm(range(0, steps, chunk), desc="rendering", unit="chunk", disable=not progress):
        indices = list(range(start, min(start + chunk, steps)))
        views = [
            np.stack([cv2.resize(f, (scaled[role], _PANEL_HEIGHT)) for f in episode.read_frames(role, indices)])
            for role in roles
        ]
        top = np.concatenate(views, axis=2)
        if top.shape[2] < width:
            top = np.pad(top, ((0, 0), (0, 0), (0, width - top.shape[2]), (0, 0)))
        for k, step in enumerate(indices):
            panel = plot.copy()
            for left in lefts:
                x = round(x0 + left + (x1 - x0) * step / max(steps - 1, 1))
                panel[:, max(0, min(x, width - 1))] = (220, 30, 30)
            frame = np.concatenate([top[k], panel], axis=0)
            for j, role in enumerate(roles):
                cv2.putText(
                    frame,
                    role,
                    (sum(list(scaled.values())[:j]) + 4, 14),
                    cv2.FONT_HERSHEY_SIMPLEX,
                    0.45,
                    (255, 255, 0),
                    1,
                )
            video.append(frame)
    return write_video(out, np.stack(video), episode.fps)
