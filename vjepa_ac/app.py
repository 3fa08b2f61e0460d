"""`vjepa-ac demo` and `vjepa-ac eval`: the closed loop (world model -> CEM/MPC planner -> simulated Franka).

Both commands take any AC checkpoint in Meta's layout: the embedded default model (used when `--checkpoint` is not
given) or Meta's released `vjepa2-ac-vitg.pt` (a GPU is needed in practice).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vjepa_ac.control import (
    add_planner_options,
    add_world_model_options,
    int_at_least,
    positive_int,
    print_planning_config,
)
from vjepa_ac.sim import TASK_NAMES
from vjepa_ac.sim.cli import add_camera_yaw_option

DEMO_TASKS: tuple[str, ...] = ("reach", "pick_and_place")


non_negative_int = int_at_least(0)


def task_list(text: str) -> list[str]:
    """argparse type: comma-separated task names, or "all"."""
    names = list(TASK_NAMES) if text.strip() == "all" else [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in names if t not in TASK_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown task(s) {unknown or text!r}; choose from {', '.join(TASK_NAMES)} or all"
        )
    return names


def _add_model_and_planner_options(parser: argparse.ArgumentParser) -> None:
    add_world_model_options(parser)
    # The planner CLI's options, resolved the same way (`vjepa_ac.model_card.mpc_config_for`); `--seed` is taken by
    # the episode seed here.
    add_planner_options(parser)
    parser.add_argument("--max-steps", type=positive_int, default=None,
                        help="cap on planned actions per episode (default: the task's budget)")
    add_camera_yaw_option(parser)


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="closed-loop MuJoCo demo: reach and pick-and-place toward goal images, with an MP4",
        description="Run reach and pick-and-place episodes in the MuJoCo Panda sim, planning every action with the "
        "world model toward goal images. Prints each episode's outcome and writes demo.mp4 (camera view, goal "
        "image, energy curve) and summary.md / summary.json to --out.",
    )
    demo.add_argument("--task", dest="tasks", type=task_list, default=list(DEMO_TASKS),
                      help=f"comma-separated tasks from {', '.join(TASK_NAMES)}, or all "
                      "(default: reach,pick_and_place)")
    demo.add_argument("--tasks", dest="tasks", type=task_list, help=argparse.SUPPRESS)  # the former spelling
    demo.add_argument("--episodes", type=positive_int, default=3, help="episodes per task (default: %(default)s)")
    demo.add_argument("--seed", type=non_negative_int, default=1000,
                      help="seed of each task's first episode (default 1000, the first seed `vjepa-ac eval` uses)")
    demo.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default: %(default)s)")
    demo.add_argument("--no-video", action="store_true", help="skip rendering the MP4")
    _add_model_and_planner_options(demo)
    demo.set_defaults(handler=_run_demo)

    ev = subparsers.add_parser(
        "eval",
        help="success rate (Wilson 95%% CI), final distance, planning time and open-loop error, as Markdown + JSON",
        description="Evaluate a world model in closed loop on sim tasks: N episodes per task on seeds S, S+1, ...; "
        "writes report.md and report.json to --out with the success rate and its Wilson 95% interval, the mean "
        "final end-effector distance, planning seconds per action and the planner settings, plus the open-loop "
        "prediction error per horizon step on held-out sim episodes and how well the encoder's goal energy tracks "
        "the distance to the goal (energy landscape). Every finished episode is appended to --out/episodes.jsonl as it "
        "ends; rerunning the same command after a kill skips the episodes already there.",
    )
    ev.add_argument("--task", dest="tasks", type=task_list, default=["reach"],
                    help=f"comma-separated tasks from {', '.join(TASK_NAMES)}, or all (default: reach)")
    ev.add_argument("--episodes", type=non_negative_int, default=20,
                    help="episodes per task; 0 = only the open-loop error and the energy landscape (default: "
                    "%(default)s)")
    ev.add_argument("--seed", type=non_negative_int, default=1000,
                    help="seed of each task's first episode (default: %(default)s)")
    ev.add_argument("--out", type=Path, default=Path("eval_out"), help="output folder (default: %(default)s)")
    ev.add_argument("--video", action="store_true", help="also write an MP4 of every episode")
    group = ev.add_argument_group("open-loop prediction error")
    group.add_argument(
        "--open-loop-episodes",
        type=non_negative_int,
        default=8,
        help="held-out sim episodes to collect (spread over the four tasks) and score; 0 = skip (default: %(default)s)",
    )
    group.add_argument("--open-loop-horizon", type=positive_int, default=4,
                       help="rollout steps to score (default: %(default)s)")
    landscape = ev.add_argument_group("energy landscape of the encoder")
    landscape.add_argument(
        "--landscape-goals", type=non_negative_int, default=8,
        help="reach goals on which to check that the encoder's goal energy of rendered frames falls as the arm "
        "nears the goal (rank correlation, straight-path descent), and as many grasp episodes on which to check it "
        "near the cube (offsets from the straddle pose); plot in energy_landscape.png; 0 = skip "
        "(default: %(default)s)",
    )
    landscape.add_argument(
        "--landscape-encoder", type=Path, default=None, metavar="ENCODER",
        help="score the landscape with this encoder checkpoint instead of the model's (e.g. the latest.pt of "
        "`vjepa-ac pretrain`), to check an encoder in seconds before encoding data and training a predictor on it; "
        "only with --episodes 0 --open-loop-episodes 0, since the model's predictor was not trained on its features. "
        "Its features are taken as the model reads them: a 4-level V-JEPA 2.1 encoder beside a single-level model "
        "is scored on its last level (pass a 2.1 model's --checkpoint for all four)",
    )
    _add_model_and_planner_options(ev)
    ev.set_defaults(handler=_run_eval)


def _run_demo(args: argparse.Namespace) -> int:
    if args.print_config:
        return print_planning_config(args, args.tasks)
    from vjepa_ac.closed_loop import run_demo

    return run_demo(args)


def _run_eval(args: argparse.Namespace) -> int:
    if args.print_config:
        return print_planning_config(args, args.tasks)
    from vjepa_ac.closed_loop import run_evaluation

    return run_evaluation(args)
