"""Action-frame calibration: recovers a known yaw from a world whose dynamics are exactly rotated, refuses probes
that cannot determine it, and writes / reads its file."""

import json

import numpy as np
import pytest
import torch

from vjepa_ac.planner.action_frame import rotate_states
from vjepa_ac.planner.calibration import (
    CalibrationConfig,
    CalibrationError,
    ProbeSet,
    calibrate,
    collect_probes,
    fit_action_frame,
    probe_actions,
    read_action_frame_yaw,
    usable_probes,
    write_calibration,
)

from .conftest import LinearLatentWorld, PointRobot


class RotatedWorld:
    """A synthetic world model reading actions in a frame turned by `true_yaw`: the latent of base-frame state s is
    that of the state Rz(-true_yaw) s, and its one-step prediction is exact in its own frame."""

    def __init__(self, true_yaw: float) -> None:
        self.true_yaw = true_yaw
        self.world = LinearLatentWorld(torch.zeros(7))

    def observe(self, base_states: np.ndarray) -> torch.Tensor:
        return self.world.latent(torch.as_tensor(rotate_states(base_states, -self.true_yaw)))

    def predict(self, latents: torch.Tensor, actions: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        from vjepa_ac.data.droid.poses import apply_actions

        return self.world.latent(apply_actions(states.double(), actions.double()))


def _probes(config: CalibrationConfig, start=(0.5, 0.0, 0.3, 3.1, 0.0, 0.0, 0.0)):
    robot = PointRobot(start)
    return collect_probes(robot, config), robot


@pytest.mark.parametrize("true_yaw", [-60.0, 0.0, 25.0, 135.0])
def test_recovers_a_known_yaw(true_yaw):
    config = CalibrationConfig(probes=6, seed=1)
    probes, _ = _probes(config)
    world = RotatedWorld(true_yaw)
    result = fit_action_frame(world.observe(probes.states_before), world.observe(probes.states_after),
                              probes.states_before, probes.actions, world.predict, config)
    assert abs(result.yaw - true_yaw) <= 0.1
    assert result.residual < 1e-3 * result.residual_still
    if true_yaw != 0.0:
        assert result.residual_unrotated > 100 * result.residual
    assert result.loo_spread <= 1.0 and result.contrast > 0.5 and result.probes_used == 6
    assert len(result.curve) == 360 and np.argmin(result.curve) == pytest.approx(true_yaw + 180, abs=1)
    assert result.warnings == [] and "warning" not in result.format()


def test_warns_when_the_model_predicts_worse_than_no_change():
    config = CalibrationConfig(probes=6, seed=1)
    probes, _ = _probes(config)
    world = RotatedWorld(30.0)

    def overshooting(latents, actions, states):  # right direction, three times too far
        from vjepa_ac.data.droid.poses import apply_actions

        return world.world.latent(apply_actions(states.double(), 3 * actions.double()))

    result = fit_action_frame(world.observe(probes.states_before), world.observe(probes.states_after),
                              probes.states_before, probes.actions, overshooting, config)
    assert abs(result.yaw - 30.0) <= 10 and result.residual > result.residual_still
    assert "worse than 'nothing changes'" in result.warnings[0] and "warning:" in result.format()
    assert result.summary()["warnings"] == result.warnings


def test_probes_go_out_and_back_through_the_robot():
    config = CalibrationConfig(probes=6, step=0.05, seed=2)
    probes, robot = _probes(config)
    commanded = probe_actions(config)
    assert np.allclose(np.linalg.norm(commanded[:, :2], axis=1), 0.05) and np.all(commanded[:, 2:] == 0)
    assert np.allclose(commanded[0::2] + commanded[1::2], 0)  # each direction out and back
    assert len(robot.sent) == 6 and robot.holds == 1
    assert np.allclose(probes.actions[:, :2], commanded[:, :2]) and np.allclose(robot.state[:2], [0.5, 0.0])


class BrakedRobot(PointRobot):
    """Accepts every action but never moves."""

    def send_action(self, action):
        from vjepa_ac.robot.interface import ActionResult, ActionStatus

        self.sent.append(action)
        return ActionResult(ActionStatus.ACCEPTED, action)


class BlindRobot(PointRobot):
    """Moves, but its camera shows the same image all the time."""

    def image_at(self, state):
        return np.full((*self.size, 3), 90, dtype=np.uint8)


def test_refuses_an_arm_that_does_not_move(tiny_world_model):
    with pytest.raises(CalibrationError, match="the arm did not move"):
        calibrate(BrakedRobot(), tiny_world_model, CalibrationConfig(probes=4))


def test_refuses_a_camera_that_sees_no_change(tiny_world_model):
    with pytest.raises(CalibrationError, match="saw nothing change"):
        calibrate(BlindRobot(), tiny_world_model, CalibrationConfig(probes=4))


def test_refuses_rejected_probes_nan_and_too_few_probes():
    with pytest.raises(CalibrationError, match="refused probe 0"):
        collect_probes(PointRobot(reject=True), CalibrationConfig(probes=4))
    with pytest.raises(ValueError, match="non-finite"):
        collect_probes(PointRobot(nan_after=2), CalibrationConfig(probes=4))
    with pytest.raises(ValueError, match="probes >= min_probes"):
        CalibrationConfig(probes=2)
    config = CalibrationConfig(probes=4)
    probes, _ = _probes(config)
    few = ProbeSet(probes.frames_before[:2], probes.frames_after[:2], probes.states_before[:2], probes.states_after[:2])
    with pytest.raises(CalibrationError, match="2 probe"):
        usable_probes(few, config)
    world = RotatedWorld(10.0)
    latents = world.observe(probes.states_before)
    latents[1, 0, 0] = float("nan")
    with pytest.raises(CalibrationError, match="NaN"):
        fit_action_frame(latents, world.observe(probes.states_after), probes.states_before, probes.actions,
                         world.predict, config)


def test_refuses_predictions_that_ignore_the_action():
    config = CalibrationConfig(probes=4)
    probes, _ = _probes(config)
    world = RotatedWorld(0.0)
    with pytest.raises(CalibrationError, match="hardly depend on the action"):
        fit_action_frame(world.observe(probes.states_before), world.observe(probes.states_after),
                         probes.states_before, probes.actions, lambda z, a, s: z.clone(), config)


def test_a_partly_blocked_probe_is_left_out():
    config = CalibrationConfig(probes=6, seed=1)
    probes, _ = _probes(config)
    probes.states_after[2] = probes.states_before[2]
    keep, excluded = usable_probes(probes, config)
    assert keep.tolist() == [0, 1, 3, 4, 5] and "probe 2: the flange moved 0.0 mm" in excluded[0]


def test_calibration_file_round_trip_and_bad_files(tmp_path):
    config = CalibrationConfig(probes=4)
    probes, _ = _probes(config)
    world = RotatedWorld(-20.0)
    result = fit_action_frame(world.observe(probes.states_before), world.observe(probes.states_after),
                              probes.states_before, probes.actions, world.predict, config)
    path = write_calibration(tmp_path / "frame.json", result, {"camera": "left"})
    document = json.loads(path.read_text())
    assert document["calibration"]["probes_used"] == 4 and document["camera"] == "left"
    assert read_action_frame_yaw(path) == pytest.approx(-20.0, abs=0.1)
    yaml_file = tmp_path / "frame.yaml"
    yaml_file.write_text("action_frame_yaw: 12.5\n")
    assert read_action_frame_yaw(yaml_file) == 12.5
    for text, message in (("{", "not valid"), ("{}", "no 'action_frame_yaw'"),
                          ('{"action_frame_yaw": "east"}', "finite number"), ('{"action_frame_yaw": NaN}', "finite")):
        yaml_file.write_text(text)
        with pytest.raises(ValueError, match=message):
            read_action_frame_yaw(yaml_file)
    with pytest.raises(ValueError, match="cannot read"):
        read_action_frame_yaw(tmp_path / "missing.json")
