"""`vjepa-ac lerobot export|info`: write DROID-format episodes as a LeRobot dataset, and check one."""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path


def _image_size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--image-size {text!r}: write HxW, e.g. 180x320") from None
    if height < 16 or width < 16:
        raise argparse.ArgumentTypeError(f"--image-size {text!r}: at least 16x16")
    return height, width


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "lerobot",
        help="LeRobot datasets: export DROID-format episodes, check a dataset",
        description="LeRobot datasets (codebase v2.0/v2.1/v3.0: meta/info.json, parquet episodes, MP4 videos per "
        "camera) are read wherever episodes are taken (`encode`, `train`, `pretrain`, `droid index|validate|"
        "inspect`): give the dataset folder, or <dataset>#<episode_index> for one episode.",
    )
    actions = parser.add_subparsers(dest="lerobot_command", metavar="ACTION")

    export = actions.add_parser(
        "export",
        help="write DROID-format episodes as a LeRobot dataset",
        description="Convert episodes (raw DROID folders, RLDS shards, index files, other LeRobot datasets) into a "
        "new LeRobot dataset with the DROID port's feature names (observation.state.cartesian_position, "
        "observation.images.exterior_1_left, camera_extrinsics.*, is_episode_successful) and H.264 videos. The "
        "dataset is assembled in a hidden folder and appears at --out only when complete; episodes that cannot be "
        "read or hold NaNs are listed and left out (exit status 1).",
    )
    export.add_argument("episodes", nargs="+", help="episode index file(s), folders to scan, or episode references")
    export.add_argument("--out", type=Path, required=True, help="new dataset folder (must not exist)")
    export.add_argument("--format", choices=("v3.0", "v2.1"), default="v3.0",
                        help="LeRobot codebase version to write (default v3.0: many episodes per file)")
    export.add_argument("--camera", action="append", default=[], choices=("ext1", "ext2", "wrist"),
                        help="camera role to export (repeatable; default: ext1, ext2 and wrist where present)")
    export.add_argument("--image-size", type=_image_size, default=None,
                        help="resize frames to HxW (default: the first episode's size)")
    export.add_argument("--robot-type", default="Franka", help="robot_type written to info.json (default Franka)")
    export.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    export.set_defaults(handler=_export)

    info = actions.add_parser(
        "info",
        help="summary of a LeRobot dataset; non-zero exit status if an episode's files are missing",
        description="Print version, rate, features and cameras of a LeRobot dataset and check that every episode's "
        "parquet rows and videos are there and agree with the metadata.",
    )
    info.add_argument("dataset", help="LeRobot dataset folder (holding meta/info.json)")
    info.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    info.set_defaults(handler=_info)

    parser.set_defaults(handler=lambda args: (parser.print_help(), 0)[1])


def _export(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from vjepa_ac.data.droid.index import resolve_episode_references
    from vjepa_ac.data.lerobot.writer import export_lerobot

    if args.out.exists():
        raise argparse.ArgumentTypeError(f"--out {args.out} exists; export into a new folder")
    references = resolve_episode_references(args.episodes)
    with tqdm(total=len(references), desc="export", unit="episode", disable=args.no_progress) as bar:
        summary = export_lerobot(references, args.out, version=args.format, cameras=args.camera or None,
                                 image_size=args.image_size, robot_type=args.robot_type,
                                 on_episode=lambda _: bar.update())
    for reference, problem in summary.failed.items():
        print(f"left out {reference}: {problem}", file=sys.stderr)
    print(f"wrote {len(summary.episodes)} episodes ({summary.frames} frames) to {summary.out} as LeRobot "
          f"{args.format}" + (f"; {len(summary.failed)} left out" if summary.failed else ""))
    return 1 if summary.failed else 0


def _info(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from vjepa_ac.data.droid.episode import EpisodeError
    from vjepa_ac.data.lerobot.format import LeRobotFormatError
    from vjepa_ac.data.lerobot.reader import LeRobotDataset

    if not Path(args.dataset).exists():
        raise FileNotFoundError(errno.ENOENT, "no such dataset folder", args.dataset)
    try:
        dataset = LeRobotDataset(args.dataset)
    except LeRobotFormatError as exc:
        raise EpisodeError(str(exc)) from exc
    info = dataset.info
    print(f"{dataset.root}: LeRobot {info.version}, {len(dataset.episodes)} episodes at {info.fps:g} Hz, robot "
          f"{info.robot_type or '?'}")
    print("cameras: " + ", ".join(info.video_keys) if info.video_keys else "cameras: none")
    numeric = [f"{k} {tuple(v.get('shape', ()))}" for k, v in info.features.items() if v.get("dtype") != "video"]
    print("features: " + ", ".join(numeric))
    problems = []
    for index in tqdm(sorted(dataset.episodes), desc="checking", unit="episode", disable=args.no_progress):
        try:
            with dataset.episode(index) as episode:
                if not np.all(np.isfinite(episode.states())):
                    raise EpisodeError(f"{episode.source}: states contain NaN or inf")
                for role in episode.camera_roles:
                    if episode.num_frames(role) < episode.num_steps:
                        raise EpisodeError(f"{episode.source}: camera {role!r} has {episode.num_frames(role)} frames "
                                           f"for {episode.num_steps} steps")
        except EpisodeError as exc:
            problems.append(str(exc))
    for problem in problems:
        print(f"broken: {problem}", file=sys.stderr)
    print(f"{len(dataset.episodes) - len(problems)} of {len(dataset.episodes)} episodes complete")
    return 1 if problems else 0
