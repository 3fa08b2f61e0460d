"""Closed-loop success vs planning time for the planner's speed options (BENCHMARKS.md, "Fewer plans per action").

    OMP_NUM_THREADS=1 MUJOCO_GL=egl python -m vjepa_ac.planning_speed_study --out planning_speed_out

Reach episodes of `vjepa-ac eval` (`vjepa_ac.closed_loop.run_episode`, the embedded default model and its model card)
under several conditions on the same seeds: the model card's planner (baseline), warm start, surprise gating, CEM
early stop and bf16. Seeds start at --seed (5000 and up: never used while tuning the options' thresholds). Episodes
run seed by seed, every condition per seed, so a run cut short still compares the conditions on equal seeds. Every
episode is one line of `results.jsonl` in --out, written as it finishes: a killed run resumes where it stopped, and
`--table` prints the table from what is there.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path

from tqdm.auto import tqdm

from vjepa_ac.camera_yaw_study import read_results  # the same JSONL results format

CONDITIONS = ("baseline", "bf16", "surprise_gate", "warm_start", "early_stop")


def condition_config(base, condition: str, *, surprise_gate: float, early_stop_std: float):
    """The `MPCConfig` of one condition: the base config with that one option switched on."""
    if condition == "baseline":
        return base
    if condition == "warm_start":
        return dataclasses.replace(base, planner=dataclasses.replace(base.planner, warm_start=True))
    if condition == "surprise_gate":
        return dataclasses.replace(base, surprise_gate=surprise_gate)
    if condition == "early_stop":
        return dataclasses.replace(base, planner=dataclasses.replace(base.planner, early_stop_std=early_stop_std))
    if condition == "bf16":
        return dataclasses.replace(base, precision="bfloat16")
    raise ValueError(f"unknown condition {condition!r}; choose among {CONDITIONS}")


def run_study(args: argparse.Namespace) -> None:
    import torch

    from vjepa_ac.model_card import load_for_planning, mpc_config_for, sim_settings
    from vjepa_ac.closed_loop import run_episode

    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.jsonl"
    done = {(r["condition"], r["seed"]) for r in read_results(path)}
    world_model, defaults, _ = load_for_planning(args.checkpoint, "cpu")
    base = dataclasses.replace(mpc_config_for(defaults, "reach"), threads=1)
    bar = tqdm(total=args.episodes * len(args.conditions), desc="planning-speed study", unit="episode")
    robot = None
    with path.open("a") as log:
        try:
            for seed in range(args.seed, args.seed + args.episodes):
                for condition in args.conditions:
                    bar.update(1)
                    if (condition, seed) in done:
                        continue
                    config = condition_config(base, condition, surprise_gate=args.surprise_gate,
                                              early_stop_std=args.early_stop_std)
                    outcome, episode, robot = run_episode(world_model, "reach", seed, config, fps=defaults.fps,
                                                          sim_options=sim_settings(defaults), robot=robot)
                    record = {
                        "condition": condition, "seed": seed, "success": outcome.success,
                        "final_distance": outcome.final_distance, "steps": outcome.steps,
                        "plan_seconds": [s.plan_seconds for s in episode.steps],
                        "seconds_per_action": outcome.planning_seconds,
                        "plans": sum(s.replanned for s in episode.steps),
                        "iterations": [len(s.iteration_energies) for s in episode.steps if s.replanned],
                    }
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                    tqdm.write(f"{condition:13s} seed {seed}: {'success' if outcome.success else 'failure'} "
                               f"({outcome.final_distance * 100:.1f} cm, {outcome.steps} steps)")
        finally:
            if robot is not None:
                robot.close()
    bar.close()


def format_table(records: list[dict]) -> str:
    """Markdown table per condition: success (Wilson 95% CI), planning seconds per action, plans per action."""
    from vjepa_ac.report import wilson_interval

    lines = ["| condition | success (95% CI) | n | s per action (plan + encode) | plans per action | "
             "CEM iterations per plan | final distance cm |", "|---|---|---|---|---|---|---|"]
    for condition in CONDITIONS:
        rows = [r for r in records if r["condition"] == condition]
        if not rows:
            lines.append(f"| {condition} | not run | 0 | | | | |")
            continue
        wins = sum(bool(r["success"]) for r in rows)
        low, high = wilson_interval(wins, len(rows))
        per_action = [s for r in rows for s in r["seconds_per_action"]]
        steps = sum(r["steps"] for r in rows)
        iterations = [i for r in rows for i in r["iterations"]]
        lines.append(
            f"| {condition} | {wins}/{len(rows)} ({wins / len(rows):.0%}, {low:.0%}-{high:.0%}) | {len(rows)} | "
            f"{statistics.mean(per_action):.3f} | {sum(r['plans'] for r in rows) / max(steps, 1):.2f} | "
            f"{statistics.mean(iterations):.2f} | {statistics.mean(r['final_distance'] for r in rows) * 100:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("planning_speed_out"), help="output folder")
    parser.add_argument("--checkpoint", type=Path, default=None, help="AC checkpoint (default: the embedded model)")
    parser.add_argument("--episodes", type=int, default=50, help="reach episodes per condition (default: 50)")
    parser.add_argument("--seed", type=int, default=5000, help="first episode seed (default: 5000)")
    parser.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=list(CONDITIONS))
    parser.add_argument("--surprise-gate", type=float, default=0.1,
                        help="surprise-gating threshold (L1 latent distance; tuned on seeds < 5000)")
    parser.add_argument("--early-stop-std", type=float, default=0.035,
                        help="CEM early-stop threshold on the Δxyz std, metres (tuned on seeds < 5000)")
    parser.add_argument("--table", action="store_true", help="print the table from --out and exit")
    args = parser.parse_args(argv)
    if not args.table:
        run_study(args)
    print(format_table(read_results(args.out / "results.jsonl")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
