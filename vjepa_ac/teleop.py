"""`vjepa-ac teleop`: grow a dataset by driving the arm with keys (or a command list) and labelling each episode.

The arm moves by the jogs of `vjepa-ac goal capture` (`vjepa_ac.goals.ArmJogger`: DROID delta actions through the
robot's normal path, i.e. through the bridge with its session, watchdog and safety filter), and every jog is recorded
by `robot.recording.RecordingRobot` as one step of a raw DROID episode (the observation it was issued from and the
commanded pose). `success` / `failure` (keys y / n) close the episode with that label and start the next; quitting
with an episode open keeps it as a failed, interrupted one, and so does a crash or a kill (the journal is closed the
next time the folder is recorded into).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from vjepa_ac.control import add_robot_options, existing_file
from vjepa_ac.goals import KEYS, CaptureCommand, parse_command, parse_commands

TELEOP_KEYS = {**{key: name for key, name in KEYS.items() if name != "capture"}, "y": "success", "n": "failure"}
TELEOP_HELP = ("keys: w/s forward/back (x), a/d left/right (y), r/f up/down (z), q/e yaw, o/c open/close gripper, "
               "y episode done: success, n episode done: failure, Enter quit (an open episode is kept as a failure), "
               "Ctrl-C abort")


def parse_teleop_command(token: str) -> CaptureCommand:
    """A jog (x+ ... yaw-, with *N), open, close, success, failure or finish."""
    name = token.strip().lower()
    if name in ("success", "failure"):
        return CaptureCommand(name)
    command = parse_command(token)
    if command.kind == "capture":
        raise ValueError(f"command {token!r}: teleop records episodes; end one with success or failure")
    return command


def parse_teleop_commands(text: str) -> list[CaptureCommand]:
    """Commands separated by white space or new lines; `#` starts a comment."""
    return parse_commands(text, parse_teleop_command)


class TeleopSession:
    """Jogs the arm and labels the recorded episodes: `jogger` drives `recorder` (a `RecordingRobot`)."""

    def __init__(self, jogger, recorder, *, echo: Callable[[str], None] = print) -> None:
        self.jogger, self.recorder, self.echo = jogger, recorder, echo

    def run(self, commands: Iterable[CaptureCommand], *, keep_going: bool = False) -> list[Path]:
        """Carry out commands until "finish" (or their end); returns every episode folder written so far.

        `keep_going` (interactive use): a command that cannot be carried out is reported and the session goes on."""
        for command in commands:
            if command.kind == "finish":
                break
            try:
                if command.kind in ("success", "failure"):
                    self.label(command.kind == "success")
                else:
                    self.jogger.move(command)
            except (ValueError, TimeoutError) as exc:
                if not keep_going:
                    raise
                self.echo(f"not done: {exc}")
        return list(self.recorder.episodes)

    def label(self, success: bool) -> Path | None:
        path = self.recorder.finish(success=success)
        if path is None:
            self.echo("nothing recorded since the last label: move the arm first")
        else:
            self.echo(f"episode {len(self.recorder.episodes)} ({'success' if success else 'failure'}): {path}")
        return path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "teleop",
        help="drive the arm by keys and record labelled DROID episodes (grow a dataset)",
        description=(
            "Move the arm by small jogs (as in `vjepa-ac goal capture`) and record every jog as a step of a raw\n"
            "DROID episode under --record (<lab>/success|failure/<day>/<time>/); label each episode when it is\n"
            "done. Jogs are DROID delta actions through the robot's normal path (through the bridge: its session,\n"
            "watchdog and safety filter).\n\n"
            "interactive " + TELEOP_HELP.replace(", ", "\n  ") + "\n\n"
            "scripted: --commands 'x+*5 z-*3 close success open z+*2 failure finish'"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_robot_options(parser)
    parser.add_argument("--record", type=Path, required=True, metavar="DIR", help="dataset folder to record into")
    parser.add_argument("--instruction", default=None,
                        help="language instruction stored with each episode (default: the sim task's name)")
    parser.add_argument("--lab", default="VJEPAAC", help="DROID lab name of the recording (default: VJEPAAC)")
    parser.add_argument("--checkpoint", type=existing_file, default=None,
                        help="world model whose model card gives the camera and sim scene (default: the embedded one)")
    parser.add_argument("--camera", default=None, help="camera role checked at the start (default: the model card's)")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--commands", default=None, help="run these commands instead of reading keys")
    how.add_argument("--commands-file", type=existing_file, default=None, help="read the commands from a file")
    parser.add_argument("--jog-step", type=float, default=0.02, help="metres per translation jog (default 0.02)")
    parser.add_argument("--jog-angle", type=float, default=0.1, help="radians per yaw jog (default 0.1)")
    parser.add_argument("--max-frame-age", type=float, default=0.5,
                        help="refuse camera frames older than this, seconds (default 0.5)")
    parser.set_defaults(handler=_teleop)


def _teleop(args: argparse.Namespace) -> int:
    from vjepa_ac.control import make_robot
    from vjepa_ac.model_card import load_planning_defaults, resolve_checkpoint
    from vjepa_ac.robot.recording import RecordingConfig, RecordingRobot
    from vjepa_ac.goals import ArmJogger, terminal_commands

    commands = None
    if args.commands is not None:
        commands = parse_teleop_commands(args.commands)
    elif args.commands_file is not None:
        commands = parse_teleop_commands(args.commands_file.read_text())
    elif not sys.stdin.isatty():
        raise ValueError("no terminal to read keys from: pass --commands or --commands-file")
    defaults = load_planning_defaults(resolve_checkpoint(args.checkpoint))
    camera = args.camera or defaults.camera
    robot = make_robot(args, defaults, camera).robot
    instruction = args.instruction if args.instruction is not None else (args.task if args.robot == "sim" else "")
    recorder = RecordingRobot(robot, args.record, RecordingConfig(task=instruction, lab=args.lab),
                              extra_attrs={"recorded_by": "vjepa-ac teleop", "teleop_robot": args.robot})
    jogger = ArmJogger(recorder, camera=camera, jog_step=args.jog_step, jog_angle=args.jog_angle,
                       max_frame_age_s=args.max_frame_age)
    session = TeleopSession(jogger, recorder)
    try:
        jogger.start()  # connects: an absent bridge fails before --record is touched
        if commands is not None:
            session.run(commands)
        else:
            session.run(terminal_commands(keys=TELEOP_KEYS, help_text=TELEOP_HELP, parse=parse_teleop_command),
                        keep_going=True)
    finally:
        jogger.close()  # an episode still open is kept as a failed, interrupted one
    episodes = recorder.episodes
    if not episodes:
        print("no episode recorded", file=sys.stderr)
        return 1
    print(f"recorded {len(episodes)} episodes into {args.record}:")
    for path in episodes:
        print(f"  {path}")
    return 0
