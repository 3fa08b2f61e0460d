"""Finding episodes, opening them by reference, and episode index files.

An episode reference is either a raw episode folder (or its `trajectory.h5`), `<tfrecord shard>#<record number>`
for an RLDS episode, or `<LeRobot dataset root>#<episode index>` (a folder holding meta/info.json; see data.lerobot). An index file lists one reference per line; Meta's plain list (a CSV/text file whose first
space-separated column is a trajectory folder) is read the same way. Blank lines and `#` comments are ignored.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path

from vjepa_ac.data.droid import layout
from vjepa_ac.data.droid.episode import DroidEpisode, EpisodeError
from vjepa_ac.data.droid.raw import RawEpisode
from vjepa_ac.data.lerobot.format import is_lerobot_root

log = logging.getLogger(__name__)

RLDS_SEPARATOR = "#"


def is_rlds_shard(path: str | Path) -> bool:
    return ".tfrecord" in Path(path).name


def split_rlds_reference(reference: str) -> tuple[Path, int] | None:
    """(shard, record number) for `<shard>#<n>`, else None."""
    head, sep, tail = str(reference).rpartition(RLDS_SEPARATOR)
    if sep and tail.isdigit() and is_rlds_shard(head):
        return Path(head), int(tail)
    return None


def open_episode(reference: str | Path, *, video_backend: str | None = None) -> DroidEpisode:
    """Open a raw episode folder, its `trajectory.h5`, or an RLDS record `<shard>#<n>`; EpisodeError if impossible."""
    rlds = split_rlds_reference(str(reference))
    if rlds is not None:
        from vjepa_ac.data.droid.rlds import open_rlds_episode

        return open_rlds_episode(*rlds)
    lerobot = split_lerobot_reference(str(reference))
    if lerobot is not None:
        from vjepa_ac.data.lerobot.reader import open_lerobot_episode

        return open_lerobot_episode(*lerobot, video_backend=video_backend)
    return RawEpisode(reference, video_backend=video_backend)


def split_lerobot_reference(reference: str) -> tuple[Path, int] | None:
    """(LeRobot dataset root, episode index) for `<root>#<n>` where root holds meta/info.json, else None."""
    head, sep, tail = str(reference).rpartition(RLDS_SEPARATOR)
    if sep and tail.isdigit() and is_lerobot_root(head):
        return Path(head), int(tail)
    return None


def default_camera(references: Iterable[str]) -> tuple[str, str]:
    """The camera role to use when none is given, and why: "left" (the robot's left exterior camera, what Meta's
    V-JEPA 2-AC training reads) for raw episodes; "ext1" (the first exterior camera) when any reference is an RLDS
    record or a LeRobot episode, as those need not carry the extrinsics that tell left from right, while raw episodes
    have ext1 too."""
    references = list(references)
    if any(split_rlds_reference(r) is not None for r in references):
        return "ext1", "the first exterior camera: RLDS records have no left/right roles"
    if any(split_lerobot_reference(r) is not None for r in references):
        return "ext1", "the first exterior camera (LeRobot's observation.images.exterior_1_left)"
    return "left", "the robot's left exterior camera of raw DROID episodes"


def _walk(root: Path) -> Iterator[tuple[str, Path]]:
    """("raw", episode folder), ("rlds", shard) and ("lerobot", dataset root) items under `root` in sorted order, in one pass over the tree
    (hidden and partially written folders skipped; episode folders, which hold trajectory.h5 or a metadata JSON,
    are not descended into)."""
    if (root / layout.TRAJECTORY_FILE).is_file():
        yield "raw", root
        return
    if is_lerobot_root(root):
        yield "lerobot", root
        return
    for dirpath, dirnames, filenames in os.walk(root):
        if is_lerobot_root(dirpath):
            dirnames[:] = []
            yield "lerobot", Path(dirpath)
            continue
        # An episode folder that lost its trajectory.h5 still holds its metadata JSON: list it, so that it is
        # reported as broken instead of vanishing from the data set.
        if layout.TRAJECTORY_FILE in filenames or any(fnmatch(n, layout.METADATA_GLOB) for n in filenames):
            dirnames[:] = []
            yield "raw", Path(dirpath)
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if is_rlds_shard(name):
                yield "rlds", Path(dirpath) / name


WHAT_EPISODES_ARE = (
    "raw DROID episode folders holding trajectory.h5 (<lab>/success|failure/<date>/<time>/), RLDS shards named "
    "*.tfrecord* or LeRobot datasets (a folder with meta/info.json)"
)
"""What the scanners look for, for "found nothing" messages."""

BrokenShardHandler = Callable[[str, str], None]
"""Called with (reference of the first unreadable record, what is wrong) for a shard with a damaged tail."""


def _log_broken_shard(reference: str, problem: str) -> None:
    log.warning("skipping the unreadable rest of an RLDS shard from %s: %s", reference, problem)


def iter_episode_references(root: str | Path, *, on_broken_shard: BrokenShardHandler | None = None) -> Iterator[str]:
    """References of every raw episode under `root` and of every readable record of the RLDS shards under it.

    A truncated or corrupt shard does not stop the scan: its readable records are listed and `on_broken_shard`
    (default: a logged warning) hears about the rest, as `<shard>#<first unreadable record>`."""
    root = Path(root)
    items = [("rlds", root)] if root.is_file() and is_rlds_shard(root) else _walk(root)
    report = on_broken_shard or _log_broken_shard
    for kind, path in items:
        if kind == "raw":
            yield str(path)
            continue
        if kind == "lerobot":
            from vjepa_ac.data.lerobot.reader import open_dataset

            try:
                yield from open_dataset(path).references()
            except ValueError as exc:  # unreadable metadata or an unsupported version
                if path == root:  # the dataset asked for: its problem is the answer
                    raise EpisodeError(str(exc)) from exc
                report(str(path), str(exc))  # one of several found by a scan: say so, scan the rest
            continue
        from vjepa_ac.data.droid.rlds import scan_shard

        try:
            scan = scan_shard(path)
        except EpisodeError as exc:  # the file itself cannot be read
            report(f"{path}{RLDS_SEPARATOR}0", str(exc))
            continue
        for i in range(len(scan.offsets)):
            yield f"{path}{RLDS_SEPARATOR}{i}"
        if scan.problem:
            report(f"{path}{RLDS_SEPARATOR}{len(scan.offsets)}", scan.problem)


@dataclass
class EpisodeFilter:
    """Which episodes to keep; every unset criterion accepts all. Episodes that fail to open are never kept."""

    success_only: bool = False
    labs: tuple[str, ...] = ()
    min_steps: int = 0
    cameras: tuple[str, ...] = ()  # roles (or serials) that must be present, with a video
    extra: list[Callable[[DroidEpisode], bool]] = field(default_factory=list)

    @property
    def needs_opening(self) -> bool:
        return bool(self.success_only or self.labs or self.min_steps or self.cameras or self.extra)

    def accepts(self, episode: DroidEpisode) -> bool:
        if self.success_only and episode.success is not True:
            return False
        if self.labs and episode.lab not in self.labs:
            return False
        if self.min_steps and episode.num_steps < self.min_steps:
            return False
        for role in self.cameras:
            try:
                if episode.num_frames(role) <= 0:
                    return False
            except EpisodeError:
                return False
        return all(check(episode) for check in self.extra)


def write_index(path: str | Path, references: Iterable[str | Path]) -> int:
    """Write one reference per line (atomically); returns the number written."""
    path = Path(path)
    lines = [str(r) for r in references]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(f"{line}\n" for line in lines))
    os.replace(tmp, path)
    return len(lines)


def read_index(path: str | Path) -> list[str]:
    """References from an index file (ours or Meta's CSV list: first space-separated column of each line).

    Relative entries are resolved against the index file's folder, so an index can travel with its data.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise EpisodeError(f"{path}: cannot read episode index ({exc})") from exc
    except UnicodeDecodeError:
        raise EpisodeError(f"{path}: not a text file; expected an episode index (one episode per line) or "
                           f"{WHAT_EPISODES_ARE}") from None
    references = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        entry = line.split(" ")[0]
        if not os.path.isabs(entry):
            entry = str(path.parent / entry)
        references.append(entry)
    return references


def resolve_episode_references(
    episodes: str | Path | Iterable[str | Path], *, on_broken_shard: BrokenShardHandler | None = None
) -> list[str]:
    """A list of references from an index file, a root folder / shard to scan, an episode reference, or a list of
    any of these. A given source that does not exist is a FileNotFoundError (the entries of an index file are not
    checked here: opening them reports a missing one per episode); damaged shards go to `on_broken_shard` (see
    `iter_episode_references`); finding no episode at all is an EpisodeError that says where it looked and what it
    expected."""
    sources = [episodes] if isinstance(episodes, (str, Path)) else list(episodes)
    references: list[str] = []
    for item in sources:
        source = Path(item)
        if split_rlds_reference(str(item)) is not None or split_lerobot_reference(str(item)) is not None:
            references.append(str(item))
        elif source.is_file() and not is_rlds_shard(source) and source.name != layout.TRAJECTORY_FILE:
            references += read_index(source)
        elif source.exists():
            references += iter_episode_references(source, on_broken_shard=on_broken_shard)
        else:
            raise FileNotFoundError(errno.ENOENT, "no such episode index, folder or shard", str(source))
    if not references:
        where = ", ".join(str(s) for s in sources) or "(no input given)"
        raise EpisodeError(f"no episodes found in {where}: expected an index file or {WHAT_EPISODES_ARE}")
    return references
