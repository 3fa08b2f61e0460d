"""Simulator throughput: physics steps/s, control steps/s (IK + servo interpolation) and offscreen rendering
frames/s at 256x256 and 1280x720, with our fast render settings against MuJoCo's defaults (the baseline: 4x
multisampling, shadows, reflections). Prints one row per measurement and the fast/default ratios.

Run: MUJOCO_GL=egl .venv/bin/python -m bench.sim [--seconds 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import sim  # noqa: F401  (headless GL backend before MuJoCo loads)

# isort: split
import mujoco

from sim.robot import SimConfig, SimRobot


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


if __name__ == "__main__":
    main()
