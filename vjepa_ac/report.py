"""Evaluation statistics and the tables `vjepa-ac eval` writes (Markdown for people, JSON for scripts).

Pure functions over per-episode outcomes: no simulator, model or planner is imported here, so the maths can be tested
on its own and reused for real-robot logs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

from vjepa_ac.planner.report import json_safe


@dataclass(frozen=True)
class EpisodeOutcome:
    """What one closed-loop episode achieved."""

    task: str
    seed: int
    success: bool
    final_distance: float
    """Distance to the task's goal at the end, metres: the cube's for tasks that move it (grasp, reach with object,
    pick-and-place), the flange's for reach (`sim.tasks.Task.info()["goal_distance"]`)."""
    steps: int
    """Actions executed."""
    planning_seconds: tuple[float, ...]
    """Wall time spent planning each executed action."""
    final_energies: tuple[float, ...] = ()
    """Planner energy (latent L1 to the goal) of the chosen plan at each step."""
    subgoal_distances: tuple[float | None, ...] = ()
    """Per sub-goal: the flange's distance (m) to that sub-goal's pose when the planner moved on from it (the last
    one: at the end); None for sub-goals never reached. Shows where in the episode a failure happens."""

    @property
    def mean_planning_seconds(self) -> float:
        return float(sum(self.planning_seconds) / len(self.planning_seconds)) if self.planning_seconds else math.nan


@dataclass(frozen=True)
class TaskSummary:
    """Success rate with its Wilson interval and the averages a results table prints."""

    task: str
    episodes: int
    successes: int
    success_low: float
    success_high: float
    mean_final_distance: float
    mean_planning_seconds: float
    mean_steps: float
    planner: str
    """Planner settings, e.g. "CEM 64 samples x 4 iters x horizon 2"."""

    @property
    def success_rate(self) -> float:
        return self.successes / self.episodes if self.episodes else math.nan


@dataclass(frozen=True)
class OpenLoopError:
    """World-model rollout error against encoded ground-truth frames, one entry per horizon step (1-based)."""

    horizon: int
    clips: int
    model_l1: tuple[float, ...]
    """Mean |z_pred - z_true| of the normalised latents when the predictor rolls out the recorded actions."""
    copy_l1: tuple[float, ...]
    """Same metric for the "nothing moves" baseline that predicts the context frame at every step."""


@dataclass(frozen=True)
class EnergyLandscape:
    """How well the encoder's goal energy of real frames tracks the flange's distance to the goal
    (`vjepa_ac.landscape`)."""

    goals: int
    poses_per_goal: int
    rank_correlation: float
    """Mean Spearman correlation of energy and distance over workspace poses (1 = same order)."""
    path_descending: float
    """Share of steps along the straight start-to-goal path on which the energy falls."""
    path_barrier_share: float
    """Share of goals whose straight path rises above the start's energy somewhere."""
    near_cube_rank_correlation: float = math.nan
    """Mean Spearman correlation of energy and offset for arm poses within 6 cm of a grasp's straddle pose."""
    near_cube_axis_share: tuple[float, ...] = ()
    """Per base axis x, y, z: energy 2 cm off the straddle pose as a share of the energy 8 cm off."""


@dataclass
class EvaluationReport:
    """Everything one `vjepa-ac eval` run measured, plus how to reproduce it."""

    summaries: list[TaskSummary]
    outcomes: list[EpisodeOutcome]
    open_loop: OpenLoopError | None = None
    landscape: EnergyLandscape | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    """Checkpoint, command line, machine, versions."""


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (0, 1) when n == 0.

    Preferred over the normal approximation because it stays inside [0, 1] and is sensible at 0/n and n/n, which is
    where small robot evaluations usually land.
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    p = successes / n
    z2_n = z * z / n
    centre = (p + z2_n / 2.0) / (1.0 + z2_n)
    half = z / (1.0 + z2_n) * math.sqrt(p * (1.0 - p) / n + z2_n / (4.0 * n))
    # Clamp rounding noise so that 0/n gives exactly 0 and n/n exactly 1.
    return max(0.0, centre - half), min(1.0, centre + half)


def summarize(task: str, outcomes: Sequence[EpisodeOutcome], planner: str) -> TaskSummary:
    """Aggregate the outcomes of one task."""
    mine = [o for o in outcomes if o.task == task]
    if not mine:
        raise ValueError(f"no outcomes for task {task!r}")
    successes = sum(o.success for o in mine)
    low, high = wilson_interval(successes, len(mine))
    planning = [s for o in mine for s in o.planning_seconds]
    return TaskSummary(
        task=task,
        episodes=len(mine),
        successes=successes,
        success_low=low,
        success_high=high,
        mean_final_distance=_mean([o.final_distance for o in mine]),
        mean_planning_seconds=_mean(planning),
        mean_steps=_mean([o.steps for o in mine]),
        planner=planner,
    )


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else math.nan


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100.0 * x:.0f}%"


def format_summary_table(summaries: Sequence[TaskSummary]) -> str:
    """The success table as GitHub Markdown."""
    lines = [
        "| task | success | n | 95% CI (Wilson) | final distance (m) | planning s/action | steps | planner |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        lines.append(
            f"| {s.task} | {s.successes}/{s.episodes} ({_pct(s.success_rate)}) | {s.episodes} "
            f"| {_pct(s.success_low)} - {_pct(s.success_high)} | {s.mean_final_distance:.3f} "
            f"| {s.mean_planning_seconds:.2f} | {s.mean_steps:.1f} | {s.planner} |"
        )
    return "\n".join(lines)


def format_open_loop_table(error: OpenLoopError) -> str:
    """Per-horizon-step rollout error as GitHub Markdown, with the copy-last-frame baseline beside it."""
    lines = [
        "| step | world model L1 | copy-context L1 | ratio |",
        "|---|---|---|---|",
    ]
    for k, (model, copy) in enumerate(zip(error.model_l1, error.copy_l1), start=1):
        ratio = model / copy if copy > 0 else math.nan
        lines.append(f"| {k} | {model:.4f} | {copy:.4f} | {ratio:.2f} |")
    return "\n".join(lines)


def format_landscape_table(landscape: EnergyLandscape) -> str:
    """The energy-landscape measures as GitHub Markdown."""
    return "\n".join([
        "| measure | value |",
        "|---|---|",
        f"| rank correlation of energy and distance ({landscape.poses_per_goal} workspace poses per goal) "
        f"| {landscape.rank_correlation:.3f} |",
        f"| straight path to the goal: share of steps where the energy falls | {landscape.path_descending:.3f} |",
        f"| straight path to the goal: goals with an energy barrier | {_pct(landscape.path_barrier_share)} |",
        f"| near the cube (offsets within 6 cm of the straddle pose): rank correlation "
        f"| {landscape.near_cube_rank_correlation:.3f} |",
        "| near the cube: energy 2 cm off as a share of 8 cm off, along x / y / z | "
        + (" / ".join(f"{v:.2f}" for v in landscape.near_cube_axis_share) or "n/a") + " |",
    ])


def format_outcome_line(outcome: EpisodeOutcome) -> str:
    """One human-readable line per episode, as the demo and eval print them."""
    verdict = "SUCCESS" if outcome.success else "failure"
    return (
        f"{outcome.task:<18} seed {outcome.seed:<5} {verdict:<8} final distance {outcome.final_distance:.3f} m, "
        f"{outcome.steps} actions, {outcome.mean_planning_seconds:.2f} s planning/action"
        + ("" if len(outcome.subgoal_distances) < 2 else ", flange off each sub-goal (cm): " + " ".join(
            "-" if d is None else f"{100 * d:.1f}" for d in outcome.subgoal_distances))
    )


def format_markdown(report: EvaluationReport) -> str:
    """The whole report as a Markdown document."""
    parts = ["# Closed-loop evaluation", ""]
    if report.summaries:
        parts += [format_summary_table(report.summaries), "",
                  "Final distance: the cube's distance to its goal position for tasks that move it (grasp, reach "
                  "with object, pick-and-place), the flange's distance to its goal for reach.", ""]
    else:
        parts += ["No closed-loop episodes in this run (`--episodes 0`).", ""]
    if report.open_loop is not None:
        ol = report.open_loop
        parts += [
            f"## Open-loop prediction error ({ol.clips} held-out clips, horizon {ol.horizon})",
            "",
            "Mean absolute error of the layer-normalised latents; lower is better, and the ratio below 1 means the",
            "predictor beats predicting that nothing moves.",
            "",
            format_open_loop_table(ol),
            "",
        ]
    if report.landscape is not None:
        parts += [f"## Energy landscape of the encoder ({report.landscape.goals} reach goals and grasp poses)", "",
                  format_landscape_table(report.landscape), ""]
    if report.meta:
        parts += ["## Run", ""]
        parts += [f"- {key}: `{value}`" for key, value in report.meta.items()]
        parts.append("")
    return "\n".join(parts)


def report_to_dict(report: EvaluationReport) -> dict[str, Any]:
    summaries = []
    for s in report.summaries:
        entry = asdict(s)
        entry["success_rate"] = s.success_rate
        summaries.append(entry)
    return json_safe(
        {
            "summaries": summaries,
            "outcomes": [asdict(o) for o in report.outcomes],
            "open_loop": asdict(report.open_loop) if report.open_loop is not None else None,
            "landscape": asdict(report.landscape) if report.landscape is not None else None,
            "meta": report.meta,
        }
    )


def outcome_from_dict(entry: dict[str, Any]) -> EpisodeOutcome:
    """Inverse of `dataclasses.asdict` on an `EpisodeOutcome` read back from JSON (nulls become NaN)."""
    fields = dict(entry)
    fields["final_distance"] = math.nan if fields["final_distance"] is None else float(fields["final_distance"])
    for name in ("planning_seconds", "final_energies", "subgoal_distances"):
        fields[name] = tuple(fields.get(name) or ())
    return EpisodeOutcome(**fields)


class OutcomeJournal:
    """Finished episodes of an evaluation, one JSON line each, appended as they finish: a killed evaluation rerun
    with the same settings (`run_key`) skips them instead of starting over. Lines of other settings, and a torn
    last line left by a kill, are ignored."""

    def __init__(self, path: str | Path, run_key: dict[str, Any]) -> None:
        self.path = Path(path)
        self.run_key = json.loads(json.dumps(json_safe(run_key), sort_keys=True))

    def finished(self) -> dict[tuple[str, int], EpisodeOutcome]:
        """(task, seed) -> outcome of the episodes already run with this journal's settings."""
        done: dict[tuple[str, int], EpisodeOutcome] = {}
        if not self.path.is_file():
            return done
        for line in self.path.read_text().splitlines():
            try:
                entry = json.loads(line)
                if entry.get("run") != self.run_key:
                    continue
                outcome = outcome_from_dict(entry["outcome"])
            except (ValueError, KeyError, TypeError):
                continue  # a torn line from a kill mid-write, or a foreign format
            done[(outcome.task, outcome.seed)] = outcome
        return done

    def append(self, outcome: EpisodeOutcome) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"run": self.run_key, "outcome": json_safe(asdict(outcome))}, sort_keys=True)
        with open(self.path, "ab+") as handle:
            # A kill may have torn the previous line; start on a fresh one so this record stays readable.
            if handle.seek(0, 2) > 0:
                handle.seek(-1, 2)
                if handle.read(1) != b"\n":
                    handle.write(b"\n")
            handle.write(line.encode() + b"\n")
            handle.flush()


def write_report(report: EvaluationReport, out_dir: str | Path, stem: str = "report") -> tuple[Path, Path]:
    """Write `<stem>.md` and `<stem>.json` into `out_dir` (created if needed); returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md_path, json_path = out / f"{stem}.md", out / f"{stem}.json"
    md_path.write_text(format_markdown(report))
    json_path.write_text(json.dumps(report_to_dict(report), indent=2) + "\n")
    return md_path, json_path
