"""`vjepa-ac bridge run|keygen|status|recover|home|fake-franka-ros`: the robot-side bridge and its tools.

Application layer: the composition root of the robot-side process, which puts the bridge (`robot.bridge`) together
with the backend its configuration names (a real arm's from `robot.backends`, the simulated arm's from `sim.backend`)
and the cameras. The bridge process loads neither torch nor h5py (tests/test_import_graph.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
from pathlib import Path
from typing import Any

from vjepa_ac.data.config import add_config_arguments
from vjepa_ac.sim import TASK_NAMES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bridge",
        help="robot-side bridge to a Franka arm (ZMQ link, watchdog, safety filter)",
        description="Run the bridge that streams planner commands to a Franka arm, create its keys, or query it.",
    )
    sub = parser.add_subparsers(dest="bridge_command", metavar="ACTION", required=True)

    run = sub.add_parser(
        "run", help="run the bridge in the foreground until Ctrl-C",
        description="Bind the link sockets and drive the arm through the chosen backend. The settings are those of "
        "robot.config.BridgeConfig (listed below with their defaults): a --config YAML file of them (e.g. "
        "launch/panda.yaml), then the options below, then KEY=VALUE overrides (e.g. safety.max_translation=0.05).",
    )
    add_config_arguments(run, _bridge_config_class)
    run.add_argument("--backend", choices=["mujoco", "ros1", "ros2", "libfranka"],
                     help="arm backend (the setting `backend`)")
    run.add_argument("--robot", choices=["panda", "fr3"], help="joint limit table (the setting `robot`)")
    run.add_argument("--mode", choices=["joint", "cartesian"], dest="control_mode",
                     help="stream joint set-points (IK in the bridge) or Cartesian equilibrium poses (`control_mode`)")
    run.add_argument("--host", help="address to bind (`link.host`; non-loopback needs CurveZMQ keys)")
    run.add_argument("--port-base", type=int,
                     help="use ports BASE (cmd), BASE+1 (state), BASE+2 (rpc), BASE+3 (camera) (`link.*_port`)")
    run.add_argument("--no-cameras", action="store_true",
                     help="do not open the config's cameras (e.g. with --backend mujoco, which renders its own)")
    sim = run.add_argument_group("simulated arm (--backend mujoco)")
    sim.add_argument("--task", choices=TASK_NAMES,
                     help="the simulator task whose scene (objects, start pose) the arm stands in "
                          "(`backend_options.mujoco.task`; default: the bare tabletop)")
    sim.add_argument("--seed", type=int, help="episode seed of the task's object placement "
                     "(`backend_options.mujoco.seed`; default 0)")
    run.set_defaults(handler=_run)

    keygen = sub.add_parser("keygen", help="create a CurveZMQ key pair",
                            description="Write NAME.key (public: give it to the other side) and NAME.key_secret "
                                        "(private, mode 0600). The bridge accepts clients whose NAME.key lies in "
                                        "its link.authorized_keys folder; clients need the bridge's NAME.key.")
    keygen.add_argument("directory", type=Path, help="folder to write the key files into")
    keygen.add_argument("--name", default="bridge", help="file name stem (e.g. bridge, workstation)")
    keygen.add_argument("--force", action="store_true", help="overwrite existing key files")
    keygen.set_defaults(handler=_keygen)

    status = sub.add_parser("status", help="print a running bridge's state (one state message and its config)")
    _add_client_options(status)
    status.set_defaults(handler=_status)

    recover = sub.add_parser(
        "recover", help="clear a FAULT (the arm's reflex) so the bridge can be armed again",
        description="Run the backend's error recovery (libfranka: automatic_error_recovery; franka_ros: the "
                    "error_recovery action) after removing the reflex's cause. The arm does not move; the next "
                    "`vjepa-ac run` arms a new session.")
    _add_client_options(recover)
    recover.set_defaults(handler=_recover)

    home = sub.add_parser(
        "home", help="move the arm to the bridge's home pose (DROID's reset pose) through its safety filter",
        description="Arm a session, move to home_q of the bridge's config (the path checked against the joint "
                    "limits and the workspace box), wait until it is there, and release the arm (STOPPED).")
    _add_client_options(home)
    home.set_defaults(handler=_home)

    fake = sub.add_parser(
        "fake-franka-ros",
        help="a stand-in franka_ros node backed by the MuJoCo Panda (ROS 1)",
        description="Publish franka_states / joint_states and obey the joint trajectory controller, the Cartesian "
                    "impedance equilibrium pose and franka_gripper actions, like franka_control on a real arm. "
                    "Needs Debian's python3-rospy; ROS_MASTER_URI must point at a running master.",
    )
    fake.add_argument("--arm-id", default="panda", help="prefix of the joint and frame names")
    fake.add_argument("--rate", type=float, default=100.0, help="state publish rate in Hz")
    fake.set_defaults(handler=_fake_franka_ros)


def _add_client_options(parser: argparse.ArgumentParser) -> None:
    """Where the bridge is and how to authenticate, for the commands that talk to a running bridge."""
    parser.add_argument("--host", default="127.0.0.1", help="bridge address")
    parser.add_argument("--port-base", type=int, default=5555, help="the bridge's cmd port (state = +1, rpc = +2)")
    parser.add_argument("--client-key", help="this workstation's .key_secret file (CurveZMQ)")
    parser.add_argument("--bridge-key", help="the bridge's public .key file (CurveZMQ)")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for an answer")


def _client(args: argparse.Namespace):
    from vjepa_ac.robot.client import BridgeClient, ClientConfig

    config = ClientConfig(host=args.host, client_secret_key=args.client_key, bridge_public_key=args.bridge_key,
                          rpc_timeout_s=args.timeout, camera_roles=())
    return BridgeClient(config.with_port_base(args.port_base))


def _bridge_config_class() -> type:
    from vjepa_ac.robot.config import BridgeConfig

    return BridgeConfig


def bridge_run_config(args: argparse.Namespace):
    """The `BridgeConfig` of a `bridge run` command line: the --config file, then the options, then the overrides."""
    from vjepa_ac.data.config import ConfigError
    from vjepa_ac.robot.config import load_bridge_config
    from vjepa_ac.robot.protocol import LinkAddress

    settings = {"backend": args.backend, "robot": args.robot, "control_mode": args.control_mode,
                "link.host": args.host, "backend_options.mujoco.task": args.task,
                "backend_options.mujoco.seed": args.seed}
    if args.port_base:
        ports = dataclasses.asdict(LinkAddress().with_port_base(args.port_base))
        settings.update({f"link.{name}": port for name, port in ports.items() if name.endswith("_port")})
    settings = {key: value for key, value in settings.items() if value is not None}
    try:
        config = load_bridge_config(args.config, args.overrides, settings)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    if (args.task is not None or args.seed is not None) and config.backend != "mujoco":
        raise argparse.ArgumentTypeError(f"--task and --seed choose a simulator scene; the backend is "
                                         f"{config.backend}")
    return config


def _run(args: argparse.Namespace) -> int:
    config = bridge_run_config(args)
    if args.print_config:
        from vjepa_ac.data.config import dump_yaml

        print(dump_yaml(config), end="")
        return 0
    from vjepa_ac.data.conventions import use_headless_rendering

    use_headless_rendering()  # before MuJoCo loads
    from vjepa_ac.robot.bridge import Bridge

    from vjepa_ac.robot.cameras import CameraRig

    # --no-cameras leaves the cameras declared (the `config` RPC reports them) but does not open them.
    cameras = CameraRig.from_configs(config.cameras) if config.cameras and not args.no_cameras else None
    bridge = Bridge(config, _make_backend(config.backend, config.backend_options.get(config.backend)), cameras=cameras)
    signal.signal(signal.SIGTERM, lambda *_: bridge.shutdown())
    bridge.start()
    link = config.link
    print(f"bridge running: backend {config.backend}, robot {config.robot}, {config.control_mode} mode, "
          f"tcp://{link.host}:{link.cmd_port}-{link.camera_port}, CurveZMQ {'on' if link.curve else 'off'}",
          flush=True)
    try:
        bridge.run()
    except KeyboardInterrupt:
        pass
    finally:
        bridge.close()
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from vjepa_ac.robot.keys import generate_keypair

    public, secret = generate_keypair(args.directory, args.name, overwrite=args.force)
    print(f"public key: {public}\nsecret key: {secret}")
    return 0


def _status(args: argparse.Namespace) -> int:
    client = _client(args)
    try:
        status = client.call("status")
        config = client.call("config")
    finally:
        client.close()
    print(json.dumps({"state": status, "config": config}, indent=2, default=str))
    return 0


def _recover(args: argparse.Namespace) -> int:
    client = _client(args)
    try:
        state = client.call("recover")["state"]
    finally:
        client.close()
    print(f"recovered: watchdog {state}")
    return 0


def _home(args: argparse.Namespace) -> int:
    import time

    client = _client(args)
    try:
        client.connect()
        duration = client.home()
        print(f"homing: {duration:.1f} s", flush=True)
        # Heartbeats keep the session alive while the arm moves; the bridge holds at home afterwards.
        time.sleep(duration + 0.5)
        state = client.wait_state(timeout_s=args.timeout)
    finally:
        client.close()
    print(f"at home: joints {' '.join(f'{q:.3f}' for q in state.q)}")
    return 0


def _fake_franka_ros(args: argparse.Namespace) -> int:
    from vjepa_ac.data.conventions import use_headless_rendering

    use_headless_rendering()  # before MuJoCo loads
    from vjepa_ac.sim.ros1_standin import run_standin

    run_standin(arm_id=args.arm_id, rate_hz=args.rate)
    return 0


def _make_backend(name: str, options: dict[str, Any] | None = None):
    """Build the backend `name` (one of `robot.backends.BACKEND_NAMES`) with its options (a section of the bridge
    config)."""
    from vjepa_ac.robot.backends import BACKEND_NAMES

    options = dict(options or {})
    if name == "mujoco":
        from vjepa_ac.sim.backend import MujocoBackend

        return MujocoBackend(**options)
    if name == "ros1":
        from vjepa_ac.robot.backends.ros1 import Ros1Backend, Ros1Config

        return Ros1Backend(Ros1Config(**options))
    if name == "ros2":
        from vjepa_ac.robot.backends.ros2 import Ros2Backend, Ros2Config

        return Ros2Backend(Ros2Config(**options))
    if name == "libfranka":
        from vjepa_ac.robot.backends.libfranka import LibfrankaBackend, LibfrankaConfig

        return LibfrankaBackend(LibfrankaConfig(**options))
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")
