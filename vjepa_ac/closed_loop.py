"""The closed loop behind `vjepa-ac demo` and `vjepa-ac eval`: load a world model with its planning settings, run
sim episodes through `planner.run_mpc`, and turn the logs into outcomes, videos and reports.

Planning settings travel with a checkpoint in a model card (`vjepa_ac.model_card`); a checkpoint without one (e.g.
Meta's `vjepa2-ac-vitg.pt`) gets the planner's paper defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from vjepa_ac.episode import sim_episode
from vjepa_ac.model_card import (
    PlanningDefaults,
    PlanningOverrides,
    load_for_planning,
    mpc_config_for,
    sim_settings,
)
from vjepa_ac.planner.threads import last_choice

if TYPE_CHECKING:
    from vjepa_ac.planner.mpc import RolloutFactory
from vjepa_ac.report import (
    EpisodeOutcome,
    EvaluationReport,
    OutcomeJournal,
    format_markdown,
    format_outcome_line,
    format_summary_table,
    summarize,
    write_report,
)
from vjepa_ac.video import EpisodeVideo, write_episode_videos


def describe_planner(config) -> str:
    p = config.planner
    budget = f"{p.samples} samples x {p.iterations} iters x horizon {p.horizon}"
    if hasattr(p, "temperature"):  # MPPI weights every sample: no elites
        return f"MPPI {budget} (temperature {p.temperature:g})"
    return f"CEM {budget} (top {p.topk})"


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


def subgoal_distances(task, episode_log) -> tuple[float | None, ...]:
    """Per sub-goal of `task`: the flange's distance to its pose right after the last action planned toward it (the
    state the next step starts from, or the final state); None for a sub-goal the episode never got to."""
    positions = [np.asarray(s.state[:3]) for s in episode_log.steps] + [task.robot.droid_state()[:3]]
    distances: list[float | None] = []
    for index, goal in enumerate(task.goals):
        steps = [k for k, s in enumerate(episode_log.steps) if s.goal_index == index]
        distances.append(float(np.linalg.norm(positions[steps[-1] + 1] - goal.flange_pos)) if steps else None)
    return tuple(distances)


def run_episode(world_model, task_name: str, seed: int, config, *, fps: float | None = None,
                sim_options: dict[str, Any] | None = None, robot=None, progress: bool = False,
                imagine_with: Callable[[Any], RolloutFactory] | None = None):
    """One closed-loop sim episode; returns (EpisodeOutcome, EpisodeLog, robot) so the scene can be reused.

    With `fps` (the predictor's training frame rate), each planned action is executed over control_hz / fps control
    periods (`ActionRepeatRobot`), the interval the predictor imagines; the task's step budget, counted in control
    periods, is divided accordingly (`vjepa_ac.episode`). `imagine_with(task)` may return a
    `planner.mpc.RolloutFactory` that imagines candidates instead of the world model's predictor (a study's oracle).
    """
    from vjepa_ac.planner.mpc import run_mpc

    setup = sim_episode(task_name, seed, camera=config.camera, sim_options=sim_options, robot=robot)
    controlled, config, _ = setup.controlled(config, fps)
    episode_log = run_mpc(controlled, world_model, setup.goals, config, done=setup.success, progress=progress,
                          rollout_factory=None if imagine_with is None else imagine_with(setup.task))
    info = setup.task.info()
    outcome = EpisodeOutcome(
        task=task_name,
        seed=seed,
        success=bool(info["success"]),
        final_distance=float(info["goal_distance"]),
        steps=len(episode_log.steps),
        planning_seconds=tuple(s.plan_seconds + s.encode_seconds for s in episode_log.steps),
        final_energies=tuple(s.planned_energy for s in episode_log.steps),
        subgoal_distances=subgoal_distances(setup.task, episode_log),
    )
    return outcome, episode_log, setup.robot


def run_tasks(world_model, defaults: PlanningDefaults, tasks: Sequence[str], episodes: int, seed: int,
              args: argparse.Namespace, *, keep_videos: bool, journal: Path | None = None,
              run_key: dict[str, Any] | None = None) -> tuple[list[EpisodeOutcome], dict[str, str],
                                                              list[EpisodeVideo]]:
    """Run `episodes` episodes per task on seeds seed, seed+1, ...; prints one line per episode.

    With `journal`, every finished episode is appended there (`OutcomeJournal`, keyed by `run_key` plus the task's
    planner settings) and episodes already in it are not run again, so a killed evaluation resumes where it stopped
    (no videos are kept of skipped episodes).
    """
    outcomes, planners, videos = [], {}, []
    bar = tqdm(total=len(tasks) * episodes, desc="episodes", unit="ep")
    for task in tasks:
        config = mpc_config_for(defaults, task, PlanningOverrides.from_args(args))
        planners[task] = describe_planner(config)
        options = sim_settings(defaults, args)
        record = None if journal is None else OutcomeJournal(
            journal, {**(run_key or {}), "mpc": dataclasses.asdict(config), "sim": options, "fps": defaults.fps})
        finished = {} if record is None else record.finished()
        robot = None
        try:
            for k in range(episodes):
                outcome = finished.get((task, seed + k))
                if outcome is None:
                    outcome, episode_log, robot = run_episode(world_model, task, seed + k, config, fps=defaults.fps,
                                                              sim_options=options, robot=robot)
                    if record is not None:
                        record.append(outcome)
                    if keep_videos:
                        videos.append(video_from_log(f"{task} seed {seed + k}", episode_log))
                outcomes.append(outcome)
                tqdm.write(format_outcome_line(outcome))
                bar.update(1)
        finally:
            if robot is not None:
                robot.close()
    bar.close()
    return outcomes, planners, videos


def checkpoint_identity(path: Path) -> dict[str, Any]:
    """Path, size and modification time of a checkpoint: enough to tell a retrained file from the one a journal
    was written with, without hashing gigabytes."""
    stat = Path(path).stat()
    return {"checkpoint": str(Path(path).resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _run_meta(path: Path, defaults: PlanningDefaults, device: torch.device) -> dict:
    """How a run was made, for the report: checkpoint, command line, observation settings, software, machine."""
    return {
        "checkpoint": str(path),
        "command": " ".join(["vjepa-ac", *sys.argv[1:]]) if sys.argv else "",
        "crop": str(defaults.crop),
        "camera": defaults.camera,
        "world-model steps per second": defaults.fps,
        "device": str(device),
        "torch threads": (choice.describe() if (choice := last_choice()) is not None
                          else f"{torch.get_num_threads()} (not measured)"),
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
    if args.landscape_encoder is not None and (args.episodes or args.open_loop_episodes or not args.landscape_goals):
        raise argparse.ArgumentError(None, "--landscape-encoder scores only the energy landscape: use it with "
                                     "--episodes 0 --open-loop-episodes 0 and --landscape-goals of at least 1 (the "
                                     "model's predictor was not trained on that encoder's features)")
    world_model, defaults, path = load_for_planning(args.checkpoint, args.device)
    # The encoder whose landscape is scored, loaded before any work so that a bad file fails at once.
    scored = world_model
    if args.landscape_encoder is not None:
        from vjepa_ac.worldmodel import load_encoder

        scored = world_model.with_encoder(load_encoder(args.landscape_encoder, device=world_model.device,
                                                       dtype=next(world_model.encoder.parameters()).dtype))
    start = time.perf_counter()
    outcomes, planners, videos = run_tasks(world_model, defaults, args.tasks, args.episodes, args.seed, args,
                                           keep_videos=args.video, journal=Path(args.out) / "episodes.jsonl",
                                           run_key=checkpoint_identity(path))
    report = EvaluationReport(
        summaries=[summarize(task, outcomes, planners[task]) for task in args.tasks] if outcomes else [],
        outcomes=outcomes,
        meta=_run_meta(path, defaults, world_model.device),
    )
    if args.open_loop_episodes:
        from vjepa_ac.heldout import heldout_open_loop_error

        report.open_loop = heldout_open_loop_error(
            world_model, defaults, Path(args.out) / "heldout_episodes", episodes=args.open_loop_episodes,
            horizon=args.open_loop_horizon, seed=args.seed,
        )
    if args.landscape_goals:
        from vjepa_ac.landscape import energy_landscape

        if args.landscape_encoder is not None:
            report.meta["landscape encoder"] = str(args.landscape_encoder)
        report.landscape = energy_landscape(scored, defaults, goals=args.landscape_goals, seed=args.seed,
                                            plot=Path(args.out) / "energy_landscape.png")
    report.meta["wall seconds"] = round(time.perf_counter() - start, 1)
    md_path, json_path = write_report(report, args.out)
    print()
    print(format_markdown(report))
    print(f"report: {md_path} and {json_path}")
    if videos:
        print(f"video: {write_episode_videos(Path(args.out) / 'episodes.mp4', videos, fps=defaults.fps)}")
    return 0
