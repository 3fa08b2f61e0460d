"""What limits grasping: the encoder's energy or the predictor's imagination? (EVALUATION.md, "A perfect predictor")

    OMP_NUM_THREADS=1 MUJOCO_GL=egl python -m vjepa_ac.oracle_study --task grasp --episodes 50 --seed 5000 \\
        --out oracle_out

Runs `vjepa-ac eval`'s closed loop (`vjepa_ac.closed_loop.run_episode`, the embedded default model and its model card)
with the predictor replaced by the simulator itself: each candidate action sequence is "imagined" by rendering the
scene with the arm at the pose the sequence leads to (`RenderedRollout`) and encoding that frame with the model's own
frozen encoder. Everything else stays as shipped: encoder, goal images, energy, CEM, sub-goal schedule and pinned
gripper. Success with this perfect predictor is the ceiling the encoder's energy allows; the gap to the real model's
success is what the predictor costs.

The rendering oracle is perfect only where contact does not matter: the objects stay where they are (a cube held
between the fingers moves with the hand), so a candidate that would push the cube is not seen to push it. It plans
far slower than the predictor (a render and an IK solve per candidate). Every episode is one line of
`results.jsonl` in --out, written as it finishes: a killed run resumes where it stopped, and `--table` prints the
table from what is there.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
from pathlib import Path

import numpy as np
import torch

from vjepa_ac.camera_yaw_study import read_results  # the same JSONL results format
from vjepa_ac.data.droid.poses import apply_actions, euler_xyz_to_matrix

CONDITIONS = ("rendered", "predictor")
"""The rendering oracle, and the world model's own predictor on the same seeds (the baseline)."""


class RenderedRollout:
    """A `planner.base.RolloutFn` that imagines each candidate by rendering the sim, not by predicting.

    For actions [S, H, 7] from the current state, the flange pose after all H actions (kept in the workspace box, as
    the sim keeps it) is solved by IK (from the arm's
    current joints) and rendered from the task's goal camera with the gripper at its commanded opening; the world
    model's encoder turns the frames into latents. Only the last step is rendered: every step of the result holds the
    last step's latent, so the objective must score the last step (`MPCConfig.reduce == "last"`, the model card's).
    A pose the arm cannot reach gets non-finite latents (the planner scores it +inf).
    """

    def __init__(self, task, world_model, state: torch.Tensor) -> None:
        self.task = task
        self.world_model = world_model
        self.state = state.double().reshape(7)
        robot = task.robot
        self.q_now = robot.joint_positions.copy()
        self.flange_now = robot.droid_state()[:3]
        cube = robot.object_poses()["cube"]  # xyz + Euler "xyz": an upright cube's yaw is the last angle
        self.cube = (cube[:3], float(cube[5]))
        self.carrying = task.cube_in_hand()

    def final_states(self, actions: torch.Tensor) -> torch.Tensor:
        """States [S, 7] after applying every action of [S, H, 7] in turn (float64), each step's position clipped to
        the robot's workspace box as the sim clips its targets."""
        limits = self.task.robot.config.action_limits
        low, high = (torch.tensor(np.array(v), dtype=torch.float64) for v in (limits.workspace_min,
                                                                               limits.workspace_max))
        state = self.state.expand(actions.shape[0], -1)
        for h in range(actions.shape[1]):
            state = apply_actions(state, actions[:, h].double())
            state = torch.cat([torch.maximum(torch.minimum(state[:, :3], high), low), state[:, 3:]], dim=1)
        return state

    def render(self, state: np.ndarray) -> np.ndarray | None:
        """The goal camera's frame with the flange at DROID state `state` [7], or None when IK does not reach it."""
        robot = self.task.robot
        result = robot.kinematics.ik(state[:3], euler_xyz_to_matrix(state[3:6]), self.q_now,
                                     limits=robot.info.limits)
        if not result.converged:
            return None
        objects = {}
        if self.carrying:  # the held cube goes where the hand goes
            objects["cube"] = (self.cube[0] + (state[:3] - self.flange_now), self.cube[1])
        return self.task.render_goal_camera(result.q, float(state[6]), objects)

    def __call__(self, actions: torch.Tensor) -> torch.Tensor:
        samples, horizon = actions.shape[:2]
        frames, reachable = [], []
        for state in self.final_states(actions).numpy():
            frame = self.render(state)
            reachable.append(frame is not None)
            if frame is not None:
                frames.append(frame)
        n, d = self.world_model.tokens_per_frame, self.world_model.embed_dim
        latents = torch.full((samples, n, d), float("nan"))
        if frames:
            with torch.no_grad():
                latents[torch.tensor(reachable)] = self.world_model.encode(np.stack(frames)[None])[0].float().cpu()
        return latents[:, None].expand(samples, horizon, n, d)


def rendered_imagination(world_model):
    """`closed_loop.run_episode`'s `imagine_with`: a `RenderedRollout` of the episode's task per plan."""
    def for_task(task):
        def factory(latents, states, actions):
            return RenderedRollout(task, world_model, states[-1])
        return factory
    return for_task


def run_study(args: argparse.Namespace) -> None:
    from tqdm.auto import tqdm

    from vjepa_ac.closed_loop import run_episode
    from vjepa_ac.data.config import ConfigError, load
    from vjepa_ac.model_card import PlanningOverrides, load_for_planning, mpc_config_for, sim_settings

    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.jsonl"
    settings = " ".join(args.overrides)
    done = {(r["condition"], r["task"], r.get("settings", ""), r["seed"]) for r in read_results(path)}
    world_model, defaults, _ = load_for_planning(args.checkpoint, "cpu")
    try:
        overrides = load(PlanningOverrides, None, args.overrides, {})
    except ConfigError as exc:
        raise SystemExit(f"error: {exc}") from exc
    config = dataclasses.replace(mpc_config_for(defaults, args.task, overrides), threads=1)
    if config.reduce != "last":
        raise SystemExit(f"the rendering oracle scores the last imagined step only; the model card reduces with "
                         f"{config.reduce!r}")
    bar = tqdm(total=args.episodes * len(args.conditions), desc="oracle study", unit="episode")
    robot = None
    with path.open("a") as log:
        try:
            for seed in range(args.seed, args.seed + args.episodes):
                for condition in args.conditions:
                    bar.update(1)
                    if (condition, args.task, settings, seed) in done:
                        continue
                    imagine = rendered_imagination(world_model) if condition == "rendered" else None
                    outcome, episode, robot = run_episode(world_model, args.task, seed, config, fps=defaults.fps,
                                                          sim_options=sim_settings(defaults), robot=robot,
                                                          imagine_with=imagine)
                    record = {
                        "condition": condition, "task": args.task, "settings": settings, "seed": seed,
                        "success": outcome.success,
                        "final_distance": outcome.final_distance, "steps": outcome.steps,
                        "subgoal_distances": outcome.subgoal_distances,
                        "seconds_per_action": statistics.mean(outcome.planning_seconds),
                    }
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                    off = " ".join("-" if d is None else f"{100 * d:.1f}" for d in outcome.subgoal_distances)
                    tqdm.write(f"{condition:9s} {args.task} seed {seed}: {'success' if outcome.success else 'failure'}"
                               f" (flange off each sub-goal, cm: {off})")
        finally:
            if robot is not None:
                robot.close()
    bar.close()


STRADDLE_BINS = ((0.0, 0.02, "up to 2 cm"), (0.02, 0.03, "2-3 cm"), (0.03, 0.04, "3-4 cm"), (0.04, 0.06, "4-6 cm"),
                 (0.06, math.inf, "more than 6 cm"))
"""Bins of the flange's distance to the straddle pose when the planner moved on from it."""
STRADDLE_GOAL = 1
"""Index of the straddle sub-goal (approach, straddle, close, lift, ...)."""


def format_table(records: list[dict]) -> str:
    """Markdown: success (Wilson 95% CI), median straddle miss and seconds per action per condition and task, then
    successes per straddle-miss bin."""
    from vjepa_ac.report import wilson_interval

    def group(record: dict) -> tuple[str, str, str]:
        return record["condition"], record["task"], record.get("settings", "")

    lines = ["| condition | task | settings | success (95% CI) | n | straddle miss, median cm | s per action |",
             "|---|---|---|---|---|---|---|"]
    groups = sorted({group(r) for r in records}, key=lambda g: (CONDITIONS.index(g[0]), g[1], g[2]))
    for condition, task, settings in groups:
        rows = [r for r in records if group(r) == (condition, task, settings)]
        wins = sum(bool(r["success"]) for r in rows)
        low, high = wilson_interval(wins, len(rows))
        misses = [r["subgoal_distances"][STRADDLE_GOAL] for r in rows
                  if len(r["subgoal_distances"]) > STRADDLE_GOAL and r["subgoal_distances"][STRADDLE_GOAL] is not None]
        miss = f"{100 * statistics.median(misses):.1f}" if misses else "-"
        lines.append(f"| {condition} | {task} | {settings or 'model card'} | {wins}/{len(rows)} ({wins / len(rows):.0%}, "
                     f"{low:.0%}-{high:.0%}) | "
                     f"{len(rows)} | {miss} | {statistics.mean(r['seconds_per_action'] for r in rows):.2f} |")
    lines += ["", "| condition | task | settings | " + " | ".join(label for *_, label in STRADDLE_BINS) + " |",
              "|---|---|---|" + "---|" * len(STRADDLE_BINS)]
    for condition, task, settings in groups:
        cells = []
        for low, high, _ in STRADDLE_BINS:
            rows = [r for r in records if group(r) == (condition, task, settings)
                    and len(r["subgoal_distances"]) > STRADDLE_GOAL
                    and r["subgoal_distances"][STRADDLE_GOAL] is not None
                    and low <= r["subgoal_distances"][STRADDLE_GOAL] < high]
            cells.append(f"{sum(bool(r['success']) for r in rows)}/{len(rows)}")
        lines.append(f"| {condition} | {task} | {settings or 'model card'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("oracle_out"), help="output folder")
    parser.add_argument("--checkpoint", type=Path, default=None, help="AC checkpoint (default: the embedded model)")
    parser.add_argument("--task", default="grasp", choices=("reach", "grasp", "reach_with_object", "pick_and_place"))
    parser.add_argument("--episodes", type=int, default=50, help="episodes per condition (default: 50)")
    parser.add_argument("--seed", type=int, default=5000, help="first episode seed (default: 5000)")
    parser.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=["rendered"],
                        help="what imagines the candidates (default: the rendering oracle only)")
    parser.add_argument("--table", action="store_true", help="print the table from --out and exit")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="planner settings over the model card's, as for `vjepa-ac eval` (e.g. "
                             "'goal_reduce=[last,sum,sum,sum]'); recorded with each episode")
    args = parser.parse_args(argv)
    if not args.table:
        run_study(args)
    print(format_table(read_results(args.out / "results.jsonl")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
