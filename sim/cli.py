"""`vjepa-ac sim collect|replay|show`: simulated data collection, DROID episode replay, and a look at the scene."""

from __future__ import annotations

import argparse

from vjepa_ac.data.config import add_config_arguments
from vjepa_ac.sim import TASK_NAMES


def _image_size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 180x320, got {text!r}") from None
    if not (16 <= height <= 720 and 16 <= width <= 1280):
        raise argparse.ArgumentTypeError(f"image size {height}x{width} must be within 16x16 .. 720x1280")
    return height, width


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text}")
    return value


def _add_progress_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--quiet", dest="no_progress", action="store_true", help=argparse.SUPPRESS)  # former name


def camera_yaw_degrees(text: str) -> float:
    """argparse type: a camera yaw in degrees within [-180, 180]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a yaw in degrees such as -30, got {text!r}") from None
    if not -180.0 <= value <= 180.0:
        raise argparse.ArgumentTypeError(f"camera yaw must be within [-180, 180] degrees, got {value}")
    return value


def add_camera_yaw_option(parser) -> None:
    """`--camera-yaw DEG`: orbit the sim's exterior cameras about the robot base's vertical axis
    (`sim.robot.SimConfig.camera_yaw`)."""
    parser.add_argument(
        "--camera-yaw", type=camera_yaw_degrees, default=None, metavar="DEG",
        help="sim only: orbit the exterior cameras by DEG degrees about the robot base's vertical axis "
        "(counter-clockwise seen from above), keeping their height and aim; a model trained at 0 then reads actions "
        "in a turned frame (see `vjepa-ac calibrate`) (default: the model card's setting where there is one, else 0)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sim", help="MuJoCo Franka simulator: collect DROID-format data, replay episodes, show the scene",
        description="MuJoCo Franka Panda tabletop simulator.",
    )
    sim_sub = parser.add_subparsers(dest="sim_command", metavar="COMMAND")
    parser.set_defaults(handler=lambda args: parser.print_help() or 0)
    robot_help = "robot model: panda (built in), menagerie:panda / menagerie:fr3 (needs MENAGERIE_ROOT) or an MJCF path"

    collect = sim_sub.add_parser(
        "collect", help="record scripted-expert and exploration episodes in the raw DROID layout",
        description="Record episodes written as raw DROID episodes (trajectory.h5, metadata JSON, one MP4 per "
                    "camera). Each episode is driven by the scripted expert, a noisier expert, a deliberately failed "
                    "attempt or random exploration, in the proportions given below. With --randomize (the default) "
                    "every episode gets its own scene: object shape, size and colour, distractor objects, table and "
                    "room textures, lighting and exterior camera poses (ranges: sim/randomization.py, overridable "
                    "with --randomization FILE). Each trajectory.h5 records its motion mode, the proportions, its "
                    "scene and every object's pose per step. Seeded and resumable: rerunning with the same --out, "
                    "--task and --seed skips finished episodes.",
    )
    add_config_arguments(collect, _collect_config_class)
    # Every option below sets one `CollectConfig` setting (named in parentheses; defaults listed at the end).
    collect.add_argument("--out", required=True, help="DROID root folder; episodes go to OUT/<lab>/success|failure/...")
    collect.add_argument("--task", choices=TASK_NAMES, help="task to collect (`task`)")
    collect.add_argument("--episodes", type=_non_negative_int,
                         help="number of episodes in this run, indices 0..N-1 (`episodes`)")
    collect.add_argument("--seed", type=int,
                         help="run seed; episode i of a seed always plays out the same (`seed`)")
    collect.add_argument("--image-size", type=_image_size, metavar="HxW",
                         help="camera resolution, e.g. 180x320; DROID's raw videos are 720x1280 (`image_size`)")
    collect.add_argument("--explore-fraction", type=_fraction,
                         help="share of episodes driven by random exploration (`explore_fraction`)")
    collect.add_argument("--noisy-fraction", type=_fraction,
                         help="share of episodes driven by the expert with larger action noise (`noisy_fraction`)")
    collect.add_argument("--failed-fraction", type=_fraction,
                         help="share of deliberately failed attempts: missed grasps, early closing, drops, "
                              "misplacing (`failed_fraction`); the plain expert drives the rest")
    collect.add_argument("--perturb-probability", type=_fraction,
                         help="chance an expert episode gets a burst of random actions (`perturb_probability`)")
    collect.add_argument("--min-steps", type=int,
                         help="shortest episode in 15 Hz steps; after success, free play fills up to it "
                              "(`min_steps`; 48 is enough for 8-frame clips at 4 fps)")
    collect.add_argument("--randomize", dest="randomize_appearance", action=argparse.BooleanOptionalAction,
                         help="domain randomisation: a new scene per episode; --no-randomize keeps the fixed "
                              "evaluation scene (`randomize_appearance`)")
    collect.add_argument("--randomization", metavar="FILE", default=None,
                         help="YAML or JSON file of domain randomisation ranges (`randomization`: field names of "
                              "sim.randomization.DomainRandomization, e.g. 'distractors: [0, 2]')")
    collect.add_argument("--lab", help="lab name in the DROID folder layout (`lab`)")
    collect.add_argument("--robot", help=f"{robot_help} (`robot`)")
    add_camera_yaw_option(collect)
    _add_progress_option(collect)
    collect.set_defaults(handler=_collect)

    replay = sim_sub.add_parser(
        "replay", help="play a DROID episode's joint trajectory on the sim arm and write a side-by-side video",
        description="Drive the simulated arm through an episode's recorded joint angles and write an MP4 with the "
                    "recorded camera on the left and the simulation on the right. Prints how far the forward "
                    "kinematics of the recorded joints lands from the recorded flange poses.",
    )
    replay.add_argument("episode", help="DROID episode folder (or anything `vjepa-ac droid` can open)")
    replay.add_argument("-o", "--output", default=None,
                        help="output MP4 file (default: replay_<episode folder name>.mp4 here)")
    replay.add_argument("--out", dest="output", help=argparse.SUPPRESS)  # the former spelling
    replay.add_argument("--camera", default=None,
                        help="recorded camera role to show (default: left, or ext1 for an RLDS record)")
    replay.add_argument("--height", type=int, default=270, help="video height in pixels (default 270)")
    replay.add_argument("--robot", default="panda", help=robot_help)
    replay.add_argument("--keep-camera", action="store_true",
                        help="keep the simulator's camera pose instead of moving it to the recorded extrinsics")
    replay.add_argument("--no-objects", action="store_true",
                        help="do not rebuild the recorded scene and object poses (sim episodes record them)")
    _add_progress_option(replay)
    replay.set_defaults(handler=_replay)

    show = sim_sub.add_parser(
        "show", help="render a task's cameras and goal images, or a contact sheet of scenes, to PNG files",
        description="Reset a task with a seed and write PNGs of every camera and of each (sub-)goal image. With "
                    "--scenes N, write one contact sheet of N scenes (seeds SEED .. SEED+N-1) instead, e.g. "
                    "`--randomize --scenes 16` to look at the variety of domain randomisation.",
    )
    show.add_argument("--task", choices=TASK_NAMES, default="pick_and_place", help="task (default pick_and_place)")
    show.add_argument("--seed", type=int, default=0, help="task seed (default 0)")
    show.add_argument("--out", default="sim_show", help="output folder (default ./sim_show)")
    show.add_argument("--image-size", type=_image_size, default=(360, 640), metavar="HxW",
                      help="image resolution (default 360x640)")
    show.add_argument("--randomize", action="store_true",
                      help="domain randomisation: the scene each seed draws (as `sim collect` records it)")
    show.add_argument("--randomization", metavar="FILE", default=None,
                      help="YAML or JSON file overriding domain randomisation ranges (see `sim collect --help`)")
    show.add_argument("--scenes", type=int, default=0, metavar="N",
                      help="write a contact sheet of N scenes (seeds SEED..SEED+N-1) to OUT/<task>_scenes.png")
    show.add_argument("--camera", choices=("left", "right", "wrist"), default="left",
                      help="camera of the contact sheet (default left)")
    show.add_argument("--robot", default="panda", help=robot_help)
    add_camera_yaw_option(show)
    show.set_defaults(handler=_show)


def _randomization(path: str | None):
    """The domain randomisation ranges: defaults, or overridden by a YAML/JSON file."""
    from pathlib import Path

    import yaml

    from vjepa_ac.sim.randomization import DomainRandomization

    if path is None:
        return DomainRandomization()
    try:
        values = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(values, dict):
            raise ValueError("expected a mapping of setting names to values")
        return DomainRandomization.from_dict(values)
    except (OSError, yaml.YAMLError, TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"--randomization {path}: {exc}") from None


_COLLECT_OPTIONS = ("task", "episodes", "seed", "image_size", "explore_fraction", "noisy_fraction", "failed_fraction",
                    "perturb_probability", "min_steps", "randomize_appearance", "lab", "robot", "camera_yaw")
"""The `sim collect` options named as the `CollectConfig` setting they set."""


def _collect_config_class() -> type:
    from vjepa_ac.sim.collect_config import CollectConfig

    return CollectConfig


def collect_config(args: argparse.Namespace):
    """The `CollectConfig` of a `sim collect` command line: --config file, then the options, then KEY=VALUE words."""
    from vjepa_ac.data.config import ConfigError, load, read_yaml

    from vjepa_ac.sim.collect_config import CollectConfig

    settings = {name: getattr(args, name) for name in _COLLECT_OPTIONS if getattr(args, name) is not None}
    if args.randomization is not None:
        settings["randomization"] = read_yaml(args.randomization)
    try:
        return load(CollectConfig, args.config, args.overrides, settings)
    except ConfigError as exc:  # e.g. the motion mode fractions add up to more than 1
        raise argparse.ArgumentTypeError(str(exc)) from None


def _collect(args: argparse.Namespace) -> int:
    config = collect_config(args)
    if args.print_config:
        from vjepa_ac.data.config import dump_yaml

        print(dump_yaml(config), end="")
        return 0
    from vjepa_ac.sim.collect import collect

    summary = collect(args.out, config, progress=not args.no_progress)
    print(f"wrote {summary.written} episodes ({summary.successes} successful), skipped {summary.skipped} "
          f"already collected, into {args.out}")
    return 0


def _replay(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vjepa_ac.data.droid.index import default_camera
    from vjepa_ac.sim.replay import replay_episode

    out = args.output or f"replay_{Path(args.episode).resolve().name}.mp4"
    camera = args.camera or default_camera([args.episode])[0]
    report = replay_episode(args.episode, out, camera=camera, height=args.height, robot_model=args.robot,
                            match_camera=not args.keep_camera, objects=not args.no_objects,
                            progress=not args.no_progress)
    print(f"wrote {report.video} ({report.steps} steps, camera {camera}"
          f"{', recorded scene' if report.recorded_scene else ''})")
    if report.objects:
        print(f"objects: {', '.join(report.objects)} replayed at their recorded poses")
    elif args.no_objects:
        print("objects: left where the scene puts them (--no-objects)")
    else:
        print("objects: the episode records no object poses (real DROID episodes never do); they stay where the "
              "scene puts them")
    print(f"forward kinematics vs recorded flange: {report.fk_position_error * 1000:.2f} mm, "
          f"{report.fk_rotation_error:.4f} rad (mean)")
    print(f"simulated flange vs recorded: {report.tracking_error * 1000:.2f} mm (mean); "
          f"{report.clamped_steps} steps clamped to the arm's limits")
    return 0


def _show(args: argparse.Namespace) -> int:
    from pathlib import Path

    import cv2

    from vjepa_ac.sim.scene import SceneConfig
    from vjepa_ac.sim.tasks import make_env

    if args.scenes < 0:
        raise argparse.ArgumentTypeError(f"--scenes must be >= 0, got {args.scenes}")
    options = dict(image_size=args.image_size, randomize_appearance=args.randomize,
                   randomization=_randomization(args.randomization), scene=SceneConfig(robot=args.robot),
                   camera_yaw=args.camera_yaw or 0.0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.scenes:
        from vjepa_ac.sim.show import contact_sheet

        path = out / f"{args.task}_scenes.png"
        sheet = contact_sheet(args.task, range(args.seed, args.seed + args.scenes), camera=args.camera, **options)
        cv2.imwrite(str(path), sheet[..., ::-1])
        print(f"wrote {path} ({args.scenes} scenes, {args.camera} camera)")
        return 0
    robot, task = make_env(args.task, seed=args.seed, **options)
    images = {f"camera_{role}": image for role, image in robot.render().items()}
    images.update({f"goal_{i}": image for i, image in enumerate(task.goal_images())})
    for name, image in images.items():
        cv2.imwrite(str(out / f"{args.task}_{name}.png"), image[..., ::-1])
    robot.close()
    print(f"wrote {len(images)} images to {out}; task info: {task.info()}")
    return 0
