"""`vjepa-ac plan` (one-shot: print the next action), `vjepa-ac run` (closed loop on the sim or a bridged arm) and
`vjepa-ac calibrate` (action-frame calibration), with the option groups that `demo`, `eval` and `goal capture` share.

Application layer: this module wires the planner library (`planner/`) to the simulator (`sim/`), the bridge client
(`robot.client`) and the model card (`vjepa_ac.model_card`); the library itself imports none of them."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

from vjepa_ac.data.conventions import camera_views
from vjepa_ac.data.config import add_config_arguments
from vjepa_ac.sim import TASK_NAMES

_PRECISIONS = ("auto", "float32", "bfloat16")


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type accepting integers >= `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    return parse


positive_int = int_at_least(1)


def existing_file(text: str) -> Path:
    """argparse type: a path to an existing file."""
    path = Path(text).expanduser()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {path}")
    return path


def _schedule(text: str) -> tuple[int, ...]:
    try:
        steps = tuple(int(part) for part in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected step counts like 4,10,4, got {text!r}") from None
    if not steps or min(steps) < 1:
        raise argparse.ArgumentTypeError(f"expected positive step counts like 4,10,4, got {text!r}")
    return steps


def _goal_gripper(text: str) -> tuple[float | None, ...]:
    values: list[float | None] = []
    for part in text.replace(",", " ").split():
        if part == "free":
            values.append(None)
            continue
        try:
            value = float(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected Δgripper values or 'free' like -0.5,0.5,free, got {text!r}") \
                from None
        if not -1.0 <= value <= 1.0:
            raise argparse.ArgumentTypeError(f"Δgripper values must be in [-1, 1], got {part}")
        values.append(value)
    if not values:
        raise argparse.ArgumentTypeError("expected at least one Δgripper value or 'free'")
    return tuple(values)


def calibration_file(text: str) -> float:
    """argparse type: the action-frame yaw (degrees) from a `vjepa-ac calibrate --out` file."""
    from vjepa_ac.planner.calibration import read_action_frame_yaw

    try:
        return read_action_frame_yaw(existing_file(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def yaw_degrees(text: str) -> float:
    """argparse type: a finite angle in degrees."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an angle in degrees such as -30, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite angle in degrees, got {text!r}")
    return value


def add_world_model_options(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The "world model" option group with --checkpoint and --device, shared by plan, run, demo and eval; returns the
    group so a command can add its own world-model options to it."""
    group = parser.add_argument_group("world model")
    group.add_argument(
        "--checkpoint", type=existing_file, default=None,
        help="AC checkpoint in Meta's layout (ours or vjepa2-ac-vitg.pt); default: the embedded sim model in "
        "vjepa_ac/default_model/",
    )
    group.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:0 (default: cuda if available)")
    return group


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    group = add_world_model_options(parser)
    group.add_argument(
        "--crop", choices=("droid", "square", "none"), default=None,
        help="crop before resizing frames: droid (training crop), square (Meta's planning notebook) or none "
        "(default: the checkpoint's model card, else droid)",
    )
    group.add_argument(
        "--precision", choices=_PRECISIONS, default=None,
        help="predictor precision: auto = bf16 autocast on CUDA, fp32 on CPU (default: the model card's setting, "
        "else auto)",
    )
    group.add_argument(
        "--compile", action="store_true",
        help="torch.compile the predictor step (slow first call; default: the model card's setting, else off)",
    )


@functools.cache
def _embedded_card() -> dict:
    """The embedded default model's card, read as JSON (no model is loaded)."""
    from vjepa_ac.default_model import DEFAULT_CHECKPOINT

    try:
        card = json.loads(DEFAULT_CHECKPOINT.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return {}
    return card if isinstance(card, dict) else {}


def _card_entry(section: dict, name: str) -> object:
    """A setting's value in a card section (planner fields, their "space", or the loop's), or None."""
    planner = section.get("planner", {})
    for place in (planner, planner.get("space", {}), section.get("mpc", {}), section):
        if isinstance(place, dict) and place.get(name) is not None:
            return place[name]
    return None


def _shown(value: object) -> str:
    return ",".join("free" if v is None else str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)


def card_default(name: str, library: object) -> str:
    """Help text of planning setting `name` (a `PlanningOverrides` field): the value used with the embedded default
    model (its model card's, and which sim tasks' card entries change it) and, for a checkpoint without a card, the
    library's default `library` (tests/vjepa_ac/test_control.py checks it against the library's dataclasses)."""
    card = _embedded_card()
    value = _card_entry(card, name)
    tasks = [task for task, entry in card.get("tasks", {}).items() if _card_entry(entry, name) is not None]
    if value is None:
        text = f"default: {_shown(library)}"
    else:
        text = f"default: {_shown(value)} with the embedded model's card, {_shown(library)} without a card"
    return text + (f"; the card sets it per task for {', '.join(tasks)}" if tasks else "")


def add_planner_options(parser: argparse.ArgumentParser) -> None:
    """The planner option group, shared by plan, run, demo and eval (`--planner-seed` is the sampling seed; `--seed`
    is, wherever it exists, the seed of the episode).

    Every option is a `vjepa_ac.model_card.PlanningOverrides` field (the library's field name) and defaults to None:
    `mpc_config_for` then takes the model card's value (per task for sim tasks), else the library's. The same fields
    can be given in a `--config` YAML file and as `KEY=VALUE` words (`data.config`); `--print-config` shows the
    resolved planner settings (`print_planning_config`)."""
    add_config_arguments(parser, _planning_settings_class,
                         note="null: the checkpoint's model card, else the library's default (see the options)")
    group = parser.add_argument_group("planner (defaults: the checkpoint's model card, else the library's)")
    group.add_argument("--planner", choices=("cem", "mppi"), default=None, help="sampling planner (default: cem)")
    group.add_argument("--samples", type=positive_int, default=None,
                       help=f"candidate action sequences per iteration ({card_default('samples', 800)})")
    group.add_argument("--iterations", type=positive_int, default=None,
                       help=f"planner iterations per action ({card_default('iterations', 10)})")
    group.add_argument("--topk", type=positive_int, default=None,
                       help=f"CEM elites kept per iteration, at most --samples ({card_default('topk', 10)})")
    group.add_argument("--horizon", type=positive_int, default=None,
                       help=f"planned steps (imagined rollout length; {card_default('horizon', 1)})")
    group.add_argument("--max-translation", type=float, default=None,
                       help=f"bound on Δxyz per step, metres ({card_default('max_translation', 0.075)})")
    group.add_argument(
        "--translation-constraint", choices=("l1_ball", "box"), default=None,
        help="l1_ball: |Δx|+|Δy|+|Δz| <= bound (paper); box: each axis within ±bound (reference notebook) "
        f"({card_default('translation_constraint', 'l1_ball')})",
    )
    group.add_argument("--max-yaw", type=float, default=None,
                       help="bound on Δyaw per step, radians; > 0 lets the planner turn the hand to meet an object's "
                       f"faces, 0 keeps its yaw as the reference does ({card_default('max_yaw', 0.0)})")
    group.add_argument("--close-gripper", type=int, default=None,
                       help=f"force Δgripper = 1 from this horizon step on ({card_default('close_gripper', None)})")
    group.add_argument(
        "--reduce", choices=("last", "sum"), default=None,
        help=f"energy of a candidate: the last imagined step's, or the sum over all ({card_default('reduce', 'last')})",
    )
    group.add_argument(
        "--max-batch", type=positive_int, default=None,
        help="candidates per predictor call; bounds memory, e.g. 100 for the ViT-g predictor, whose key/value cache "
        f"takes ~50 MB per candidate and imagined step in fp32; None = all ({card_default('max_batch', None)})",
    )
    group.add_argument("--warm-start", action="store_true", default=None,
                       help="CEM: start each plan from the previous plan shifted by one step (default: off)")
    group.add_argument("--early-stop-std", metavar="METRES", type=float, default=None,
                       help="CEM: stop iterating once every Δxyz sampling std is below this (default: off)")
    group.add_argument("--surprise-gate", metavar="DISTANCE", type=float, default=None,
                       help="skip re-planning while the observed latent is within this distance of the one the last "
                       "plan imagined; the plan's next step is sent instead (default: off)")
    group.add_argument("--threads", type=positive_int, default=None,
                       help="torch CPU threads (default: the fastest count, measured on this model at the first plan)")
    group.add_argument("--planner-seed", metavar="SEED", type=int, default=None,
                       help=f"sampling seed; the same seed gives the same plan ({card_default('seed', 0)})")
    frame = group.add_mutually_exclusive_group()
    frame.add_argument(
        "--action-frame", dest="action_frame_yaw", metavar="FILE", type=calibration_file, default=None,
        help="calibration file written by `vjepa-ac calibrate --out`: plan in the world model's action frame and "
        "rotate the actions sent to the robot back into its base frame",
    )
    frame.add_argument(
        "--action-frame-yaw", dest="action_frame_yaw", metavar="DEG", type=yaw_degrees, default=None,
        help="the same with the yaw given directly: degrees the model's action frame is turned from the robot base "
        f"frame about the vertical, counter-clockwise seen from above ({card_default('action_frame_yaw', 0.0)})",
    )


def _planning_settings_class() -> type:
    from vjepa_ac.model_card import PlanningOverrides

    return PlanningOverrides


def print_planning_config(args: argparse.Namespace, tasks: Sequence[str] | None = None) -> int:
    """`--print-config` of plan, run, demo and eval: the `MPCConfig` the loop runs with (the library's defaults, the
    model card, a sim task's entry in it, then the given settings), as YAML; one per task of `tasks` (demo, eval),
    else the command's own (`resolved_config`). A goal schedule file's settings are applied when it is read."""
    from vjepa_ac.data.config import dump_yaml
    from vjepa_ac.model_card import PlanningOverrides, load_planning_defaults, mpc_config_for, resolve_checkpoint

    path = resolve_checkpoint(args.checkpoint)
    defaults = load_planning_defaults(path)
    if tasks is None:
        configs = {"config": resolved_config(args, defaults)}
    else:
        overrides = PlanningOverrides.from_args(args)
        configs = {task: mpc_config_for(defaults, task, overrides) for task in tasks}
    print(f"# planning settings for {path}")
    for name, config in configs.items():
        print(f"# {name if tasks is not None else 'MPCConfig'} (planner: {type(config.planner).__name__})")
        print(dump_yaml(config if tasks is None else {name: config}), end="")
    return 0


def add_robot_options(parser: argparse.ArgumentParser) -> None:
    """--robot sim|bridge with the sim task and camera placement and the bridge's address and keys; shared by `run`,
    `calibrate` and `goal capture` (read by `make_robot`)."""
    parser.add_argument("--robot", choices=("sim", "bridge"), required=True, help="MuJoCo sim or the ZMQ robot bridge")
    parser.add_argument(
        "--task", default="reach", choices=TASK_NAMES,
        help="sim task whose scene is used (run: its goal images too, unless --goal / --goal-schedule; default: "
        "%(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="sim episode seed (default: %(default)s)")
    parser.add_argument("--task-seed", dest="seed", type=int, help=argparse.SUPPRESS)  # the former spelling
    bridge = parser.add_argument_group("bridge (--robot bridge)")
    bridge.add_argument("--host", default="127.0.0.1", help="address of the machine running `vjepa-ac bridge run`")
    bridge.add_argument(
        "--port-base", type=int, default=5555, help="the bridge's cmd port (state, rpc, camera: +1..+3)"
    )
    bridge.add_argument("--client-key", default=None, help="this workstation's .key_secret file (CurveZMQ)")
    bridge.add_argument("--bridge-key", default=None, help="the bridge's public .key file (CurveZMQ)")
    parser.add_argument(
        "--cameras", type=existing_file, default=None, metavar="YAML",
        help="cameras read in this process rather than through the bridge: a YAML file with a `cameras:` mapping "
        "role -> settings as in the bridge config (launch/README.md); they replace the robot's frames of those roles",
    )
    from vjepa_ac.sim.cli import add_camera_yaw_option

    add_camera_yaw_option(parser.add_argument_group("sim (--robot sim)"))


def register(subparsers: argparse._SubParsersAction) -> None:
    plan = subparsers.add_parser(
        "plan",
        help="one-shot planning: print the next action for an observation, a state and a goal image",
        description="Encode the observation and goal images, plan with CEM (or MPPI) in latent space and print the "
        "next 7-D DROID action (Δxyz, Δeuler, Δgripper) for integrating your own control loop.",
    )
    # --obs, --state and a goal are checked in _run_plan, so that --print-config works without them.
    plan.add_argument("--obs", type=Path, help="current camera image (PNG/JPEG); required")
    plan.add_argument(
        "--state",
        help="current DROID state: 7 numbers x,y,z,roll,pitch,yaw,gripper (metres, radians, 0 open..1 closed); "
        "required",
    )
    plan_goal = plan.add_mutually_exclusive_group()
    plan_goal.add_argument("--goal", type=Path, help="goal image from the same camera and resolution (this or "
                           "--goal-schedule is required)")
    plan_goal.add_argument("--goal-schedule", dest="goal_schedule_file", type=Path, metavar="FILE",
                           help="goal schedule (vjepa-ac goal capture); plans toward sub-goal --goal-index with its "
                           "gripper pin")
    plan.add_argument("--goal-index", type=int_at_least(0), default=0,
                      help="sub-goal of --goal-schedule to plan toward (default 0)")
    plan.add_argument("--json", action="store_true", help="print actions, energies and timing as JSON")
    _add_model_options(plan)
    add_planner_options(plan)
    plan.set_defaults(handler=_run_plan)

    run = subparsers.add_parser(
        "run",
        help="closed-loop control towards goal images on the MuJoCo sim or a bridged Franka",
        description="Receding-horizon control: observe, encode, plan, send the first action, repeat until the goal "
        "energy threshold or the step budget. Writes steps.jsonl (one line per control step), energies.png and "
        "episode.mp4 (camera frames beside the goal image) to --out.",
    )
    add_robot_options(run)
    run_goal = run.add_mutually_exclusive_group()
    run_goal.add_argument("--goal", type=Path, nargs="+", default=None, help="goal image(s), one per sub-goal, in order")
    run_goal.add_argument(
        "--goal-schedule", dest="goal_schedule_file", type=Path, metavar="FILE", default=None,
        help="goal schedule file or folder (vjepa-ac goal capture): its images, steps per sub-goal, gripper pins and "
        "switching rule; --schedule, --goal-gripper, --switch-energy and --stop-energy override it",
    )
    _add_camera_and_fps_options(run)
    run.add_argument("--steps", dest="max_steps", type=positive_int, help=argparse.SUPPRESS)  # the former spelling
    run.add_argument(
        "--max-steps", metavar="STEPS", type=positive_int, default=None,
        help="budget of planned actions (default: the model card's setting, else the sim task's budget as demo/eval "
        "use it, else the sum of the goal schedule, else 50)",
    )
    run.add_argument("--schedule", dest="goal_schedule", metavar="SCHEDULE", type=_schedule, default=None,
                     help=f"steps per sub-goal, e.g. 4,10,4 ({card_default('goal_schedule', None)})")
    run.add_argument("--goal-gripper", metavar="VALUES", type=_goal_gripper, default=None,
                     help="Δgripper pinned per sub-goal, 'free' = searched, e.g. --goal-gripper=-0.5,-0.5,0.5,free "
                     f"(-1 opens, +1 closes; None = all searched; {card_default('goal_gripper', None)})")
    run.add_argument("--switch-energy", type=float, default=None,
                     help=f"advance to the next goal below this energy ({card_default('switch_energy', None)})")
    run.add_argument("--stop-energy", type=float, default=None,
                     help=f"stop when the last goal's energy is below this ({card_default('stop_energy', None)})")
    run.add_argument("--max-frame-age", dest="max_frame_age_s", metavar="SECONDS", type=float, default=None,
                     help="refuse camera frames older than this relative to the arm state "
                     f"({card_default('max_frame_age_s', 0.5)})")
    run.add_argument("--context-frames", type=positive_int, default=None,
                     help=f"observed frames given to the predictor ({card_default('context_frames', 1)})")
    run.add_argument("--out", type=Path, default=Path("run_out"), help="output folder for the log, plot and video")
    run.add_argument("--no-video", action="store_true", help="skip the MP4")
    record = run.add_argument_group("recording")
    record.add_argument(
        "--record", metavar="DIR", type=Path, default=None,
        help="also write the episode in DROID's raw layout under DIR/<lab>/success|failure/... (every control period, "
        "every camera the robot streams), labelled by the task's success check (sim) or the goal energy (bridge); a "
        "run that is killed is closed as a failed episode the next time DIR is recorded into",
    )
    record.add_argument("--instruction", default=None,
                        help="language instruction stored with the recording (default: the sim task's name)")
    record.add_argument("--lab", default="VJEPAAC", help="DROID lab name of the recording (default: VJEPAAC)")
    _add_model_options(run)
    add_planner_options(run)
    run.set_defaults(handler=_run_closed_loop)


    calibrate = subparsers.add_parser(
        "calibrate",
        help="estimate the rotation between the robot base frame and the world model's action frame",
        description="Action-frame calibration without markers. The arm makes a few small horizontal probe motions "
        "(out and back, through the normal robot interface, so every limit applies); the world model predicts the "
        "frame after each probe with the probe rotated by every candidate yaw, and the yaw whose predictions match "
        "the observed frames best is written to --out. Pass that file to run / plan / demo / eval with "
        "--action-frame FILE. Refuses (writing nothing) when the arm does not move, the camera sees no change or "
        "the fit is undetermined.",
    )
    add_robot_options(calibrate)
    _add_camera_and_fps_options(calibrate)
    probes = calibrate.add_argument_group("probes")
    probes.add_argument("--probes", type=int_at_least(3), default=16,
                        help="probe motions, out and back along directions spread over half a turn (default 16)")
    probes.add_argument("--probe-step", type=float, default=0.06,
                        help="length of each probe motion in metres, one world-model step (default 0.06)")
    probes.add_argument("--probe-seed", type=int, default=0, help="seed of the first probe direction (default 0)")
    calibrate.add_argument("--out", type=Path, default=Path("action_frame.json"),
                           help="calibration file to write (JSON; default: %(default)s)")
    _add_model_options(calibrate)
    calibrate.set_defaults(handler=_run_calibrate)


def _add_camera_and_fps_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--camera", default=None, help=f"camera role to plan from ({card_default('camera', 'left')})")
    parser.add_argument(
        "--fps", type=float, default=None,
        help="frame rate the predictor was trained at; each planned action is spread over control_hz / fps control "
        "periods, the interval the predictor imagines (default: the model card's setting, else 4 as Meta's DROID "
        "training)",
    )


def resolved_config(args: argparse.Namespace, defaults):
    """The `MPCConfig` of `plan` / `run`: the model card (with the sim task's overrides for `run --robot sim`), then
    the given options; the same resolution as `demo` and `eval`."""
    from vjepa_ac.model_card import PlanningOverrides, mpc_config_for

    task = args.task if getattr(args, "robot", None) == "sim" else None
    return mpc_config_for(defaults, task, PlanningOverrides.from_args(args))


def _load_world_model(args: argparse.Namespace):
    """(WorldModel, PlanningDefaults) for --checkpoint (default: the embedded model) and its model card."""
    from vjepa_ac.model_card import (
        load_planning_defaults,
        pick_device,
        resolve_checkpoint,
    )
    from vjepa_ac.worldmodel import load_world_model

    path = resolve_checkpoint(args.checkpoint)
    defaults = load_planning_defaults(path)
    crop = defaults.crop if args.crop is None else (None if args.crop == "none" else args.crop)
    return load_world_model(path, device=pick_device(args.device), crop=crop), defaults


def read_image(path: Path):
    """An RGB uint8 image from a PNG/JPEG file, or ValueError."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot read an image from {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def parse_state(text: str):
    import numpy as np

    from vjepa_ac.planner.mpc import check_state

    try:
        return check_state(np.array([float(v) for v in text.replace(",", " ").split()]))
    except ValueError as exc:
        raise ValueError(f"--state must be 7 numbers x,y,z,roll,pitch,yaw,gripper, got {text!r} ({exc})") from None


def with_goal_schedule(config, schedule, args: argparse.Namespace):
    """`config` with the goal schedule's settings, except those given on the command line; the schedule replaces a
    sim task's own sub-goal settings."""
    from vjepa_ac.model_card import PlanningOverrides

    given = PlanningOverrides.from_args(args).given()
    settings = {k: v for k, v in schedule.mpc_settings().items() if k != "camera" and k not in given}
    return dataclasses.replace(config, **settings)


def _run_plan(args: argparse.Namespace) -> int:
    if args.print_config:
        return print_planning_config(args)
    missing = [flag for flag, value in (("--obs", args.obs), ("--state", args.state)) if value is None]
    if args.goal is None and args.goal_schedule_file is None:
        missing.append("--goal or --goal-schedule")
    if missing:
        raise argparse.ArgumentTypeError(f"the following arguments are required: {', '.join(missing)}")
    from vjepa_ac.planner.goals import load_goal_schedule
    from vjepa_ac.planner.mpc import LatentPlanner, check_goal_images

    try:
        state = parse_state(args.state)
        obs = read_image(args.obs)
        goals, goal_index, schedule = None, 0, None
        if args.goal_schedule_file is not None:
            schedule = load_goal_schedule(args.goal_schedule_file)
            if args.goal_index >= len(schedule.goals):
                raise ValueError(f"--goal-index {args.goal_index}: {schedule.path} has {len(schedule.goals)} sub-goals")
            goals, goal_index = schedule.load_images(), args.goal_index
        else:
            goals = [read_image(args.goal)]
        check_goal_images(goals, obs.shape)
    except ValueError as exc:  # the given observation, goal, schedule or state is unusable
        raise argparse.ArgumentTypeError(str(exc)) from exc
    world_model, defaults = _load_world_model(args)
    config = resolved_config(args, defaults)
    if schedule is not None:
        try:
            schedule.check_camera(config.camera, obs.shape)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc
        config = with_goal_schedule(config, schedule, args)
    controller = LatentPlanner(world_model, goals, config)
    result = controller.plan(controller.encode([obs]), state[None], goal_index=goal_index)
    if args.json:
        print(json.dumps(result.summary(), indent=2))
    else:
        print(" ".join(f"{v:.6f}" for v in result.first_action))
    return 0


def make_robot(args: argparse.Namespace, defaults, camera: str):
    """The `vjepa_ac.episode.EpisodeSetup` of --robot: a sim task (its scene, goal images, success check and step
    budget) or the bridge client alone; with --cameras, their frames replace the robot's of the same roles."""
    from vjepa_ac.episode import EpisodeSetup, sim_episode

    local = _local_cameras(args.cameras) if getattr(args, "cameras", None) else None
    if args.robot == "sim":
        from vjepa_ac.model_card import sim_settings

        # The scene the model was trained on (image size, cameras, workspace), as its model card records it.
        setup = sim_episode(args.task, args.seed, camera=camera, sim_options=sim_settings(defaults, args))
    else:
        # The bridge streams the views no local camera delivers.
        roles = tuple(view for view in camera_views(camera) if local is None or view not in local.roles)
        setup = EpisodeSetup(robot=_bridge_client(args, roles))
    if local is not None:
        from vjepa_ac.robot.cameras import WithCameras

        setup.robot = WithCameras(setup.robot, local)
    return setup


def _bridge_client(args: argparse.Namespace, camera_roles: tuple[str, ...]):
    from vjepa_ac.robot.client import BridgeClient, ClientConfig

    return BridgeClient(ClientConfig(
        host=args.host, client_secret_key=args.client_key, bridge_public_key=args.bridge_key, camera_roles=camera_roles,
    ).with_port_base(args.port_base))


def _check_bridge_answers(args: argparse.Namespace) -> None:
    """BridgeError within the RPC timeout if no bridge answers at --host/--port-base (asked before the world model
    loads, so a missing bridge is reported in seconds; the arm is not armed by this)."""
    client = _bridge_client(args, camera_roles=())
    try:
        client.call("status")
    finally:
        client.close()


def _local_cameras(path: Path):
    """The `CameraRig` of a YAML file's `cameras:` mapping."""
    import yaml

    from vjepa_ac.robot.cameras import CameraRig, cameras_from_mapping

    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or not data.get("cameras"):
        raise ValueError(f"{path}: expected a `cameras:` mapping of role -> camera settings")
    return CameraRig.from_configs(cameras_from_mapping(data["cameras"]))


def _recording_robot(args: argparse.Namespace, robot):
    """`robot` wrapped in a `RecordingRobot` when `--record` is given (closing it keeps a failed run as such)."""
    if args.record is None:
        return robot
    from vjepa_ac.robot.recording import RecordingConfig, RecordingRobot

    instruction = args.instruction if args.instruction is not None else (args.task if args.robot == "sim" else "")
    config = RecordingConfig(task=instruction, lab=args.lab, scene_id=f"sim-{args.task}" if args.robot == "sim" else "",
                             robot_serial="panda-sim" if args.robot == "sim" else "franka")
    return RecordingRobot(robot, args.record, config, extra_attrs={"run_robot": args.robot})


def _exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so a stopped run holds the arm and closes its recording, as Ctrl-C does."""
    import signal

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)


def _run_closed_loop(args: argparse.Namespace) -> int:
    if args.print_config:
        return print_planning_config(args)
    from vjepa_ac.planner.goals import load_goal_schedule
    from vjepa_ac.planner.mpc import run_mpc
    from vjepa_ac.planner.report import save_episode

    if args.robot == "bridge" and not args.goal and args.goal_schedule_file is None:
        raise argparse.ArgumentTypeError("--robot bridge needs --goal images or a --goal-schedule (vjepa-ac goal "
                                         "capture)")
    try:
        given_goals = [read_image(p) for p in args.goal] if args.goal else None
        schedule = load_goal_schedule(args.goal_schedule_file) if args.goal_schedule_file is not None else None
        if schedule is not None:
            given_goals = schedule.load_images()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    if args.robot == "bridge":
        _check_bridge_answers(args)
    world_model, defaults = _load_world_model(args)
    fps = args.fps or defaults.fps
    if not fps > 0:
        raise argparse.ArgumentTypeError(f"--fps must be > 0, got {fps}")
    config = resolved_config(args, defaults)
    if schedule is not None:
        try:
            schedule.check_camera(config.camera)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc
        config = with_goal_schedule(config, schedule, args)
    setup = make_robot(args, defaults, config.camera)
    if schedule is not None:
        setup.budget_periods = None  # a goal schedule's leftover budget stays on its last goal
    goals = given_goals or setup.goals
    recorder = _recording_robot(args, setup.robot)
    log_path = args.out / "steps.jsonl"
    _exit_on_sigterm()
    controlled, config, periods = setup.controlled(config, fps, recorder)
    with controlled:  # connects: an absent bridge fails before --out is touched
        args.out.mkdir(parents=True, exist_ok=True)
        log_path.unlink(missing_ok=True)
        episode = run_mpc(controlled, world_model, goals, config, log_path=log_path, done=setup.success)
        recorded = recorder.finish(success=episode.goal_reached) if recorder is not setup.robot else None
    outputs = save_episode(episode, args.out, video=not args.no_video, fps=fps)
    plan_seconds = [r.plan_seconds for r in episode.steps]
    print(f"outcome: {episode.outcome} after {len(episode.steps)} planned actions ({periods} control periods each)")
    if plan_seconds:
        print(f"planning: {sum(plan_seconds) / len(plan_seconds):.2f} s per action")
    print(f"log: {log_path}")
    if recorded is not None:
        print(f"recording: {recorded}")
    for name, path in outputs.items():
        print(f"{name}: {path}")
    return 0 if episode.goal_reached else 1


def _run_calibrate(args: argparse.Namespace) -> int:
    from vjepa_ac.planner.calibration import CalibrationConfig, calibrate, write_calibration
    from vjepa_ac.robot.action_repeat import ActionRepeatRobot

    world_model, defaults = _load_world_model(args)
    fps = args.fps or defaults.fps
    try:
        config = CalibrationConfig(probes=args.probes, step=args.probe_step, seed=args.probe_seed,
                                   camera=args.camera or defaults.camera)
        setup = make_robot(args, defaults, config.camera)
        with ActionRepeatRobot(setup.robot, setup.periods_per_action(fps)) as controlled:
            result = calibrate(controlled, world_model, config)
    except ValueError as exc:  # the probes cannot determine the frame (no motion, no change, a missing camera)
        raise argparse.ArgumentTypeError(str(exc)) from exc
    print(result.format())
    meta = {"camera": config.camera, "checkpoint": str(args.checkpoint or "embedded default model"),
            "probes": args.probes, "probe_step": args.probe_step, "probe_seed": args.probe_seed}
    print(f"wrote {write_calibration(args.out, result, meta)}; use it with --action-frame {args.out}")
    return 0
