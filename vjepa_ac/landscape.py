"""How well a frozen encoder's goal energy measures progress toward a goal, before any predictor or planner is involved.

For reach episodes of the sim, the arm is rendered at poses spread over the workspace and along the straight path
from its start to the goal, with everything else as in the goal image. Each frame's energy (the planner's latent L1
to the encoded goal image) is compared with the flange's distance to the goal pose:

* rank correlation (Spearman) of energy and distance over the workspace poses: 1 = the energy orders poses exactly
  as the distance does;
* the share of steps along the straight path whose energy falls as the arm gets closer; below 1 the greedy planner
  has to climb an energy barrier on the way;
* the share of episodes whose straight path rises above the start's energy anywhere (a barrier the planner meets).

Around the cube, for grasp episodes, the arm is rendered with open fingers at offsets of up to 8 cm (up to 10 cm
above) from the straddle pose, the pose where the fingers close on the cube, and scored against the straddle sub-goal
image: the rank correlation near the cube (offsets within 6 cm) and the energy 2 cm off along each base axis, as a
share of the energy 8 cm off, tell whether the energy resolves the last centimetres a grasp needs.

A planner can only be as good as the energy it descends, so this tells encoders apart cheaply (`vjepa-ac eval`
reports it beside the closed-loop results).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from vjepa_ac.report import EnergyLandscape

WORKSPACE_POSES = 48
"""Random flange positions scored per goal."""
PATH_POINTS = 11
"""Poses on the straight path from the start to the goal, both ends included."""
POSE_BOX = (np.array([0.32, -0.25, 0.12]), np.array([0.70, 0.25, 0.52]))
"""Base-frame box (m) the workspace poses are drawn from: the tasks' region, start poses included."""
GRASP_OFFSETS = 40
"""Random offsets from the straddle pose scored per grasp episode."""
GRASP_OFFSET_BOX = (np.array([-0.08, -0.08, 0.0]), np.array([0.08, 0.08, 0.10]))
"""Offsets (m) from the straddle pose: around the cube and above it, never into the table."""
NEAR_CUBE = 0.06
"""Offsets within this distance (m) count as near the cube for the local rank correlation."""
AXIS_PROBES = (0.02, 0.08)
"""Offsets (m) along each base axis whose energies are compared: the first as a share of the second."""
STRADDLE_GOAL = 1
"""Index of the straddle sub-goal in a grasp task's goals (approach, straddle, close, lift)."""


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation of two 1-D samples; NaN when either is constant."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, float), np.asarray(b, float)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


@dataclass
class GoalLandscape:
    """Energies and distances of one goal (index 0 of `path_*` is the start, the last is the goal pose)."""

    seed: int
    workspace_energy: np.ndarray
    workspace_distance: np.ndarray
    path_energy: np.ndarray
    path_distance: np.ndarray

    @property
    def path_descending(self) -> float:
        """Share of path steps toward the goal on which the energy falls."""
        return float(np.mean(np.diff(self.path_energy) < 0))

    @property
    def path_barrier(self) -> bool:
        """True when some pose on the path scores worse than the start."""
        return bool(np.any(self.path_energy[1:] > self.path_energy[0]))


def goal_landscape(world_model, task, seed: int, rng: np.random.Generator) -> GoalLandscape:
    """Render and score the poses of one reach episode (`task` is a `sim.tasks.ReachTask` on a connected robot)."""
    task.reset(seed)
    goal = task.goals[0]
    start = task.robot.droid_state()[:3]
    path = start + np.linspace(0.0, 1.0, PATH_POINTS)[:, None] * (goal.flange_pos - start)
    workspace = rng.uniform(*POSE_BOX, size=(WORKSPACE_POSES, 3))
    frames, kept = [task.goal_images()[0]], []
    for i, position in enumerate(np.concatenate([path, workspace])):
        try:
            q = task.solve_ik(position, goal.flange_yaw)
        except RuntimeError:
            if i < PATH_POINTS:
                raise  # the path is between two reachable poses; failing here is a bug, not a sampling miss
            continue
        frames.append(task.render_goal_camera(q, goal.gripper, goal.objects))
        kept.append(position)
    with torch.no_grad():
        latents = world_model.encode(np.stack(frames)[None])[0].float().cpu()
    energy = (latents[1:] - latents[:1]).abs().mean(dim=(-2, -1)).numpy()
    distance = np.linalg.norm(np.stack(kept) - goal.flange_pos, axis=1)
    return GoalLandscape(seed, energy[PATH_POINTS:], distance[PATH_POINTS:], energy[:PATH_POINTS],
                         distance[:PATH_POINTS])


@dataclass
class CubeLandscape:
    """Energies of the arm near the straddle pose of one grasp episode."""

    seed: int
    energy: np.ndarray
    distance: np.ndarray
    axis_share: np.ndarray
    """Per base axis x, y, z: energy at AXIS_PROBES[0] off as a share of the energy at AXIS_PROBES[1] off (small =
    the energy has already risen most of the way 2 cm off; near 1 = nothing seen until far away)."""

    @property
    def near_rank_correlation(self) -> float:
        near = self.distance <= NEAR_CUBE
        return rank_correlation(self.energy[near], self.distance[near])


def cube_landscape(world_model, task, seed: int, rng: np.random.Generator) -> CubeLandscape:
    """Render and score offsets from the straddle pose of one grasp episode (`task` a `sim.tasks.GraspTask` on a
    connected robot)."""
    task.reset(seed)
    goal = task.goals[STRADDLE_GOAL]
    offsets = [np.eye(3)[axis] * size for axis in range(3) for size in AXIS_PROBES]
    offsets += list(rng.uniform(*GRASP_OFFSET_BOX, size=(GRASP_OFFSETS, 3)))
    frames, kept = [task.goal_images()[STRADDLE_GOAL]], []
    for i, offset in enumerate(offsets):
        try:
            q = task.solve_ik(goal.flange_pos + offset, goal.flange_yaw)
        except RuntimeError:
            if i < 3 * len(AXIS_PROBES):
                raise  # a few centimetres from a pose the task itself reaches: a bug, not a sampling miss
            continue
        frames.append(task.render_goal_camera(q, goal.gripper, goal.objects))
        kept.append(offset)
    with torch.no_grad():
        latents = world_model.encode(np.stack(frames)[None])[0].float().cpu()
    energy = (latents[1:] - latents[:1]).abs().mean(dim=(-2, -1)).numpy()
    probes = 3 * len(AXIS_PROBES)
    axis_energy = energy[:probes].reshape(3, len(AXIS_PROBES))
    return CubeLandscape(seed, energy[probes:], np.linalg.norm(np.stack(kept[probes:]), axis=1),
                         axis_energy[:, 0] / axis_energy[:, -1])


def energy_landscape(world_model, defaults, *, goals: int, seed: int,
                     plot: Path | None = None) -> EnergyLandscape:
    """Score `goals` reach episodes (seeds seed, seed+1, ...) in the scene the model card describes; optionally save
    a plot of energy against distance."""
    from vjepa_ac.model_card import sim_config_options
    from vjepa_ac.sim.tasks import make_env

    if goals < 1:
        raise ValueError(f"goals must be >= 1, got {goals}")
    options = sim_config_options(defaults.sim)
    robot, task = make_env("reach", seed=seed, **options, goal_camera=defaults.camera)
    rng = np.random.default_rng(seed)
    try:
        landscapes = [goal_landscape(world_model, task, seed + k, rng)
                      for k in tqdm(range(goals), desc="energy landscape", unit="goal")]
    finally:
        robot.close()
    robot, task = make_env("grasp", seed=seed, **options, goal_camera=defaults.camera)
    try:
        cubes = [cube_landscape(world_model, task, seed + k, rng)
                 for k in tqdm(range(goals), desc="energy near the cube", unit="goal")]
    finally:
        robot.close()
    if plot is not None:
        plot_landscapes(landscapes, plot, cubes)
    return EnergyLandscape(
        goals=goals,
        poses_per_goal=WORKSPACE_POSES,
        rank_correlation=float(np.nanmean([rank_correlation(g.workspace_energy, g.workspace_distance)
                                           for g in landscapes])),
        path_descending=float(np.mean([g.path_descending for g in landscapes])),
        path_barrier_share=float(np.mean([g.path_barrier for g in landscapes])),
        near_cube_rank_correlation=float(np.nanmean([c.near_rank_correlation for c in cubes])),
        near_cube_axis_share=tuple(float(v) for v in np.mean([c.axis_share for c in cubes], axis=0)),
    )


def plot_landscapes(landscapes: list[GoalLandscape], path: Path, cubes: list[CubeLandscape] = ()) -> Path:
    """Energy against flange-to-goal distance: workspace poses as dots, each straight path as a line, and (with
    `cubes`) the offsets around the straddle pose."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 3 if cubes else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4), constrained_layout=True)
    ax_all, ax_path = axes[0], axes[1]
    for g in landscapes:
        ax_all.scatter(g.workspace_distance, g.workspace_energy, s=6, alpha=0.6)
        ax_path.plot(g.path_distance, g.path_energy, marker=".", alpha=0.8)
    ax_all.set(title="workspace poses", xlabel="flange distance to goal (m)", ylabel="goal energy (latent L1)")
    ax_path.set(title="straight path start -> goal", xlabel="flange distance to goal (m)")
    ax_path.invert_xaxis()
    if cubes:
        for c in cubes:
            axes[2].scatter(c.distance, c.energy, s=6, alpha=0.6)
        axes[2].set(title="around the straddle pose (grasp)", xlabel="flange offset from the straddle pose (m)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
