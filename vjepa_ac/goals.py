"""`vjepa-ac goal capture` and `vjepa-ac goal show`: take goal images for a task from the planner's own camera
stream while the arm is moved to each sub-goal, and look at the resulting goal schedule as a contact sheet.

The arm is moved by small keyboard jogs sent as DROID delta actions through the same `Robot` the planner drives
(through the bridge: its session, watchdog and safety filter), or, with `--guide`, by hand: the bridge stays disarmed
so the arm's own hand-guiding (the Franka's guiding button) moves it. The same steps can be given as a command list
(`--commands`), so a capture runs without a terminal.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vjepa_ac.control import add_robot_options, existing_file, positive_int
from vjepa_ac.planner.goals import SWITCH_RULES

JOG_AXES = {"x": 0, "y": 1, "z": 2, "yaw": 5}
"""Jog name -> DROID action dimension (base frame: x forward, y left, z up; yaw about the base z axis)."""
KEYS = {
    "w": "x+", "s": "x-", "a": "y+", "d": "y-", "r": "z+", "f": "z-", "q": "yaw+", "e": "yaw-",
    "o": "open", "c": "close", " ": "capture", "\r": "finish", "\n": "finish",
}
KEY_HELP = ("keys: w/s forward/back (x), a/d left/right (y), r/f up/down (z), q/e yaw, o/c open/close gripper, "
            "space capture, Enter finish, Ctrl-C abort (captures so far are kept)")
_COMMAND = re.compile(r"^(?P<name>[a-z]+)(?P<sign>[+-])?(?:\*(?P<repeat>\d+))?(?::(?P<options>.*))?$")


@dataclass(frozen=True)
class CaptureCommand:
    """One step of a capture: a jog ("x+", "yaw-"), "open" / "close" the gripper, "capture" or "finish"."""

    kind: str
    """"jog", "gripper", "capture" or "finish"."""
    dim: int | None = None
    sign: float = 0.0
    repeat: int = 1
    steps: int | None = None
    """capture: control steps toward this sub-goal (default: the session's)."""
    gripper: float | str | None = None
    """capture: Δgripper pin, "free" (searched) or None (the session's rule)."""


def parse_command(token: str) -> CaptureCommand:
    """One command: x+ x- y+ y- z+ z- yaw+ yaw- (with an optional repeat `*N`), open, close, finish, or capture with
    optional settings `capture:steps=8,gripper=0.5` (gripper: a Δgripper in [-1, 1] or `free`)."""
    match = _COMMAND.match(token.strip().lower())
    if not match:
        raise ValueError(f"cannot read command {token!r}")
    name, sign, repeat, options = match["name"], match["sign"], match["repeat"], match["options"]
    count = int(repeat) if repeat else 1
    if name in JOG_AXES:
        if sign is None or options is not None or not 1 <= count <= 100:
            raise ValueError(f"jog {token!r}: write e.g. {name}+ or {name}-*3 (at most 100 repeats)")
        return CaptureCommand("jog", JOG_AXES[name], 1.0 if sign == "+" else -1.0, count)
    if sign is not None or repeat is not None:
        raise ValueError(f"command {token!r}: only jogs take a sign and a repeat count")
    if name in ("open", "close", "finish") and options is None:
        return CaptureCommand("gripper", sign=-1.0 if name == "open" else 1.0) if name != "finish" \
            else CaptureCommand("finish")
    if name == "capture":
        settings = {}
        for part in filter(None, (options or "").split(",")):
            key, _, value = part.partition("=")
            settings[key.strip()] = value.strip()
        unknown = set(settings) - {"steps", "gripper"}
        if unknown:
            raise ValueError(f"capture {token!r}: unknown settings {sorted(unknown)} (steps, gripper)")
        steps = gripper = None
        if "steps" in settings:
            if not settings["steps"].isdigit() or int(settings["steps"]) < 1:
                raise ValueError(f"capture {token!r}: steps must be a positive integer")
            steps = int(settings["steps"])
        if "gripper" in settings:
            gripper = settings["gripper"] if settings["gripper"] == "free" else _pin(settings["gripper"], token)
        return CaptureCommand("capture", steps=steps, gripper=gripper)
    raise ValueError(f"unknown command {token!r}; use x+/x-/y+/y-/z+/z-/yaw+/yaw-, open, close, capture, finish")


def _pin(text: str, token: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"capture {token!r}: gripper must be a number in [-1, 1] or free") from None
    if not -1.0 <= value <= 1.0:
        raise ValueError(f"capture {token!r}: gripper must be in [-1, 1], got {value}")
    return value


def parse_commands(text: str, parse: Callable[[str], CaptureCommand] = parse_command) -> list[CaptureCommand]:
    """Commands separated by white space or new lines, each read by `parse`; `#` starts a comment."""
    tokens = [t for line in text.splitlines() for t in line.split("#", 1)[0].split()]
    return [parse(t) for t in tokens]


class ArmJogger:
    """Moves a `Robot` by small jogs (DROID delta actions through its normal path) and opens/closes the gripper.

    `goal capture` and `teleop` drive the arm with it; frames come from `planner.mpc.observe`, the planner's own
    observation path (the same camera role, the same freshness bound)."""

    def __init__(self, robot, *, camera: str, jog_step: float = 0.02, jog_angle: float = 0.1,
                 max_frame_age_s: float | None = 0.5, gripper_settle_periods: int = 45,
                 echo: Callable[[str], None] = print) -> None:
        if not 0 < jog_step <= 0.05 or not 0 < jog_angle <= 0.15:
            raise ValueError(f"jogs must be small: step in (0, 0.05] m, angle in (0, 0.15] rad; got {jog_step}, "
                             f"{jog_angle}")
        self.robot, self.camera = robot, camera
        self.jog_step, self.jog_angle = jog_step, jog_angle
        self.max_frame_age_s, self.gripper_settle_periods = max_frame_age_s, gripper_settle_periods
        self.echo = echo

    def start(self) -> None:
        """Arm the robot for jogs and check that frames and state arrive."""
        self.robot.connect()
        self.report_camera()

    def report_camera(self) -> None:
        observation, frame = self._observe()
        self.echo(f"camera {self.camera!r}: {frame.shape[1]}x{frame.shape[0]} frames; arm at "
                  f"{np.round(observation.state[:3], 3).tolist()} m, gripper {observation.gripper_position:.2f}")

    def _observe(self):
        from vjepa_ac.planner.mpc import observe

        return observe(self.robot, self.camera, self.max_frame_age_s)

    def move(self, command: CaptureCommand):
        """Carry out a "jog" or "gripper" command; returns the observation after it."""
        action = np.zeros(7)
        if command.kind == "jog":
            action[command.dim] = command.sign * (self.jog_angle if command.dim == 5 else self.jog_step)
            for _ in range(command.repeat):
                self._send(action)
        elif command.kind == "gripper":
            action[6] = command.sign
            self._send(action)
            self._settle_gripper()
        else:
            raise ValueError(f"{command.kind!r} does not move the arm")
        observation = self.robot.get_observation()
        self.echo(f"arm at {np.round(observation.state[:3], 3).tolist()} m, gripper {observation.gripper_position:.2f}")
        return observation

    def _settle_gripper(self) -> None:
        """Hold the arm (zero actions) until the fingers stop moving: about a second on a Franka Hand, less when
        they close on an object."""
        last, still = self.robot.get_observation().gripper_position, 0
        for _ in range(self.gripper_settle_periods):
            self._send(np.zeros(7))
            position = self.robot.get_observation().gripper_position
            still = still + 1 if abs(position - last) < 0.005 else 0
            if still >= 3:
                return
            last = position
        self.echo(f"the gripper was still moving after {self.gripper_settle_periods} control periods")

    def _send(self, action: np.ndarray) -> None:
        result = self.robot.send_action(action)
        if not result.ok:
            self.echo(f"move refused: {result.reason}")
        elif result.reason:
            self.echo(f"move clamped: {result.reason}")

    def close(self) -> None:
        try:
            self.robot.hold()
        finally:
            self.robot.close()


class GoalCapture(ArmJogger):
    """Moves a `Robot` by jogs (or watches it being guided by hand) and stores sub-goals in a `GoalScheduleWriter`.

    A capture waits `settle_s` after the last motion and then takes a frame captured after that motion ended, so the
    image and the stored arm state show the same pose."""

    def __init__(self, robot, writer, *, camera: str, guide: bool = False, jog_step: float = 0.02,
                 jog_angle: float = 0.1, steps_per_goal: int | None = 10, gripper_rule: str = "auto",
                 max_frame_age_s: float | None = 0.5, settle_s: float = 0.3, gripper_settle_periods: int = 45,
                 frame_timeout_s: float = 5.0, echo: Callable[[str], None] = print,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if gripper_rule not in ("auto", "free"):
            raise ValueError(f"gripper rule must be 'auto' or 'free', got {gripper_rule!r}")
        super().__init__(robot, camera=camera, jog_step=jog_step, jog_angle=jog_angle,
                         max_frame_age_s=max_frame_age_s, gripper_settle_periods=gripper_settle_periods, echo=echo)
        self.writer, self.guide = writer, guide
        self.steps_per_goal, self.gripper_rule = steps_per_goal, gripper_rule
        self.settle_s, self.frame_timeout_s = settle_s, frame_timeout_s
        self.sleep = sleep
        self._moved_at: float | None = None
        """Producer-clock time of the observation taken right after the last motion."""

    def start(self) -> None:
        """Arm the robot for jogs; in guide mode only check that frames and state arrive (nothing is armed)."""
        if self.guide:
            self.report_camera()
        else:
            super().start()

    def run(self, commands: Iterable[CaptureCommand], *, keep_going: bool = False) -> int:
        """Carry out commands until "finish" (or their end); returns the number of sub-goals captured.

        `keep_going` (interactive use): a command that cannot be carried out is reported and the session goes on;
        otherwise its error ends the session (sub-goals captured before it stay written)."""
        for command in commands:
            if command.kind == "finish":
                break
            try:
                self.execute(command)
            except (ValueError, TimeoutError) as exc:
                if not keep_going:
                    raise
                self.echo(f"not done: {exc}")
        return len(self.writer.goals)

    def execute(self, command: CaptureCommand) -> None:
        if command.kind == "capture":
            goal = self.capture(steps=command.steps, gripper=command.gripper)
            self.echo(f"captured sub-goal {len(self.writer.goals) - 1}: {goal.image} (steps {goal.steps}, "
                      f"gripper pin {goal.gripper}, gripper {goal.gripper_position:.2f})")
            return
        if self.guide:
            raise ValueError(f"{command.kind} commands move the arm, but --guide leaves it to your hands; capture or "
                             "finish only")
        self._moved_at = self.move(command).timestamp

    def _settle_arm(self) -> None:
        """Wait (up to `frame_timeout_s`) until the flange has moved less than 1 mm over three polls: a loaded
        machine or a slow interpolator may still be finishing the last jog when `settle_s` has passed."""
        deadline = time.monotonic() + self.frame_timeout_s
        last, still = np.asarray(self.robot.get_observation().state[:3]), 0
        while still < 3 and time.monotonic() < deadline:
            self.sleep(0.05)
            position = np.asarray(self.robot.get_observation().state[:3])
            still = still + 1 if np.linalg.norm(position - last) < 1e-3 else 0
            last = position
        if still < 3:
            self.echo(f"the arm was still moving {self.frame_timeout_s:.0f} s after the last move")

    def capture(self, *, steps: int | None = None, gripper: float | str | None = None):
        """Store the current frame, arm state and gripper state as the next sub-goal."""
        if self._moved_at is not None:
            self.sleep(self.settle_s)
            self._settle_arm()
        deadline = time.monotonic() + self.frame_timeout_s
        while True:
            observation, frame = self._observe()
            taken = observation.image_timestamps.get(self.camera, observation.timestamp)
            if self._moved_at is None or taken >= self._moved_at:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"camera {self.camera!r} sent no frame taken after the last move within "
                                   f"{self.frame_timeout_s:.0f} s")
            self.sleep(0.02)
        if gripper is None:
            gripper = None if self.gripper_rule == "free" else (0.5 if observation.gripper_position > 0.5 else -0.5)
        elif gripper == "free":
            gripper = None
        steps = steps if steps is not None else self.steps_per_goal
        return self.writer.add(frame, steps=steps if self.writer.switch == "steps" else None, gripper=gripper,
                               state=observation.state, joint_positions=observation.joint_positions,
                               gripper_position=observation.gripper_position)

    def close(self) -> None:
        if self.guide:
            self.robot.close()
        else:
            super().close()


def terminal_commands(echo: Callable[[str], None] = print, *, keys: dict[str, str] = KEYS, help_text: str = KEY_HELP,
                      parse: Callable[[str], CaptureCommand] = parse_command) -> Iterator[CaptureCommand]:
    """Commands from single key presses on the controlling terminal (cbreak mode, restored afterwards); `keys` maps
    a key to the command `parse` reads."""
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    echo(help_text)
    try:
        tty.setcbreak(fd)
        while True:
            key = sys.stdin.read(1)
            if key in keys:
                yield parse(keys[key])
            elif key:
                echo(help_text)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def render_contact_sheet(schedule, images: list[np.ndarray], *, tile_width: int = 320, columns: int = 4) -> np.ndarray:
    """An RGB contact sheet: per sub-goal its image (the planner's crop outlined) with its steps, gripper pin and
    stored gripper state, under a header with the camera and switching rule."""
    import cv2

    from vjepa_ac.worldmodel.frames import crop_box

    height, width = schedule.image_size
    scale = tile_width / width
    tile_h = round(height * scale)
    caption_h, header_h, pad = 48, 40, 8
    columns = max(1, min(columns, len(images)))
    rows = -(-len(images) // columns)
    sheet = np.full((header_h + rows * (tile_h + caption_h + pad) + pad, pad + columns * (tile_width + pad), 3), 255,
                    np.uint8)
    rule = {"steps": "steps per sub-goal", "energy": f"switch at energy <= {schedule.switch_energy}",
            "plateau": f"switch when the energy has not fallen for {schedule.switch_plateau} steps"}[schedule.switch]
    header = f"{schedule.path.name if schedule.path else 'schedule'}: camera {schedule.camera}, {width}x{height}, " \
             f"crop {schedule.crop}, {rule}"
    if schedule.stop_energy is not None:
        header += f", stop at energy <= {schedule.stop_energy}"
    cv2.putText(sheet, header, (pad, 26), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    top, left, crop_h, crop_w = crop_box(height, width, schedule.crop)
    for i, (goal, image) in enumerate(zip(schedule.goals, images)):
        y = header_h + (i // columns) * (tile_h + caption_h + pad)
        x = pad + (i % columns) * (tile_width + pad)
        tile = cv2.resize(image, (tile_width, tile_h), interpolation=cv2.INTER_AREA)
        if (crop_h, crop_w) != (height, width):
            cv2.rectangle(tile, (round(left * scale), round(top * scale)),
                          (round((left + crop_w) * scale) - 1, round((top + crop_h) * scale) - 1), (255, 220, 0), 1)
        sheet[y : y + tile_h, x : x + tile_width] = tile
        pin = "searched" if goal.gripper is None else f"{goal.gripper:+.2f} ({'close' if goal.gripper > 0 else 'open'})"
        lines = [f"#{i} {goal.image}" + (f"  steps {goal.steps}" if goal.steps is not None else ""),
                 f"gripper pin {pin}" + ("" if goal.gripper_position is None else f", was {goal.gripper_position:.2f}")]
        for j, line in enumerate(lines):
            cv2.putText(sheet, line, (x, y + tile_h + 18 + 20 * j), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                        cv2.LINE_AA)
    return sheet


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "goal",
        help="capture goal images (a goal schedule) from the planner's camera, or render one as a contact sheet",
        description="Goal images for `vjepa-ac run/plan --goal-schedule`: one per sub-goal, taken from the same "
        "camera stream the planner reads, with the arm state, the gripper state, a gripper pin and a switching rule.",
    )
    sub = parser.add_subparsers(dest="goal_command", metavar="ACTION", required=True)

    capture = sub.add_parser(
        "capture",
        help="move the arm to each sub-goal and capture it (keys, a command list, or hand-guiding)",
        description=(
            "Write OUT/schedule.yaml and OUT/goal_NN.png, one sub-goal per capture (planner/goals.py documents the\n"
            "format). Jogs are DROID delta actions through the robot's normal path (through the bridge: its session,\n"
            "watchdog and safety filter).\n\n"
            "interactive " + KEY_HELP.replace(", ", "\n  ") + "\n\n"
            "scripted: --commands 'z-*3 capture close capture:steps=5 z+*4 capture finish'\n"
            "  jogs x+ x- y+ y- z+ z- yaw+ yaw- (optional *N repeat), open, close,\n"
            "  capture[:steps=N,gripper=G|free], finish"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_robot_options(capture)
    capture.add_argument("--out", type=Path, required=True, help="folder for the schedule and its images")
    capture.add_argument("--overwrite", action="store_true", help="replace an existing schedule in --out")
    capture.add_argument("--checkpoint", type=existing_file, default=None,
                         help="world model whose model card gives the camera, crop and sim scene (default: the "
                         "embedded model)")
    capture.add_argument("--camera", default=None, help="camera role (default: the model card's, else left)")
    how = capture.add_mutually_exclusive_group()
    how.add_argument("--commands", default=None, help="run these commands instead of reading keys")
    how.add_argument("--commands-file", type=existing_file, default=None, help="read the commands from a file")
    capture.add_argument("--guide", action="store_true",
                         help="move the arm by hand (Franka guiding button): the bridge is not armed, only capture "
                         "and finish are taken")
    capture.add_argument("--jog-step", type=float, default=0.02, help="metres per translation jog (default 0.02)")
    capture.add_argument("--jog-angle", type=float, default=0.1, help="radians per yaw jog (default 0.1)")
    capture.add_argument("--steps-per-goal", type=positive_int, default=10,
                         help="control steps per sub-goal written to the schedule (default 10; edit the YAML later)")
    capture.add_argument("--gripper", choices=("auto", "free"), default="auto",
                         help="gripper pin per sub-goal: auto = close (+0.5) if the gripper is closed at capture, "
                         "else open (-0.5); free = searched by the planner")
    capture.add_argument("--switch", choices=SWITCH_RULES, default="steps",
                         help="switching rule: steps per sub-goal, energy (advance at --switch-energy) or plateau "
                         "(advance once the energy has not fallen for --switch-plateau steps)")
    capture.add_argument("--switch-energy", type=float, default=None, help="energy at which to advance")
    capture.add_argument("--switch-plateau", type=int, default=None, metavar="STEPS",
                         help="steps without progress after which --switch plateau advances")
    capture.add_argument("--stop-energy", type=float, default=None, help="energy at which to stop on the last goal")
    capture.add_argument("--max-frame-age", type=float, default=0.5,
                         help="refuse camera frames older than this, seconds (default 0.5)")
    capture.add_argument("--settle", type=float, default=0.3,
                         help="seconds to let the arm settle after a move before capturing (default 0.3)")
    capture.set_defaults(handler=_capture)

    show = sub.add_parser("show", help="render a goal schedule as a contact sheet PNG",
                          description="One tile per sub-goal: its image with the planner's crop outlined, its steps, "
                          "gripper pin and stored gripper state.")
    show.add_argument("schedule", type=Path, help="schedule.yaml or its folder")
    show.add_argument("--out", type=Path, default=None, help="PNG to write (default: contact_sheet.png beside it)")
    show.add_argument("--columns", type=positive_int, default=4, help="tiles per row (default 4)")
    show.set_defaults(handler=_show)


def _capture(args: argparse.Namespace) -> int:
    from vjepa_ac.control import make_robot
    from vjepa_ac.planner.goals import GoalScheduleWriter
    from vjepa_ac.model_card import load_planning_defaults, resolve_checkpoint

    if args.switch == "energy" and args.switch_energy is None:
        raise ValueError("--switch energy needs --switch-energy")
    if args.switch == "plateau" and (args.switch_plateau is None or args.switch_plateau < 1):
        raise ValueError("--switch plateau needs --switch-plateau STEPS >= 1")
    commands = None
    if args.commands is not None:
        commands = parse_commands(args.commands)
    elif args.commands_file is not None:
        commands = parse_commands(args.commands_file.read_text())
    elif not sys.stdin.isatty():
        raise ValueError("no terminal to read keys from: pass --commands or --commands-file")
    if args.guide and args.robot == "sim":
        raise ValueError("the simulated arm cannot be moved by hand; drop --guide and jog it")
    defaults = load_planning_defaults(resolve_checkpoint(args.checkpoint))
    camera = args.camera or defaults.camera
    writer = GoalScheduleWriter(args.out, camera=camera, crop=defaults.crop, switch=args.switch,
                                switch_energy=args.switch_energy, stop_energy=args.stop_energy,
                                switch_plateau=args.switch_plateau,
                                overwrite=args.overwrite)
    robot = make_robot(args, defaults, camera).robot
    session = GoalCapture(robot, writer, camera=camera, guide=args.guide, jog_step=args.jog_step,
                          jog_angle=args.jog_angle, steps_per_goal=args.steps_per_goal, gripper_rule=args.gripper,
                          max_frame_age_s=args.max_frame_age, settle_s=args.settle)
    try:
        if args.guide:
            client = getattr(robot, "robot", robot)  # the BridgeClient, also behind local cameras (WithCameras)
            state = client.wait_state(timeout_s=client.config.rpc_timeout_s)
            if state.backend == "mujoco":
                raise ValueError("the bridge runs the MuJoCo arm, which cannot be moved by hand; drop --guide")
            if state.watchdog in ("ARMED", "TRACKING", "HOLD"):
                raise ValueError(f"the bridge is armed (watchdog {state.watchdog}) by another client that may move "
                                 "the arm; stop that client (the bridge then stops) before guiding the arm by hand")
            print(f"bridge watchdog {state.watchdog}, robot mode {state.robot_mode}: move the arm with its guiding "
                  "button, then capture")
        session.start()
        if commands is not None:
            count = session.run(commands)
        else:
            count = session.run(terminal_commands(), keep_going=True)
    finally:
        session.close()
    if count == 0:
        print("no sub-goal captured; nothing written", file=sys.stderr)
        return 1
    print(f"goal schedule: {writer.path} ({count} sub-goals)")
    return 0


def _show(args: argparse.Namespace) -> int:
    import cv2

    from vjepa_ac.planner.goals import load_goal_schedule

    schedule = load_goal_schedule(args.schedule)
    sheet = render_contact_sheet(schedule, schedule.load_images(), columns=args.columns)
    out = args.out or schedule.folder / "contact_sheet.png"
    if not cv2.imwrite(str(out), np.ascontiguousarray(sheet[..., ::-1])):
        raise ValueError(f"could not write {out}")
    print(f"contact sheet: {out}")
    return 0
