"""Simulator throughput: physics steps/s, control steps/s (IK + servo interpolation) and offscreen rendering
frames/s at 256x256 and 1280x720, with our fast render settings against MuJoCo's defaults (the baseline: 4x
multisampling, shadows, reflections). Prints one row per measurement and the fast/default ratios.

Then data collection with domain randomisation against the fixed scene (the baseline): rendering a randomised scene,
rebuilding a scene per episode, and whole `sim collect` runs (same seeds, same motion mix, three 180x320 cameras,
H.264 writing included), alternating fixed / randomised runs so both see the same machine load. With --per-task, the
cost of collecting each task at the default settings (randomised, default motion mix), to size datasets.

Run: MUJOCO_GL=egl .venv/bin/python -m bench.sim [--seconds 2] [--episodes 3] [--per-task 4]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

import vjepa_ac.sim  # noqa: F401  (headless GL backend before MuJoCo loads)

# isort: split
import mujoco

from vjepa_ac.data.droid import open_episode
from vjepa_ac.sim.collect import CollectConfig, collect
from vjepa_ac.sim.robot import SimConfig, SimRobot
from vjepa_ac.sim.tasks import TASK_NAMES, make_env


def _rate(fn, seconds: float) -> float:
    """Calls per second of `fn` over about `seconds` (after one warm-up call)."""
    fn()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        count += 1
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement (default 2)")
    parser.add_argument("--episodes", type=int, default=3,
                        help="episodes per `sim collect` run in the randomised vs fixed comparison (default 3)")
    parser.add_argument("--task", default="pick_and_place", help="task of that comparison (default pick_and_place)")
    parser.add_argument("--per-task", type=int, default=0, metavar="N",
                        help="also time N default-settings episodes of every task (default 0: skip)")
    args = parser.parse_args()

    fast = SimRobot(SimConfig(cameras=("left",)))
    fast.connect()
    default = SimRobot(SimConfig(cameras=("left",), fast_render=False))
    default.connect()

    physics = _rate(lambda: mujoco.mj_step(fast.model, fast.data), args.seconds)
    print(f"physics: {physics:,.0f} mj_step/s at {1 / fast.model.opt.timestep:.0f} Hz "
          f"({physics * fast.model.opt.timestep:.0f}x real time)")
    fast.reset()
    rng = np.random.default_rng(0)

    def control_step() -> None:
        fast.send_action(np.concatenate([rng.normal(0, 0.01, 3), rng.normal(0, 0.02, 3), [0.0]]))
        if np.linalg.norm(fast.droid_state()[:3] - [0.45, 0, 0.3]) > 0.25:
            fast.reset()

    control = _rate(control_step, args.seconds)
    print(f"control: {control:,.0f} send_action/s at 15 Hz ({control / 15:.0f}x real time)")

    for size in ((256, 256), (720, 1280)):
        rates = {name: _rate(lambda r=robot, s=size: r.render(size=s), args.seconds)
                 for name, robot in (("fast", fast), ("default", default))}
        print(f"render {size[0]}x{size[1]}: fast {rates['fast']:.1f} frames/s, default {rates['default']:.1f} "
              f"frames/s, ratio {rates['fast'] / rates['default']:.1f}x")
    fast.close()
    default.close()
    collection(args)


def _collect_run(task: str, episodes: int, seed: int, randomize: bool, **overrides) -> tuple[float, int, int]:
    """Seconds, recorded steps and successes of one fresh `sim collect` run (three 180x320 cameras)."""
    with tempfile.TemporaryDirectory() as out:
        config = CollectConfig(task=task, episodes=episodes, seed=seed, randomize_appearance=randomize, **overrides)
        start = time.perf_counter()
        summary = collect(out, config, progress=False)
        seconds = time.perf_counter() - start
        steps = sum(open_episode(path).num_steps for path in summary.paths)
    return seconds, steps, summary.successes


def collection(args: argparse.Namespace) -> None:
    fixed, _ = make_env(args.task, seed=0, cameras=("left",))
    varied, _ = make_env(args.task, seed=0, cameras=("left",), randomize_appearance=True)
    rates = {name: _rate(lambda r=robot: r.render(), args.seconds) for name, robot in
             (("fixed", fixed), ("randomised", varied))}
    print(f"render 180x320, one camera: randomised scene {rates['randomised']:.1f} frames/s, fixed scene "
          f"{rates['fixed']:.1f} frames/s, ratio {rates['randomised'] / rates['fixed']:.2f}x")
    seeds = iter(range(10**6))

    def new_scene() -> None:
        make_env(args.task, seed=next(seeds), robot=varied)
        varied.render()

    def same_scene() -> None:
        make_env(args.task, seed=next(seeds), robot=fixed)
        fixed.render()

    resets = {"fixed": _rate(same_scene, args.seconds), "randomised": _rate(new_scene, args.seconds)}
    print(f"reset + first frame: randomised (scene rebuilt, new renderer) {1000 / resets['randomised']:.0f} ms, "
          f"fixed {1000 / resets['fixed']:.0f} ms")
    fixed.close()
    varied.close()

    totals = {"fixed": [0.0, 0, 0], "randomised": [0.0, 0, 0]}
    for seed in range(2):
        for name in ("fixed", "randomised"):
            seconds, steps, successes = _collect_run(args.task, args.episodes, seed, name == "randomised")
            for i, value in enumerate((seconds, steps, successes)):
                totals[name][i] += value
    speed = {name: steps / seconds for name, (seconds, steps, _) in totals.items()}
    for name, (seconds, steps, successes) in totals.items():
        episodes = 2 * args.episodes
        print(f"sim collect {args.task}, {name}: {episodes} episodes in {seconds:.1f} s, {steps} steps "
              f"({seconds / episodes:.1f} s/episode), {speed[name]:.1f} steps/s = {3 * speed[name]:.1f} camera "
              f"frames/s, {successes}/{episodes} successful")
    print(f"collection speed randomised / fixed: {speed['randomised'] / speed['fixed']:.2f}x")

    if args.per_task:
        print(f"default settings (randomised, default motion mix), {args.per_task} episodes per task:")
        for task in TASK_NAMES:
            seconds, steps, successes = _collect_run(task, args.per_task, 100, True)
            print(f"  {task}: {seconds / args.per_task:.1f} s/episode, {steps / args.per_task:.0f} steps/episode, "
                  f"{steps / seconds:.1f} steps/s, {successes}/{args.per_task} successful; 1000 episodes = "
                  f"{1000 * seconds / args.per_task / 3600:.1f} h")


if __name__ == "__main__":
    main()
