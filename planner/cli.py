"""`vjepa-ac plan` (one-shot: print the next action) and `vjepa-ac run` (closed loop on the sim or a bridged arm)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path

from sim.cli import TASK_CHOICES

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
    from planner.calibration import read_action_frame_yaw

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


def card_default(paper: object) -> str:
    """Help text of a setting that defaults to the model card's, else to the paper value `paper`."""
    return f"default: the model card's setting, else {paper}"


def add_planner_options(parser: argparse.ArgumentParser) -> None:
    """The planner option group, shared by plan, run, demo and eval (`--planner-seed` is the sampling seed; `--seed`
    is, wherever it exists, the seed of the episode).

    Every setting defaults to None: `planner.model_card.mpc_config_for` then takes the model card's value (per task
    for sim tasks), else the paper's."""
    group = parser.add_argument_group("planner (defaults: the checkpoint's model card, else the paper's CEM)")
    group.add_argument("--planner", choices=("cem", "mppi"), default=None, help="sampling planner (default: cem)")
    group.add_argument("--samples", type=positive_int, default=None,
                       help=f"candidate action sequences per iteration ({card_default(800)})")
    group.add_argument("--iterations", type=positive_int, default=None,
                       help=f"planner iterations per action ({card_default(10)})")
    group.add_argument("--elites", type=positive_int, default=None,
                       help=f"CEM elites kept per iteration, at most --samples ({card_default(10)})")
    group.add_argument("--horizon", type=positive_int, default=None,
                       help=f"planned steps (imagined rollout length; {card_default(1)})")
    group.add_argument("--max-translation", type=float, default=None,
                       help=f"bound on Δxyz per step, metres ({card_default(0.075)})")
    group.add_argument(
        "--constraint", choices=("l1_ball", "box"), default=None,
        help="l1_ball: |Δx|+|Δy|+|Δz| <= bound (paper); box: each axis within ±bound (reference notebook) "
        f"({card_default('l1_ball')})",
    )
    group.add_argument("--close-gripper", type=int, default=None,
                       help=f"force Δgripper = 1 from this horizon step on ({card_default('never')})")
    group.add_argument(
        "--sum-energy", action="store_true",
        help=f"sum the energy over all imagined steps, not the last ({card_default('the last')})",
    )
    group.add_argument(
        "--max-batch", type=positive_int, default=None,
        help="candidates per predictor call; bounds memory, e.g. 100 for the ViT-g predictor, whose key/value cache "
        f"takes ~50 MB per candidate and imagined step in fp32 ({card_default('all')})",
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
                       help=f"sampling seed; the same seed gives the same plan ({card_default(0)})")
    frame = group.add_mutually_exclusive_group()
    frame.add_argument(
        "--action-frame", dest="action_frame_yaw", metavar="FILE", type=calibration_file, default=None,
        help="calibration file written by `vjepa-ac calibrate --out`: plan in the world model's action frame and "
        "rotate the actions sent to the robot back into its base frame",
    )
    frame.add_argument(
        "--action-frame-yaw", dest="action_frame_yaw", metavar="DEG", type=yaw_degrees, default=None,
        help="the same with the yaw given directly: degrees the model's action frame is turned from the robot base "
        f"frame about the vertical, counter-clockwise seen from above ({card_default(0)})",
    )


def add_robot_options(parser: argparse.ArgumentParser) -> None:
    """--robot sim|bridge with the sim task and camera placement and the bridge's address and keys; shared by `run`,
    `calibrate` and `goal capture` (read by `make_robot`)."""
    parser.add_argument("--robot", choices=("sim", "bridge"), required=True, help="MuJoCo sim or the ZMQ robot bridge")
    parser.add_argument(
        "--task", default="reach", choices=TASK_CHOICES,
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
    from sim.cli import add_camera_yaw_option

    add_camera_yaw_option(parser.add_argument_group("sim (--robot sim)"))


def register(subparsers: argparse._SubParsersAction) -> None:
    plan = subparsers.add_parser(
        "plan",
        help="one-shot planning: print the next action for an observation, a state and a goal image",
        description="Encode the observation and goal images, plan with CEM (or MPPI) in latent space and print the "
        "next 7-D DROID action (Δxyz, Δeuler, Δgripper) for integrating your own control loop.",
    )
    plan.add_argument("--obs", type=Path, required=True, help="current camera image (PNG/JPEG)")
    plan.add_argument(
        "--state", required=True,
        help="current DROID state: 7 numbers x,y,z,roll,pitch,yaw,gripper (metres, radians, 0 open..1 closed)",
    )
    plan_goal = plan.add_mutually_exclusive_group(required=True)
    plan_goal.add_argument("--goal", type=Path, help="goal image from the same camera and resolution")
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
                     help=f"steps per sub-goal, e.g. 4,10,4 ({card_default('none')})")
    run.add_argument("--goal-gripper", metavar="VALUES", type=_goal_gripper, default=None,
                     help="Δgripper pinned per sub-goal, 'free' = searched, e.g. --goal-gripper=-0.5,-0.5,0.5,free "
                     f"(-1 opens, +1 closes; {card_default('all searched')})")
    run.add_argument("--switch-energy", type=float, default=None,
                     help=f"advance to the next goal below this energy ({card_default('none')})")
    run.add_argument("--stop-energy", type=float, default=None,
                     help=f"stop when the last goal's energy is below this ({card_default('none')})")
    run.add_argument("--max-frame-age", dest="max_frame_age_s", metavar="SECONDS", type=float, default=None,
                     help="refuse camera frames older than this relative to the arm state "
                     f"({card_default(0.5)})")
    run.add_argument("--context-frames", type=positive_int, default=None,
                     help=f"observed frames given to the predictor ({card_default(1)})")
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
    parser.add_argument("--camera", default=None, help=f"camera role to plan from ({card_default('left')})")
    parser.add_argument(
        "--fps", type=float, default=None,
        help="frame rate the predictor was trained at; each planned action is spread over control_hz / fps control "
        "periods, the interval the predictor imagines (default: the model card's setting, else 4 as Meta's DROID "
        "training)",
    )


def resolved_config(args: argparse.Namespace, defaults):
    """The `MPCConfig` of `plan` / `run`: the model card (with the sim task's overrides for `run --robot sim`), then
    the given options; the same resolution as `demo` and `eval`."""
    from planner.model_card import mpc_config_for

    task = args.task if getattr(args, "robot", None) == "sim" else None
    return mpc_config_for(defaults, task, args)


def _load_world_model(args: argparse.Namespace):
    """(WorldModel, PlanningDefaults) for --checkpoint (default: the embedded model) and its model card."""
    from planner.model_card import (
        load_planning_defaults,
        pick_device,
        resolve_checkpoint,
    )
    from worldmodel import load_world_model

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

    from planner.mpc import check_state

    try:
        return check_state(np.array([float(v) for v in text.replace(",", " ").split()]))
    except ValueError as exc:
        raise ValueError(f"--state must be 7 numbers x,y,z,roll,pitch,yaw,gripper, got {text!r} ({exc})") from None


def with_goal_schedule(config, schedule, args: argparse.Namespace):
    """`config` with the goal schedule's settings, except those given on the command line; the schedule replaces a
    sim task's own sub-goal settings."""
    settings = {k: v for k, v in schedule.mpc_settings().items() if k != "camera" and getattr(args, k, None) is None}
    return dataclasses.replace(config, **settings)


def _run_plan(args: argparse.Namespace) -> int:
    from planner.goals import load_goal_schedule
    from planner.mpc import LatentPlanner, check_goal_images

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
    """(robot, default goal images or None, success check or None, step budget in control periods or None)."""
    local = _local_cameras(args.cameras) if getattr(args, "cameras", None) else None
    if args.robot == "sim":
        from planner.model_card import sim_config_options, sim_settings
        from sim import make_env

        # The scene the model was trained on (image size, cameras, workspace), as its model card records it.
        robot, task = make_env(args.task, seed=args.seed, goal_camera=camera,
                               **sim_config_options(sim_settings(defaults, args)))
        goals, success, periods = task.goal_images(), task.success, task.max_steps
    else:
        roles = () if local is not None and camera in local.roles else (camera,)
        robot, goals, success, periods = _bridge_client(args, roles), None, None, None
    if local is not None:
        from robot.cameras import WithCameras

        robot = WithCameras(robot, local)
    return robot, goals, success, periods


def _bridge_client(args: argparse.Namespace, camera_roles: tuple[str, ...]):
    from robot.client import BridgeClient, ClientConfig

    base = args.port_base
    return BridgeClient(ClientConfig(
        host=args.host, cmd_port=base, state_port=base + 1, rpc_port=base + 2, camera_port=base + 3,
        client_secret_key=args.client_key, bridge_public_key=args.bridge_key, camera_roles=camera_roles,
    ))


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

    from robot.cameras import CameraRig, cameras_from_mapping

    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or not data.get("cameras"):
        raise ValueError(f"{path}: expected a `cameras:` mapping of role -> camera settings")
    return CameraRig.from_configs(cameras_from_mapping(data["cameras"]))


def _recording_robot(args: argparse.Namespace, robot):
    """`robot` wrapped in a `RecordingRobot` when `--record` is given (closing it keeps a failed run as such)."""
    if args.record is None:
        return robot
    from robot.recording import RecordingConfig, RecordingRobot

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
    from planner.goals import load_goal_schedule
    from planner.mpc import run_mpc
    from planner.report import save_episode
    from robot.action_repeat import ActionRepeatRobot, control_periods_per_step

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
    robot, task_goals, success, task_periods = make_robot(args, defaults, config.camera)
    periods = control_periods_per_step(robot.control_hz, fps)
    # A sim task's own budget, as `vjepa-ac demo` / `eval` use it (a goal schedule's leftover stays on the last goal).
    if config.max_steps is None and task_periods is not None and schedule is None:
        config = dataclasses.replace(config, max_steps=math.ceil(task_periods / periods))
    goals = given_goals or task_goals
    recorder = _recording_robot(args, robot)
    log_path = args.out / "steps.jsonl"
    _exit_on_sigterm()
    with ActionRepeatRobot(recorder, periods) as controlled:  # connects: an absent bridge fails before --out is touched
        args.out.mkdir(parents=True, exist_ok=True)
        log_path.unlink(missing_ok=True)
        episode = run_mpc(controlled, world_model, goals, config, log_path=log_path, done=success)
        recorded = recorder.finish(success=episode.goal_reached) if recorder is not robot else None
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
    from planner.calibration import CalibrationConfig, calibrate, write_calibration
    from robot.action_repeat import ActionRepeatRobot, control_periods_per_step

    world_model, defaults = _load_world_model(args)
    fps = args.fps or defaults.fps
    try:
        config = CalibrationConfig(probes=args.probes, step=args.probe_step, seed=args.probe_seed,
                                   camera=args.camera or defaults.camera)
        robot, _, _, _ = make_robot(args, defaults, config.camera)
        with ActionRepeatRobot(robot, control_periods_per_step(robot.control_hz, fps)) as controlled:
            result = calibrate(controlled, world_model, config)
    except ValueError as exc:  # the probes cannot determine the frame (no motion, no change, a missing camera)
        raise argparse.ArgumentTypeError(str(exc)) from exc
    print(result.format())
    meta = {"camera": config.camera, "checkpoint": str(args.checkpoint or "embedded default model"),
            "probes": args.probes, "probe_step": args.probe_step, "probe_seed": args.probe_seed}
    print(f"wrote {write_calibration(args.out, result, meta)}; use it with --action-frame {args.out}")
    return 0
