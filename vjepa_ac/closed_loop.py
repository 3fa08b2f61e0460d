"""The closed loop behind `vjepa-ac demo` and `vjepa-ac eval`: load a world model with its planning settings, run
sim episodes through `planner.run_mpc`, and turn the logs into outcomes, videos and reports.

Planning settings travel with a checkpoint in a model card, `<checkpoint stem>.json` beside it (the embedded default
model has one); a checkpoint without a card (e.g. Meta's `vjepa2-ac-vitg.pt`) gets the planner's paper defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from vjepa_ac.action_repeat import ActionRepeatRobot, control_periods_per_step
from vjepa_ac.report import (
    EpisodeOutcome,
    EvaluationReport,
    format_markdown,
    format_outcome_line,
    format_summary_table,
    summarize,
    write_report,
)
from vjepa_ac.video import EpisodeVideo, write_episode_videos

log = logging.getLogger(__name__)


@dataclass
class PlanningDefaults:
    """How a checkpoint is meant to be driven: its model card, or the paper defaults without one."""

    crop: str | None = "droid"
    """Crop before resizing frames; must be the one the predictor was trained with."""
    camera: str = "left"
    planner: dict[str, Any] = field(default_factory=dict)
    """`planner.CEMConfig` fields; "space" holds `SearchSpace` fields."""
    mpc: dict[str, Any] = field(default_factory=dict)
    """`planner.mpc.MPCConfig` fields other than the planner (e.g. switch_energy, stop_energy)."""
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-task `MPCConfig` overrides (e.g. a goal schedule for pick-and-place); a "planner" entry overrides planner
    fields (e.g. pinning Δgripper while reaching)."""
    sim: dict[str, Any] = field(default_factory=dict)
    """`sim.robot.SimConfig` fields for the scene the model was trained on (e.g. image_size, cameras), plus
    "workspace_min" / "workspace_max" (base-frame box for the flange, m) replacing those of the default
    `robot.limits.ActionLimits`."""
    fps: float = 4.0
    """Frame rate the predictor was trained at (open-loop clips are cut at this rate)."""
    card: dict[str, Any] = field(default_factory=dict)
    """The whole model card, for the report."""

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> PlanningDefaults:
        known = {f.name for f in dataclasses.fields(cls)} - {"card"}
        values = {k: v for k, v in card.items() if k in known}
        # JSON has no tuples; SimConfig's sequence fields (image_size, cameras) are tuples.
        values["sim"] = {k: tuple(v) if isinstance(v, list) else v for k, v in values.get("sim", {}).items()}
        return cls(**values, card=card)


def model_card_path(checkpoint: Path) -> Path:
    return checkpoint.with_suffix(".json")


def resolve_checkpoint(checkpoint: Path | None) -> Path:
    """The checkpoint to use: the given one or the embedded default (with a clear error if it is missing)."""
    if checkpoint is not None:
        return Path(checkpoint)
    from vjepa_ac.default_model import DEFAULT_CHECKPOINT

    if not DEFAULT_CHECKPOINT.is_file():
        raise FileNotFoundError(
            f"the embedded default model {DEFAULT_CHECKPOINT} is missing; rebuild it with recipes/default_model.sh "
            "or pass --checkpoint"
        )
    return DEFAULT_CHECKPOINT


def load_planning_defaults(checkpoint: Path) -> PlanningDefaults:
    card_path = model_card_path(checkpoint)
    if not card_path.is_file():
        log.info("no model card %s; using the planner's paper defaults", card_path)
        return PlanningDefaults()
    try:
        card = json.loads(card_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"model card {card_path} is not valid JSON: {exc}") from None
    return PlanningDefaults.from_card(card)


def sim_config_options(sim: dict[str, Any]) -> dict[str, Any]:
    """`make_env` options from a model card's "sim" section (workspace bounds become `ActionLimits`)."""
    options = dict(sim)
    bounds = {k: options.pop(k) for k in ("workspace_min", "workspace_max") if k in options}
    if bounds:
        from robot.limits import DEFAULT_ACTION_LIMITS

        arrays = {k: np.asarray(v, dtype=np.float64) for k, v in bounds.items()}
        for name, value in arrays.items():
            if value.shape != (3,) or not np.all(np.isfinite(value)):
                raise ValueError(f"model card sim.{name} must be 3 finite numbers (x, y, z in m), got {value.tolist()}")
        options["action_limits"] = dataclasses.replace(DEFAULT_ACTION_LIMITS, **arrays)
    return options


def pick_device(name: str | None) -> torch.device:
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_for_planning(checkpoint: Path | None, device: str | None = None):
    """(WorldModel, PlanningDefaults, checkpoint path) ready for `run_mpc`."""
    from worldmodel import load_world_model

    path = resolve_checkpoint(checkpoint)
    defaults = load_planning_defaults(path)
    world_model = load_world_model(path, device=pick_device(device), crop=defaults.crop)
    return world_model, defaults, path


def mpc_config_for(defaults: PlanningDefaults, task: str, args: argparse.Namespace | None = None):
    """The `MPCConfig` for one task: model card, then per-task overrides, then command-line options."""
    from planner.action_space import SearchSpace
    from planner.cem import CEMConfig
    from planner.mpc import MPCConfig

    task_overrides = dict(defaults.tasks.get(task, {}))
    task_planner = dict(task_overrides.pop("planner", {}))
    space = {**defaults.planner.get("space", {}), **task_planner.pop("space", {})}
    planner = {k: v for k, v in {**defaults.planner, **task_planner}.items() if k != "space"}
    # JSON object keys are strings; SearchSpace pins action dimensions by integer index.
    space["fixed"] = {int(dim): float(value) for dim, value in space.get("fixed", {}).items()}
    space = SearchSpace(**space)
    if args is not None:
        for option, key in (("samples", "samples"), ("iterations", "iterations"), ("horizon", "horizon"),
                            ("elites", "topk")):
            value = getattr(args, option, None)
            if value is not None:
                planner[key] = value
    samples = planner.get("samples", CEMConfig.samples)
    # Fewer samples than the default elite count is a legitimate quick setting; keep the elites inside the samples.
    planner.setdefault("topk", CEMConfig.topk)
    planner["topk"] = max(2, min(planner["topk"], samples))
    mpc = {**defaults.mpc, **task_overrides}
    mpc["camera"] = defaults.camera
    max_steps = getattr(args, "max_steps", None) if args is not None else None
    if max_steps is not None:
        mpc["max_steps"] = max_steps
    return MPCConfig(planner=CEMConfig(space=space, **planner), **mpc)


def describe_planner(config) -> str:
    p = config.planner
    return f"CEM {p.samples} samples x {p.iterations} iters x horizon {p.horizon} (top {p.topk})"


def video_from_log(title: str, episode_log) -> EpisodeVideo:
    """Frames, goals and observed energies of a `planner.mpc.EpisodeLog` as an `EpisodeVideo`."""
    video = EpisodeVideo(title=title)
    steps = episode_log.steps
    for i, (frame, goal_index) in enumerate(zip(episode_log.frames, episode_log.frame_goals)):
        if i < len(steps):
            # Step i's energy is that of frame i, so it is on the plot when frame i is shown.
            video.energies.append(steps[i].observed_energy)
        video.add(frame, episode_log.goal_images[goal_index], f"{title}  step {i}")
    return video


def run_episode(world_model, task_name: str, seed: int, config, *, fps: float | None = None,
                sim_options: dict[str, Any] | None = None, robot=None, progress: bool = False):
    """One closed-loop sim episode; returns (EpisodeOutcome, EpisodeLog, robot) so the scene can be reused.

    With `fps` (the predictor's training frame rate), each planned action is executed over control_hz / fps control
    periods (`ActionRepeatRobot`), the interval the predictor imagines; the task's step budget, counted in control
    periods, is divided accordingly.
    """
    from planner.mpc import run_mpc
    from sim.tasks import make_env

    if robot is None:
        robot, task = make_env(task_name, seed=seed, **sim_config_options(sim_options or {}),
                               goal_camera=config.camera)
    else:
        robot, task = make_env(task_name, seed=seed, robot=robot, goal_camera=config.camera)
    periods = control_periods_per_step(robot.control_hz, fps) if fps else 1
    if config.max_steps is None:
        config = dataclasses.replace(config, max_steps=math.ceil(task.max_steps / periods))
    episode_log = run_mpc(ActionRepeatRobot(robot, periods), world_model, task.goal_images(), config,
                          done=task.success, progress=progress)
    info = task.info()
    outcome = EpisodeOutcome(
        task=task_name,
        seed=seed,
        success=bool(info["success"]),
        final_distance=float(info["ee_goal_distance"]),
        steps=len(episode_log.steps),
        planning_seconds=tuple(s.plan_seconds + s.encode_seconds for s in episode_log.steps),
        final_energies=tuple(s.planned_energy for s in episode_log.steps),
    )
    return outcome, episode_log, robot


def run_tasks(world_model, defaults: PlanningDefaults, tasks: Sequence[str], episodes: int, seed: int,
              args: argparse.Namespace, *, keep_videos: bool) -> tuple[list[EpisodeOutcome], dict[str, str],
                                                                       list[EpisodeVideo]]:
    """Run `episodes` episodes per task on seeds seed, seed+1, ...; prints one line per episode."""
    outcomes, planners, videos = [], {}, []
    bar = tqdm(total=len(tasks) * episodes, desc="episodes", unit="ep")
    for task in tasks:
        config = mpc_config_for(defaults, task, args)
        planners[task] = describe_planner(config)
        robot = None
        try:
            for k in range(episodes):
                outcome, episode_log, robot = run_episode(world_model, task, seed + k, config, fps=defaults.fps,
                                                          sim_options=defaults.sim, robot=robot)
                outcomes.append(outcome)
                if keep_videos:
                    videos.append(video_from_log(f"{task} seed {seed + k}", episode_log))
                tqdm.write(format_outcome_line(outcome))
                bar.update(1)
        finally:
            if robot is not None:
                robot.close()
    bar.close()
    return outcomes, planners, videos


def _run_meta(path: Path, defaults: PlanningDefaults, device: torch.device) -> dict:
    """How a run was made, for the report: checkpoint, command line, observation settings, software, machine."""
    return {
        "checkpoint": str(path),
        "command": " ".join(["vjepa-ac", *sys.argv[1:]]) if sys.argv else "",
        "crop": str(defaults.crop),
        "camera": defaults.camera,
        "world-model steps per second": defaults.fps,
        "device": str(device),
        "torch threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def run_demo(args: argparse.Namespace) -> int:
    """`vjepa-ac demo`: a few episodes with a video and a summary."""
    world_model, defaults, path = load_for_planning(args.checkpoint, args.device)
    print(f"world model: {path} ({world_model.tokens_per_frame} tokens/frame, {world_model.embed_dim}-d, "
          f"device {world_model.device})")
    start = time.perf_counter()
    outcomes, planners, videos = run_tasks(world_model, defaults, args.tasks, args.episodes, args.seed, args,
                                           keep_videos=not args.no_video)
    report = EvaluationReport(
        summaries=[summarize(task, outcomes, planners[task]) for task in args.tasks],
        outcomes=outcomes,
        meta=_run_meta(path, defaults, world_model.device),
    )
    report.meta["wall seconds"] = round(time.perf_counter() - start, 1)
    md_path, json_path = write_report(report, args.out, stem="summary")
    print()
    print(format_summary_table(report.summaries))
    print(f"\nsummary: {md_path} and {json_path}")
    if videos:
        video_path = write_episode_videos(Path(args.out) / "demo.mp4", videos, fps=defaults.fps)
        print(f"video: {video_path}")
    return 0


def run_evaluation(args: argparse.Namespace) -> int:
    """`vjepa-ac eval`: the success table plus the open-loop prediction error."""
    world_model, defaults, path = load_for_planning(args.checkpoint, args.device)
    start = time.perf_counter()
    outcomes, planners, videos = run_tasks(world_model, defaults, args.task, args.episodes, args.seed, args,
                                           keep_videos=args.video)
    report = EvaluationReport(
        summaries=[summarize(task, outcomes, planners[task]) for task in args.task],
        outcomes=outcomes,
        meta=_run_meta(path, defaults, world_model.device),
    )
    if args.open_loop_episodes:
        from vjepa_ac.heldout import heldout_open_loop_error

        report.open_loop = heldout_open_loop_error(
            world_model, defaults, Path(args.out) / "heldout_episodes", episodes=args.open_loop_episodes,
            horizon=args.open_loop_horizon, seed=args.seed,
        )
    report.meta["wall seconds"] = round(time.perf_counter() - start, 1)
    md_path, json_path = write_report(report, args.out)
    print()
    print(format_markdown(report))
    print(f"report: {md_path} and {json_path}")
    if videos:
        print(f"video: {write_episode_videos(Path(args.out) / 'episodes.mp4', videos, fps=defaults.fps)}")
    return 0
