"""Clips per second from 1280x720 raw-format DROID episodes: our seeking loader vs naive full-video decoding.

Writes a few synthetic episodes in the exact raw layout (H.264 1280x720, DROID's per-eye resolution) to a temporary
folder, then times, in the same run:
  - ours: `DroidClipDataset` (decode from the keyframe before the first clip frame up to the last one), PyAV and
    OpenCV backends, 0 and N DataLoader workers;
  - naive: the same clip sampling, but every clip decodes its whole video and picks 8 frames (what a loader without
    seeking does), 0 and N workers.
Run: .venv/bin/python -m bench.droid_loader [--episodes 3 --steps 90 --workers 2 --clips 24]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vjepa_ac.data.droid import CameraRecording, DroidClipDataset, EpisodeRecording, RawEpisode, write_episode
from vjepa_ac.data.droid.dataset import ClipConfig, sample_clip
from vjepa_ac.data.droid.video import decode_all_frames


def make_episodes(root: Path, episodes: int, steps: int) -> list[str]:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (90, 160, 3), dtype=np.uint8).repeat(8, axis=0).repeat(8, axis=1)
    folders = []
    for e in range(episodes):
        frames = np.stack([np.roll(base, 8 * i + 40 * e, axis=1) for i in range(steps)])
        xyz = 0.4 + np.cumsum(rng.normal(0, 0.005, (steps, 3)), axis=0)
        recording = EpisodeRecording(
            cartesian_position=np.concatenate([xyz, np.tile([np.pi, 0.0, 0.0], (steps, 1))], axis=1),
            gripper_position=np.zeros(steps),
            joint_positions=np.zeros((steps, 7)),
            cameras={
                "10000001": CameraRecording(frames, np.tile([0.3, 0.5, 0.4, 0, 0, 0], (steps, 1)), "exterior"),
            },
            lab="BENCH",
        )
        when = datetime(2024, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=e)
        folders.append(str(write_episode(root, recording, when=when)))
    return folders


class NaiveEpisode(RawEpisode):
    """Decodes the whole video for every request, then indexes it."""

    def read_frames(self, role: str, indices: Sequence[int]) -> np.ndarray:
        return decode_all_frames(self.video_path(role))[np.asarray(indices)]


class NaiveClipDataset(Dataset):
    def __init__(self, folders: list[str], clips: int, seed: int = 0):
        self.folders, self.clips, self.seed = folders, clips, seed
        self.config = ClipConfig()

    def __len__(self) -> int:
        return self.clips

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, 0, index])
        with NaiveEpisode(self.folders[index % len(self.folders)]) as episode:
            return sample_clip(episode, self.config, rng)


def clips_per_second(dataset: Dataset, workers: int) -> tuple[float, float | None]:
    """(clips/s wall clock, CPU seconds per clip); CPU time counts every thread of this process, so it is only
    reported without worker processes."""
    loader = DataLoader(dataset, batch_size=1, num_workers=workers, persistent_workers=False)
    start, cpu_start = time.perf_counter(), time.process_time()
    count = sum(1 for _ in loader)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return count / wall, (cpu / count if workers == 0 else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=3, help="synthetic 1280x720 episodes to write")
    parser.add_argument("--steps", type=int, default=90, help="steps (= frames) per episode")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes for the parallel runs")
    parser.add_argument("--clips", type=int, default=24, help="clips per timed run of our loader")
    parser.add_argument("--naive-clips", type=int, default=6, help="clips per timed run of the naive loader")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        folders = make_episodes(Path(tmp), args.episodes, args.steps)
        print(
            f"wrote {args.episodes} episodes x {args.steps} frames of 1280x720 H.264 in {time.perf_counter() - t0:.1f} s"
        )
        clips_per_episode = max(1, args.clips // len(folders))
        results = {}
        for backend in ("pyav", "opencv"):
            dataset = DroidClipDataset(folders, clips_per_episode=clips_per_episode, video_backend=backend)
            results[f"ours {backend}, 0 workers"] = clips_per_second(dataset, 0)
        dataset = DroidClipDataset(folders, clips_per_episode=clips_per_episode)
        results[f"ours pyav, {args.workers} workers"] = clips_per_second(dataset, args.workers)
        naive = NaiveClipDataset(folders, args.naive_clips)
        results["naive full decode, 0 workers"] = clips_per_second(naive, 0)
        results[f"naive full decode, {args.workers} workers"] = clips_per_second(naive, args.workers)
    baseline = results["naive full decode, 0 workers"][0]
    print(f"{'loader':<36} {'clips/s':>8} {'vs naive 0w':>12} {'CPU s/clip':>11}")
    for name, (rate, cpu) in results.items():
        cpu_text = f"{cpu:11.3f}" if cpu is not None else f"{'-':>11}"
        print(f"{name:<36} {rate:8.2f} {rate / baseline:11.1f}x {cpu_text}")
    ours, naive = f"ours pyav, {args.workers} workers", f"naive full decode, {args.workers} workers"
    pyav_cpu, opencv_cpu = results["ours pyav, 0 workers"][1], results["ours opencv, 0 workers"][1]
    print(
        f"seek vs full decode, same workers: 0w {results['ours pyav, 0 workers'][0] / baseline:.1f}x, "
        f"{args.workers}w {results[ours][0] / results[naive][0]:.1f}x; PyAV vs OpenCV (0w): "
        f"{results['ours pyav, 0 workers'][0] / results['ours opencv, 0 workers'][0]:.2f}x clips/s, "
        f"{opencv_cpu / pyav_cpu:.2f}x less CPU per clip"
    )


if __name__ == "__main__":
    main()
