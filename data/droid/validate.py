"""Check DROID episodes and say exactly what is wrong with each; one bad episode never stops the run."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from vjepa_ac.data.droid import layout
from vjepa_ac.data.droid.episode import DroidEpisode, EpisodeError
from vjepa_ac.data.droid.index import open_episode
from vjepa_ac.data.droid.raw import RawEpisode

_REQUIRED_KEYS = {
    layout.CARTESIAN_POSITION: (6,),
    layout.GRIPPER_POSITION: (),
    layout.JOINT_POSITIONS: (7,),
}


@dataclass
class EpisodeReport:
    """Outcome of checking one episode: problems make it unusable, warnings are handled by the readers."""

    reference: str
    episode_id: str = ""
    num_steps: int = 0
    success: bool | None = None
    task: str = ""
    frames: dict[str, int] = field(default_factory=dict)  # role -> video frames
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def kinds(self) -> list[str]:
        """The category of each problem (see `problem_kind`)."""
        return [problem_kind(p) for p in self.problems]

    def to_json(self) -> dict:
        return {**asdict(self), "ok": self.ok, "kinds": self.kinds}


# (pattern, kind) in order: the first pattern found in a problem message names its kind. The patterns match the
# wording of the readers' and checks' messages, not the paths inside them.
_PROBLEM_KINDS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), kind)
    for pattern, kind in (
        (r"not an episode folder", "missing episode"),
        (r": missing trajectory\.h5", "missing h5"),
        (r"unreadable or truncated HDF5", "unreadable h5"),
        (r"truncated: record", "truncated shard"),
        (r"corrupt record length|fails its CRC check", "corrupt shard"),
        (r"cannot read shard", "unreadable shard"),
        (r"NaN/inf", "NaN/inf"),
        (r"missing dataset |RLDS record has no ", "missing key"),
        (r"has shape .*, expected|holds \d+ values, expected|is a group, expected", "wrong shape"),
        (r"missing video ", "missing video"),
        (r"video has \d+ frames for \d+ h5 rows|has \d+ rows, .* has \d+|has \d+ values for \d+ steps",
         "length mismatch"),
        (r"no exterior camera", "missing camera"),
        (r"cannot open video|unreadable video stream|decoding stopped|could not decode|cannot decode video|"
         r"video has no frames|not a decodable JPEG", "bad video"),
        (r"metadata JSON", "bad metadata"),
        (r"only \d+ steps", "too short"),
    )
)


def problem_kind(message: str) -> str:
    """The category of a problem message, for the summary table and the report."""
    for pattern, kind in _PROBLEM_KINDS:
        if pattern.search(message):
            return kind
    return "other"


def _check_h5(episode: RawEpisode, report: EpisodeReport) -> None:
    h5 = episode.h5()
    steps = report.num_steps
    for key, tail in _REQUIRED_KEYS.items():
        if key not in h5:
            report.problems.append(f"missing dataset {key}")
            continue
        shape = h5[key].shape
        if shape[1:] != tail and not (tail == () and shape[1:] == (1,)):
            report.problems.append(f"{key} has shape {shape}, expected (T, {', '.join(map(str, tail))})")

    def visit(name: str, node) -> None:
        if not isinstance(node, h5py.Dataset) or node.ndim == 0:
            return
        if node.shape[0] != steps:
            report.problems.append(f"{name} has {node.shape[0]} rows, cartesian_position has {steps}")
            return
        if node.dtype.kind == "f":
            try:
                values = node[()]
            except OSError as exc:
                report.problems.append(f"{name}: unreadable ({exc})")
                return
            bad = ~np.isfinite(values.reshape(steps, -1)).all(axis=1) if steps else np.zeros(0, bool)
            if bad.any():
                rows = np.flatnonzero(bad)
                report.problems.append(f"{name}: NaN/inf in {len(rows)} rows (first {rows[0]})")

    h5.visititems(visit)
    meta_length = episode.metadata.get("trajectory_length")
    if meta_length is not None and int(meta_length) != steps:
        report.warnings.append(f"metadata trajectory_length {meta_length} != {steps} h5 rows")
    if episode.metadata_path is None:
        report.warnings.append("no metadata JSON; camera roles come from the h5 camera types")


def _check_cameras(episode: DroidEpisode, report: EpisodeReport) -> None:
    roles = episode.camera_roles
    if not any(role in roles for role in ("left", "ext1")):
        report.problems.append("no exterior camera")
    for role in sorted(roles):
        try:
            frames = episode.num_frames(role)
            report.frames[role] = frames
            if frames == report.num_steps - 1:
                report.warnings.append(f"camera {role}: video is one frame short of the h5 (handled)")
            elif frames != report.num_steps:
                report.problems.append(f"camera {role}: video has {frames} frames for {report.num_steps} h5 rows")
            if frames:
                episode.read_frames(role, [0, frames - 1])  # the whole stream must decode to its end
        except EpisodeError as exc:
            report.problems.append(f"camera {role}: {exc}")


def validate_episode(reference: str | Path) -> EpisodeReport:
    """Check one episode (raw folder or `shard#n`) and report every problem found."""
    report = EpisodeReport(reference=str(reference))
    try:
        episode = open_episode(reference)
    except EpisodeError as exc:
        report.problems.append(str(exc))
        return report
    with episode:
        try:
            report.episode_id = episode.episode_id
            report.num_steps = episode.num_steps
            report.success = episode.success
            report.task = episode.task
            if isinstance(episode, RawEpisode):
                _check_h5(episode, report)
            else:
                for name, values in (("states", episode.states()), ("joint positions", episode.joint_positions())):
                    if not np.all(np.isfinite(values)):
                        report.problems.append(f"{name}: NaN/inf values")
            _check_cameras(episode, report)
            if report.num_steps < 2:
                report.problems.append(f"only {report.num_steps} steps; no action can be derived")
        except EpisodeError as exc:
            report.problems.append(str(exc))
        except (OSError, KeyError, ValueError) as exc:
            report.problems.append(f"unreadable: {type(exc).__name__}: {exc}")
    return report


def validate_episodes(
    references: Iterable[str], *, report_path: str | Path | None = None, progress: bool = True, workers: int = 0
) -> list[EpisodeReport]:
    """Validate every episode (in `workers` processes if > 1), writing one JSON line per episode to `report_path` as
    results arrive, in input order."""
    references = list(references)
    reports = []
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(open(report_path, "w")) if report_path else None
        if workers > 1:
            pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(workers))
            results = pool.imap(validate_episode, references, chunksize=4)
        else:
            results = map(validate_episode, references)
        for report in tqdm(results, total=len(references), desc="validating", unit="episode", disable=not progress):
            reports.append(report)
            if out:
                out.write(json.dumps(report.to_json()) + "\n")
                out.flush()
    return reports


def summary_table(reports: list[EpisodeReport]) -> str:
    """Counts of good/bad episodes and of each kind of problem, as a plain-text table."""
    bad = [r for r in reports if not r.ok]
    kinds = Counter(kind for r in bad for kind in r.kinds)
    warned = sum(1 for r in reports if r.warnings)
    rows = [
        ("episodes checked", len(reports)),
        ("ok", len(reports) - len(bad)),
        ("failed", len(bad)),
        ("with warnings", warned),
    ]
    rows += [(f"  {kind}", count) for kind, count in kinds.most_common()]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {count:>8}" for name, count in rows]
    for report in bad[:20]:
        lines.append(f"FAIL [{report.kinds[0]}] {report.reference}: {report.problems[0]}")
    if len(bad) > 20:
        lines.append(f"... and {len(bad) - 20} more failed episodes (see the report file)")
    return "\n".join(lines)
