"""The pytest plugin (vjepa_ac/pytest_plugin.py), used the way docs/testing.md shows: a user's controller driven in a
seeded sim scene, the bridge on loopback, the embedded world model; the assertion helpers' messages; and opting in."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import zmq

from vjepa_ac.pytest_plugin import (
    assert_flange_near,
    assert_no_safety_rejections,
    assert_object_near,
    assert_task_success,
    plan_episode,
)

pytestmark = pytest.mark.vjepa_ac(task="reach", seed=5000, image_size=(96, 128))


def go_to_goal(state: np.ndarray, goal: np.ndarray, gain: float = 0.5, max_step: float = 0.03) -> np.ndarray:
    """The controller under test: a clipped proportional step toward the goal position, orientation and gripper
    held (a DROID delta action)."""
    step = gain * (goal[:3] - state[:3])
    norm = np.linalg.norm(step)
    if norm > max_step:
        step *= max_step / norm
    return np.concatenate([step, np.zeros(4)])


def test_worked_example_a_controller_reaches(vjepa_sim):
    robot, task = vjepa_sim.robot, vjepa_sim.task
    goal = task.goal_states()[-1]
    results = []
    for _ in range(task.max_steps):
        results.append(robot.send_action(go_to_goal(robot.get_observation().state, goal)))
    assert_task_success(task)
    assert_flange_near(robot, goal[:3], tolerance=0.02)
    assert_no_safety_rejections(results)


@pytest.mark.vjepa_ac(task="grasp", seed=7)
def test_a_test_can_choose_its_own_scene(vjepa_sim):
    assert vjepa_sim.task.name == "grasp" and vjepa_sim.seed == 7
    cube = vjepa_sim.robot.body_position("cube")
    assert_object_near(vjepa_sim.robot, "cube", cube, tolerance=1e-6)


def test_failed_assertions_say_how_far_off(vjepa_sim):
    robot, task = vjepa_sim.robot, vjepa_sim.task
    with pytest.raises(AssertionError, match=r"task 'reach' not achieved: .*ee_goal_distance \d+\.\d cm"):
        assert_task_success(task)
    with pytest.raises(AssertionError, match=r"flange at .* is \d+\.\d cm from .*allowed 3\.0 cm"):
        assert_flange_near(robot, task.goal_states()[-1][:3])
    with pytest.raises(AssertionError, match="cube at .*allowed 4.0 cm"):
        assert_object_near(robot, "cube", [5.0, 5.0, 5.0])
    refused = [robot.send_action(np.zeros(7)), robot.send_action(np.full(7, np.nan))]
    with pytest.raises(AssertionError, match="1 action\\(s\\) refused; first: step 1"):
        assert_no_safety_rejections(refused)


def test_bridge_on_loopback_counts_rejections(vjepa_bridge):
    client = vjepa_bridge.client(camera_roles=("left",), rpc_timeout_s=20.0)
    client.connect()
    start = client.get_observation().state
    for _ in range(5):
        assert client.send_action(np.array([0.0, 0.0, 0.01, 0.0, 0.0, 0.0, 0.0])).ok
    assert_no_safety_rejections(vjepa_bridge)
    assert client.get_observation().images["left"].shape == (96, 128, 3)  # the module's image_size
    assert vjepa_bridge.bridge.counters["accepted"] >= 5 and np.isfinite(start).all()
    # A hostile command message on the bridge's command port: refused and counted.
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.linger = 0
    push.connect(f"tcp://127.0.0.1:{vjepa_bridge.ports['cmd_port']}")
    push.send(b"\x93garbage")
    deadline = time.monotonic() + 60
    while not vjepa_bridge.bridge.counters["rejected"] and time.monotonic() < deadline:
        time.sleep(0.05)
    push.close()
    with pytest.raises(AssertionError, match="the bridge rejected 1 message"):
        assert_no_safety_rejections(vjepa_bridge)


def test_embedded_world_model_is_there(vjepa_world_model):
    assert vjepa_world_model.path.name == "vjepa-ac-sim-tiny.pt"
    assert vjepa_world_model.defaults.camera == "left" and vjepa_world_model.world_model.tokens_per_frame == 64


@pytest.mark.slow
@pytest.mark.vjepa_ac(task="reach", seed=1002)
def test_worked_example_the_world_model_reaches(vjepa_world_model, vjepa_sim):
    """The closed loop of `vjepa-ac eval` on a reach the embedded model solves (EVALUATION.md's seed 1002)."""
    outcome = plan_episode(vjepa_world_model, vjepa_sim)
    assert_task_success(vjepa_sim.task)
    assert outcome.final_distance <= 0.03


def test_fixtures_need_the_module_to_opt_in(tmp_path):
    """In a fresh pytest run (the plugin comes from the installed entry point, no -p): a module without the marker
    gets a clear error, one with it gets its scene."""
    (tmp_path / "test_without_marker.py").write_text("def test_it(vjepa_sim):\n    pass\n")
    (tmp_path / "test_with_marker.py").write_text(textwrap.dedent("""
        import pytest
        pytestmark = pytest.mark.vjepa_ac(task="reach", seed=3, image_size=(48, 64))

        def test_it(vjepa_sim):
            assert vjepa_sim.seed == 3 and vjepa_sim.task.name == "reach"
    """))
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert "1 passed, 1 error" in result.stdout, result.stdout[-3000:]
    assert "without opting in: add `pytestmark = pytest.mark.vjepa_ac`" in result.stdout
