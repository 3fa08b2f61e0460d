"""pytest plugin: sim-in-the-loop tests for your own controllers, goal schedules and checkpoints.

Installed with vjepa-ac (entry point `pytest11`), it stays out of the way until a test module opts in with the
`vjepa_ac` marker, whose keyword arguments set up the scene:

    import pytest
    from vjepa_ac.pytest_plugin import assert_task_success

    pytestmark = pytest.mark.vjepa_ac(task="reach", seed=5000, image_size=(96, 128))

    def test_my_controller_reaches(vjepa_sim):
        for _ in range(vjepa_sim.task.max_steps):
            vjepa_sim.robot.send_action(my_controller(vjepa_sim.robot.get_observation()))
        assert_task_success(vjepa_sim.task)

Fixtures (function scope, fresh for every test; a test may override the module's marker with its own):

- `vjepa_sim`: a seeded MuJoCo Panda scene with its task (`SimEpisode`: `.robot` a connected `sim.SimRobot`, a
  `robot.interface.Robot`; `.task` a `sim.tasks.Task` reset with `seed`; `.seed`). Marker keywords: `task` (default
  "reach"), `seed` (default 5000), and any `sim.SimConfig` field (`image_size`, `cameras`, `camera_yaw`, ...).
- `vjepa_bridge`: the robot bridge on free loopback ports with its MuJoCo backend (the marker's task and seed),
  running in a thread (`BridgeHarness`: `.bridge`, `.ports`, `.port_base`, `.client(**ClientConfig fields)`).
- `vjepa_world_model`: the embedded default world model, or `--vjepa-ac-checkpoint PATH` (`PlanningModel`:
  `.world_model`, `.defaults` from its model card, `.path`), loaded once per session.

Assertion helpers: `assert_task_success`, `assert_flange_near`, `assert_object_near`, `assert_no_safety_rejections`;
`plan_episode` runs the closed loop of `vjepa-ac eval` on a `vjepa_sim` scene. See docs/testing.md.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

MARKER = "vjepa_ac"
DEFAULT_TASK = "reach"
DEFAULT_SEED = 5000


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(task='reach', seed=5000, **sim_options): use the vjepa-ac sim fixtures (vjepa_sim, vjepa_bridge, "
        "vjepa_world_model) in this module or test; sim_options are sim.SimConfig fields",
    )


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--vjepa-ac-checkpoint", default=None,
                     help="world model for the vjepa_world_model fixture (default: the embedded one)")


def _marker_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The opted-in test's marker keywords (a test's own marker over its module's); a clear error if not opted in."""
    marker = request.node.get_closest_marker(MARKER)
    if marker is None:
        pytest.fail(f"{request.node.nodeid} uses the vjepa-ac fixture {request.fixturename!r} without opting in: add "
                    f"`pytestmark = pytest.mark.{MARKER}` (optionally with task=..., seed=...) to its module",
                    pytrace=False)
    if marker.args:
        pytest.fail(f"{request.node.nodeid}: @pytest.mark.{MARKER} takes keywords only (task=..., seed=..., "
                    "SimConfig fields)", pytrace=False)
    options = dict(marker.kwargs)
    options.setdefault("task", DEFAULT_TASK)
    options.setdefault("seed", DEFAULT_SEED)
    return options


@dataclass
class SimEpisode:
    """A seeded scene: the connected simulated robot and its task."""

    robot: Any
    """`sim.SimRobot` (a `robot.interface.Robot`: get_observation / send_action / hold)."""
    task: Any
    """`sim.tasks.Task` reset with `seed`: goal_images(), success(), info()."""
    seed: int


@pytest.fixture
def vjepa_sim(request: pytest.FixtureRequest) -> Iterator[SimEpisode]:
    """A seeded MuJoCo Panda scene and task (marker keywords: task, seed, SimConfig fields)."""
    from vjepa_ac.sim.tasks import make_env

    options = _marker_options(request)
    task_name, seed = options.pop("task"), int(options.pop("seed"))
    robot, task = make_env(task_name, seed=seed, **options)
    try:
        yield SimEpisode(robot=robot, task=task, seed=seed)
    finally:
        robot.close()


def free_port_base(count: int = 4, attempts: int = 100) -> int:
    """A port P with P..P+count-1 all free on 127.0.0.1 (a bridge's four ports)."""
    for _ in range(attempts):
        with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        socks = []
        try:
            for port in range(base, base + count):  # all held at once, so none of them is our own earlier probe
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError(f"no block of {count} free loopback ports found")


@dataclass
class BridgeHarness:
    """A running bridge on loopback and the clients a test opened on it (closed after the test)."""

    bridge: Any
    """`robot.bridge.Bridge`: `counters`, `errors`, `transitions` tell what it did."""
    ports: dict[str, int]
    """cmd_port, state_port, rpc_port, camera_port (ClientConfig's field names)."""
    clients: list = field(default_factory=list)

    @property
    def port_base(self) -> int:
        """The first port, what `vjepa-ac ... --port-base` takes."""
        return self.ports["cmd_port"]

    def client(self, **overrides):
        """A `robot.client.BridgeClient` for this bridge (ClientConfig fields as keywords, e.g. camera_roles)."""
        from vjepa_ac.robot.client import BridgeClient, ClientConfig

        client = BridgeClient(ClientConfig(**self.ports, **overrides))
        self.clients.append(client)
        return client


@pytest.fixture
def vjepa_bridge(request: pytest.FixtureRequest) -> Iterator[BridgeHarness]:
    """The robot bridge with its MuJoCo backend on free loopback ports, looping in a thread (marker keywords: task,
    seed, cameras (default ("left",)), camera_hz (default 15), image_size)."""
    from vjepa_ac.sim.backend import MujocoBackend
    from vjepa_ac.robot.bridge import Bridge
    from vjepa_ac.robot.config import BridgeConfig, LinkConfig

    options = _marker_options(request)
    base = free_port_base()
    ports = {"cmd_port": base, "state_port": base + 1, "rpc_port": base + 2, "camera_port": base + 3}
    backend = MujocoBackend(task=options["task"], seed=int(options["seed"]),
                            cameras=tuple(options.get("cameras", ("left",))),
                            image_size=tuple(options.get("image_size", (180, 320))))
    bridge = Bridge(BridgeConfig(link=LinkConfig(**ports), camera_hz=float(options.get("camera_hz", 15.0))), backend)
    bridge.start()
    bridge.start_thread()
    harness = BridgeHarness(bridge=bridge, ports=ports)
    try:
        yield harness
    finally:
        for client in harness.clients:
            client.close()
        bridge.close()


@dataclass(frozen=True)
class PlanningModel:
    world_model: Any
    """`worldmodel.WorldModel` (frozen encoder + AC predictor)."""
    defaults: Any
    """`vjepa_ac.model_card.PlanningDefaults` from the model card (camera, crop, fps, planner settings, sim scene)."""
    path: Path


@pytest.fixture(scope="session")
def _vjepa_planning_model(pytestconfig: pytest.Config) -> PlanningModel:
    from vjepa_ac.model_card import load_for_planning

    checkpoint = pytestconfig.getoption("--vjepa-ac-checkpoint")
    world_model, defaults, path = load_for_planning(Path(checkpoint) if checkpoint else None, "cpu")
    return PlanningModel(world_model=world_model, defaults=defaults, path=path)


@pytest.fixture
def vjepa_world_model(request: pytest.FixtureRequest, _vjepa_planning_model: PlanningModel) -> PlanningModel:
    """The embedded default world model (or --vjepa-ac-checkpoint) with its model card's planning defaults."""
    _marker_options(request)
    return _vjepa_planning_model


def plan_episode(model: PlanningModel, sim: SimEpisode, **config_overrides):
    """Run the closed loop of `vjepa-ac eval` (the model card's planner for the task, `config_overrides` replacing
    MPCConfig fields) on `sim`; returns `vjepa_ac.report.EpisodeOutcome` (success, final_distance, steps, ...)."""
    import dataclasses

    from vjepa_ac.model_card import mpc_config_for
    from vjepa_ac.closed_loop import run_episode

    config = mpc_config_for(model.defaults, sim.task.name)
    if config_overrides:
        config = dataclasses.replace(config, **config_overrides)
    outcome, _, _ = run_episode(model.world_model, sim.task.name, sim.seed, config, fps=model.defaults.fps,
                                robot=sim.robot)
    return outcome


# -- assertion helpers -----------------------------------------------------------------------------------------------
def assert_task_success(task) -> None:
    """The sim task's own success check, with its distances in the message when it fails."""
    info = task.info()
    if not info["success"]:
        details = ", ".join(f"{k} {v * 100:.1f} cm" if k.endswith("distance") else f"{k} {v}"
                            for k, v in info.items() if k not in ("task", "success"))
        raise AssertionError(f"task {info['task']!r} not achieved: {details}")


def _flange_position(robot) -> np.ndarray:
    if hasattr(robot, "droid_state"):
        return np.asarray(robot.droid_state()[:3], dtype=np.float64)
    return np.asarray(robot.get_observation().state[:3], dtype=np.float64)


def assert_flange_near(robot, target: Iterable[float], tolerance: float = 0.03) -> float:
    """The flange (DROID state xyz, base frame, metres) within `tolerance` of `target`; returns the distance."""
    target = np.asarray(list(target), dtype=np.float64)
    position = _flange_position(robot)
    distance = float(np.linalg.norm(position - target))
    if not distance <= tolerance:
        raise AssertionError(f"flange at {np.round(position, 3).tolist()} is {distance * 100:.1f} cm from "
                             f"{np.round(target, 3).tolist()} (allowed {tolerance * 100:.1f} cm)")
    return distance


def assert_object_near(robot, body: str, target: Iterable[float], tolerance: float = 0.04) -> float:
    """A simulated body (e.g. "cube") within `tolerance` metres of `target`; returns the distance."""
    target = np.asarray(list(target), dtype=np.float64)
    position = np.asarray(robot.body_position(body), dtype=np.float64)
    distance = float(np.linalg.norm(position - target))
    if not distance <= tolerance:
        raise AssertionError(f"{body} at {np.round(position, 3).tolist()} is {distance * 100:.1f} cm from "
                             f"{np.round(target, 3).tolist()} (allowed {tolerance * 100:.1f} cm)")
    return distance


def assert_no_safety_rejections(source) -> None:
    """Nothing was refused: `source` is a `BridgeHarness` or `Bridge` (its rejection counter and error log), or the
    `ActionResult`s a robot returned (clamped actions are allowed, refused ones are not)."""
    bridge = getattr(source, "bridge", source)
    if hasattr(bridge, "counters") and hasattr(bridge, "errors"):
        rejected = int(bridge.counters.get("rejected", 0))
        if rejected:
            raise AssertionError(f"the bridge rejected {rejected} message(s); latest: {list(bridge.errors)[-3:]}")
        return
    refused = [(i, result.reason) for i, result in enumerate(source) if not result.ok]
    if refused:
        raise AssertionError(f"{len(refused)} action(s) refused; first: step {refused[0][0]}: {refused[0][1]}")
