"""`vjepa-ac droid index|validate|inspect`: list, check and look at DROID episodes."""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path


def register(subparsers) -> None:
    droid = subparsers.add_parser(
        "droid",
        help="list, check and inspect DROID episodes (raw folders or RLDS shards)",
        description="Work with DROID data in the raw layout (<LAB>/success|failure/<day>/<time>/trajectory.h5 + MP4s) "
        "or as RLDS TFRecord shards.",
    )
    actions = droid.add_subparsers(dest="droid_command", metavar="ACTION")

    index = actions.add_parser(
        "index",
        help="write the list of episodes under ROOT (the plain list training reads)",
        description="Find every episode under ROOT (raw folders holding trajectory.h5, or every record of the "
        "*.tfrecord* shards) and write one reference per line. Filters open each episode.",
    )
    index.add_argument("root", help="DROID root folder, lab folder, or RLDS shard folder/file")
    index.add_argument("-o", "--output", default="-", help="index file to write ('-' = standard output)")
    index.add_argument("--success-only", action="store_true", help="keep only episodes marked successful")
    index.add_argument("--lab", action="append", default=[], help="keep only this lab (repeatable)")
    index.add_argument("--min-steps", type=int, default=0, help="keep only episodes with at least this many steps")
    index.add_argument(
        "--camera",
        action="append",
        default=[],
        help="keep only episodes with a video for this role, e.g. left (repeatable)",
    )
    index.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    index.set_defaults(handler=_index)

    validate = actions.add_parser(
        "validate",
        help="check every episode; non-zero exit status if any is broken",
        description="Check every episode for missing/unreadable files, length mismatches, NaN/inf values, wrong "
        "shapes, unreadable videos and missing cameras. Never stops at a bad episode; prints a summary table and "
        "writes one JSON line per episode.",
    )
    validate.add_argument("root", help="DROID root folder, an index file, an episode folder or an RLDS shard")
    validate.add_argument(
        "--report", default="droid_validation.jsonl", help="per-episode report file (JSON lines; default %(default)s)"
    )
    validate.add_argument(
        "--workers", type=int, default=0, help="check episodes in this many processes (default: in this process)"
    )
    validate.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    validate.set_defaults(handler=_validate)

    inspect = actions.add_parser(
        "inspect",
        help="summary of one episode, optionally a review video",
        description="Print length, cameras, task, outcome and value ranges of one episode (a raw folder or "
        "<shard>#<n>); with --video, also render the camera views above state/action plots.",
    )
    inspect.add_argument("episode", help="episode folder, its trajectory.h5, or <shard>#<record number>")
    inspect.add_argument("--video", metavar="OUT.mp4", help="write a review video with camera views and plots")
    inspect.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    inspect.set_defaults(handler=_inspect)

    droid.set_defaults(handler=lambda args: (droid.print_help(), 0)[1])


def _index(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from vjepa_ac.data.droid.episode import EpisodeError
    from vjepa_ac.data.droid.index import WHAT_EPISODES_ARE, EpisodeFilter, iter_episode_references, open_episode, write_index

    if not Path(args.root).exists():
        raise FileNotFoundError(errno.ENOENT, "no such folder or shard", args.root)
    criteria = EpisodeFilter(
        success_only=args.success_only, labs=tuple(args.lab), min_steps=args.min_steps, cameras=tuple(args.camera)
    )
    kept, found, skipped = [], 0, 0

    def report_broken(reference: str, problem: str) -> None:
        nonlocal skipped
        skipped += 1
        print(f"skipped {reference}: {problem}", file=sys.stderr)

    references = iter_episode_references(args.root, on_broken_shard=report_broken)
    for reference in tqdm(references, desc="indexing", unit="episode", disable=args.no_progress):
        found += 1
        if criteria.needs_opening:
            try:
                with open_episode(reference) as episode:
                    if not criteria.accepts(episode):
                        continue
            except EpisodeError as exc:
                report_broken(reference, str(exc))
                continue
        kept.append(reference)
    if not found:
        raise EpisodeError(f"no episodes found under {args.root}: expected {WHAT_EPISODES_ARE}")
    if not kept:
        raise EpisodeError(f"none of the {found} episodes under {args.root} passes the filters")
    if args.output == "-":
        sys.stdout.write("".join(f"{r}\n" for r in kept))
    else:
        write_index(args.output, kept)
        print(f"wrote {len(kept)} episodes to {args.output}" + (f" ({skipped} unreadable skipped)" if skipped else ""))
    return 0


def _validate(args: argparse.Namespace) -> int:
    from vjepa_ac.data.droid.index import resolve_episode_references
    from vjepa_ac.data.droid.validate import summary_table, validate_episodes

    # A damaged shard's first unreadable record is checked like an episode, so the report names the damage.
    broken: list[str] = []
    references = resolve_episode_references(args.root, on_broken_shard=lambda reference, _: broken.append(reference))
    reports = validate_episodes(
        references + broken, report_path=args.report, progress=not args.no_progress, workers=args.workers
    )
    print(summary_table(reports))
    print(f"per-episode report: {args.report}")
    return 0 if all(r.ok for r in reports) else 1


def _inspect(args: argparse.Namespace) -> int:
    from vjepa_ac.data.droid.index import open_episode
    from vjepa_ac.data.droid.inspection import episode_summary, render_review_video

    with open_episode(args.episode) as episode:
        print(episode_summary(episode))
        if args.video:
            path = render_review_video(episode, args.video, progress=not args.no_progress)
            print(f"review video: {path}")
    return 0
