"""The fine-tuning experiment of EVALUATION.md: reach success in a scene the base model has not seen, before and after
fine-tuning on episodes of that scene (`recipes/finetune.sh` makes the fine-tuned checkpoint).

    OMP_NUM_THREADS=1 MUJOCO_GL=egl python -m vjepa_ac.finetune_study --before BASE.pt --after FINETUNED.pt \\
        --camera-yaw 15 --episodes 50 --seed 5000 --out finetune_eval

Episodes use the closed loop of `vjepa-ac eval` (`vjepa_ac.closed_loop.run_episode`, each checkpoint's model-card
planner) on the same seeds for both checkpoints, from --seed (5000 and up: never used while tuning), the fine-tuned
checkpoint's first.
Every episode is one line of `results.jsonl` in --out, written as it finishes, so a killed run resumes where it
stopped; `--table` prints the table from what is there.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from tqdm.auto import tqdm

from vjepa_ac.camera_yaw_study import read_results


def _key(record: dict) -> tuple:
    return record["model"], record["camera_yaw"], record["seed"]


def run_study(args: argparse.Namespace) -> None:
    import torch

    from vjepa_ac.model_card import load_for_planning, mpc_config_for, sim_config_options
    from vjepa_ac.sim.tasks import make_env
    from vjepa_ac.closed_loop import run_episode

    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.jsonl"
    done = {_key(r) for r in read_results(path)}
    models = {label: load_for_planning(checkpoint, "cpu") for label, checkpoint in
              (("before", args.before), ("after", args.after))}
    # The fine-tuned checkpoint first: a run cut short on a shared machine then still has its full sample, while the
    # base model's rate in the unseen scene is the one already measured (EVALUATION.md's camera-yaw table).
    runs = [(label, yaw, seed) for label in ("after", "before") for yaw in args.camera_yaw
            for seed in range(args.seed, args.seed + args.episodes)]
    robots: dict[tuple[str, float], object] = {}
    try:
        with path.open("a") as log:
            for label, yaw, seed in tqdm(runs, desc="fine-tuning study", unit="episode"):
                if (label, yaw, seed) in done:
                    continue
                world_model, defaults, _ = models[label]
                if (label, yaw) not in robots:
                    options = sim_config_options({**defaults.sim, "camera_yaw": yaw})
                    robots[label, yaw], _ = make_env("reach", seed=seed, **options)
                else:
                    make_env("reach", seed=seed, robot=robots[label, yaw])
                outcome, _, _ = run_episode(world_model, "reach", seed, mpc_config_for(defaults, "reach"),
                                            fps=defaults.fps, robot=robots[label, yaw])
                log.write(json.dumps({"model": label, "checkpoint": str(getattr(args, label)), "camera_yaw": yaw,
                                      "seed": seed, "success": outcome.success,
                                      "final_distance": outcome.final_distance, "steps": outcome.steps}) + "\n")
                log.flush()
                tqdm.write(f"{label:6s} yaw {yaw:+.0f} seed {seed}: {'success' if outcome.success else 'failure'} "
                           f"({outcome.final_distance * 100:.1f} cm)")
    finally:
        for robot in robots.values():
            robot.close()


def format_table(records: list[dict]) -> str:
    """Markdown table: reach successes (Wilson 95% interval) and mean final distance per checkpoint and yaw."""
    from vjepa_ac.report import wilson_interval

    lines = ["| checkpoint | camera yaw | reach successes | rate (95% CI) | mean final distance | seeds |",
             "|---|---:|---:|---|---:|---|"]
    for label in ("before", "after"):
        for yaw in sorted({r["camera_yaw"] for r in records if r["model"] == label}):
            episodes = [r for r in records if r["model"] == label and r["camera_yaw"] == yaw]
            wins = sum(bool(r["success"]) for r in episodes)
            low, high = wilson_interval(wins, len(episodes))
            seeds = sorted(r["seed"] for r in episodes)
            distance = statistics.mean(r["final_distance"] for r in episodes) * 100
            lines.append(f"| {label} ({Path(episodes[0]['checkpoint']).name}) | {yaw:+.0f} | {wins}/{len(episodes)} | "
                         f"{wins / len(episodes):.0%} ({low:.0%}-{high:.0%}) | {distance:.1f} cm | "
                         f"{seeds[0]}-{seeds[-1]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vjepa_ac.finetune_study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="the checkpoint before fine-tuning")
    parser.add_argument("--after", type=Path, required=True, help="the fine-tuned checkpoint")
    parser.add_argument("--camera-yaw", type=float, action="append", default=None,
                        help="camera yaw(s) of the scene, degrees (repeatable; default 15)")
    parser.add_argument("--episodes", type=int, default=50, help="reach episodes per checkpoint and yaw (default 50)")
    parser.add_argument("--seed", type=int, default=5000, help="first episode seed (default 5000)")
    parser.add_argument("--out", type=Path, default=Path("finetune_eval"), help="results folder")
    parser.add_argument("--table", action="store_true", help="only print the table of the results so far")
    args = parser.parse_args(argv)
    args.camera_yaw = args.camera_yaw or [15.0]
    if not args.table:
        for checkpoint in (args.before, args.after):
            if not checkpoint.is_file():
                parser.error(f"no checkpoint {checkpoint}")
        run_study(args)
    records = read_results(args.out / "results.jsonl")
    if not records:
        print(f"no results in {args.out}", file=sys.stderr)
        return 1
    print(format_table(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
