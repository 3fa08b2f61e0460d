"""The action-frame calibration experiment of EVALUATION.md: orbit the sim's exterior camera by known yaws, calibrate
with `planner.calibration` (several probe seeds) and run reach episodes with and without the correction.

    OMP_NUM_THREADS=1 MUJOCO_GL=egl python -m vjepa_ac.camera_yaw_study --out camera_yaw_out

Every calibration and episode is one line of `results.jsonl` in --out, written as it finishes, so a killed run resumes
where it stopped; `--table` prints the table from what is there. Per yaw the correction is the estimate of the first
probe seed (one calibration, as a user makes it); the other probe seeds show how much the estimate varies. Reach
episodes use the closed loop of `vjepa-ac eval` (`vjepa_ac.closed_loop.run_episode`) on seeds from --seed (5000 and
up: never used while tuning), the same seeds with and without the correction.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
from pathlib import Path

from tqdm.auto import tqdm

DEFAULT_YAWS = (0.0, -30.0, 30.0, -60.0, 60.0, -15.0, 15.0, -45.0, 45.0)
"""The yaws in the order they are run: the coarse grid first, so a cut-short run still spans -60..60."""


def _key(record: dict) -> tuple:
    return record["kind"], record["camera_yaw"], record.get("condition"), record["seed"]


def read_results(path: Path) -> list[dict]:
    """The records of a results file (a torn last line from a kill is skipped)."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def run_study(args: argparse.Namespace) -> None:
    import torch

    from vjepa_ac.planner.calibration import CalibrationConfig, CalibrationError, calibrate
    from vjepa_ac.model_card import load_for_planning, mpc_config_for, sim_config_options
    from vjepa_ac.robot.action_repeat import ActionRepeatRobot, control_periods_per_step
    from vjepa_ac.sim.tasks import make_env
    from vjepa_ac.closed_loop import run_episode

    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.jsonl"
    done = {_key(r) for r in read_results(path)}
    world_model, defaults, _ = load_for_planning(args.checkpoint, "cpu")
    base_config = mpc_config_for(defaults, "reach")
    total = len(args.yaws) * (args.probe_seeds + 2 * args.episodes)
    bar = tqdm(total=total, desc="camera-yaw study", unit="run")
    with path.open("a") as log:
        def write(record: dict) -> None:
            log.write(json.dumps(record) + "\n")
            log.flush()

        robots: dict[float, object] = {}

        def scene(camera_yaw: float, seed: int):
            """The sim with the cameras at `camera_yaw`, reset to a reach episode of `seed` (built once per yaw)."""
            if camera_yaw not in robots:
                sim_options = sim_config_options({**defaults.sim, "camera_yaw": camera_yaw})
                robots[camera_yaw], _ = make_env("reach", seed=seed, **sim_options)
            else:
                make_env("reach", seed=seed, robot=robots[camera_yaw])
            return robots[camera_yaw]

        try:
            # All calibrations first (a few seconds each), so every yaw has its estimates even if the episodes are cut.
            for camera_yaw in args.yaws:
                for probe_seed in range(args.seed, args.seed + args.probe_seeds):
                    if ("calibration", camera_yaw, None, probe_seed) not in done:
                        robot = scene(camera_yaw, probe_seed)
                        config = CalibrationConfig(seed=probe_seed, camera=base_config.camera)
                        periods = control_periods_per_step(robot.control_hz, defaults.fps)
                        record = {"kind": "calibration", "camera_yaw": camera_yaw, "seed": probe_seed}
                        try:
                            record.update(calibrate(ActionRepeatRobot(robot, periods), world_model, config).summary())
                        except CalibrationError as exc:
                            record["error"] = str(exc)
                        write(record)
                    bar.update(1)
                if camera_yaw in robots:
                    robots.pop(camera_yaw).close()
            estimates = {(r["camera_yaw"], r["seed"]): r.get("yaw") for r in read_results(path)
                         if r["kind"] == "calibration"}
            for camera_yaw in args.yaws:
                correction = estimates.get((camera_yaw, args.seed))
                conditions = {"uncorrected": 0.0, "corrected": correction if correction is not None else 0.0}
                for episode_seed in range(args.seed, args.seed + args.episodes):
                    for condition, frame_yaw in conditions.items():
                        if ("episode", camera_yaw, condition, episode_seed) in done:
                            bar.update(1)
                            continue
                        config = dataclasses.replace(base_config, action_frame_yaw=frame_yaw)
                        outcome, _, _ = run_episode(world_model, "reach", episode_seed, config, fps=defaults.fps,
                                                    robot=scene(camera_yaw, episode_seed))
                        write({"kind": "episode", "camera_yaw": camera_yaw, "condition": condition,
                               "action_frame_yaw": frame_yaw, "seed": episode_seed, "success": outcome.success,
                               "final_distance": outcome.final_distance, "steps": outcome.steps})
                        bar.update(1)
                        tqdm.write(f"yaw {camera_yaw:+.0f} {condition:11s} seed {episode_seed}: "
                                   f"{'success' if outcome.success else 'failure'} "
                                   f"({outcome.final_distance * 100:.1f} cm)")
        finally:
            for robot in robots.values():
                robot.close()
    bar.close()


def format_table(records: list[dict]) -> str:
    """Markdown table: per camera yaw the estimates over probe seeds and reach success without / with correction."""
    from vjepa_ac.report import wilson_interval

    def rate(episodes: list[dict]) -> str:
        if not episodes:
            return "-"
        wins = sum(bool(e["success"]) for e in episodes)
        low, high = wilson_interval(wins, len(episodes))
        distance = statistics.mean(e["final_distance"] for e in episodes) * 100
        return f"{wins}/{len(episodes)} ({wins / len(episodes):.0%}, {low:.0%}-{high:.0%}); {distance:.1f} cm"

    yaws = sorted({r["camera_yaw"] for r in records})
    lines = [
        ("| camera yaw | estimated yaw (first probe seed) | estimates over probe seeds: mean ± sd | "
         "reach without correction: successes (95% CI); mean final distance | reach with correction |"),
        "|---:|---:|---|---|---|",
    ]
    for yaw in yaws:
        calibrations = sorted((r for r in records if r["kind"] == "calibration" and r["camera_yaw"] == yaw),
                              key=lambda r: r["seed"])
        values = [r["yaw"] for r in calibrations if r.get("yaw") is not None]
        first = calibrations[0].get("yaw") if calibrations else None
        spread = "-"
        if values:
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            spread = f"{statistics.mean(values):+.1f} ± {sd:.1f} (n={len(values)}; " \
                     f"{', '.join(f'{v:+.0f}' for v in values)})"
        failed = len(calibrations) - len(values)
        if failed:
            spread += f"; {failed} refused"
        episodes = {c: [r for r in records if r["kind"] == "episode" and r["camera_yaw"] == yaw
                        and r["condition"] == c] for c in ("uncorrected", "corrected")}
        lines.append(f"| {yaw:+.0f} | {'-' if first is None else f'{first:+.1f}'} | {spread} | "
                     f"{rate(episodes['uncorrected'])} | {rate(episodes['corrected'])} |")
    return "\n".join(lines)


def format_calibration_table(records: list[dict]) -> str:
    """Markdown table: per camera yaw the calibration's residuals and confidence measures, means over probe seeds."""
    lines = [
        "| camera yaw | residual at the estimate | unrotated | predicting no change | contrast | "
        "leave-one-probe-out spread (deg) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for yaw in sorted({r["camera_yaw"] for r in records if r["kind"] == "calibration"}):
        fits = [r for r in records if r["kind"] == "calibration" and r["camera_yaw"] == yaw and "yaw" in r]
        if not fits:
            continue
        means = [statistics.mean(r[name] for r in fits)
                 for name in ("residual", "residual_unrotated", "residual_still", "contrast", "loo_spread")]
        lines.append(f"| {yaw:+.0f} | {means[0]:.3f} | {means[1]:.3f} | {means[2]:.3f} | {means[3]:.3f} | "
                     f"{means[4]:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vjepa_ac.camera_yaw_study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("camera_yaw_out"),
                        help="results folder (default: %(default)s)")
    parser.add_argument("--yaws", type=lambda t: [float(v) for v in t.split(",")], default=list(DEFAULT_YAWS),
                        help="comma-separated camera yaws in degrees, run in this order (default: 0,-30,30,-60,60,"
                        "-15,15,-45,45)")
    parser.add_argument("--episodes", type=int, default=20, help="reach episodes per yaw and condition (default 20)")
    parser.add_argument("--probe-seeds", type=int, default=3, help="calibrations per yaw (default 3)")
    parser.add_argument("--seed", type=int, default=5000,
                        help="first episode and probe seed (default 5000: seeds below are for tuning)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="world model (default: the embedded one)")
    parser.add_argument("--table", action="store_true", help="only print the table of what --out holds")
    args = parser.parse_args(argv)
    if not args.yaws or not all(math.isfinite(y) for y in args.yaws):
        parser.error("--yaws must be finite numbers")
    if not args.table:
        run_study(args)
    records = read_results(args.out / "results.jsonl")
    print(format_table(records))
    print()
    print(format_calibration_table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
