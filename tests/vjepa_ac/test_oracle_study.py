"""The rendering oracle (a perfect, contact-free predictor), its results file and table (the study itself is long;
EVALUATION.md has its numbers)."""

import json

import numpy as np
import pytest
import torch

from vjepa_ac.oracle_study import RenderedRollout, format_table, main, read_results
from vjepa_ac.worldmodel import build_encoder, build_predictor
from vjepa_ac.worldmodel.world_model import WorldModel


@pytest.fixture(scope="module")
def world_model() -> WorldModel:
    """A random tiny encoder: the oracle's rendering is under test, not the encoder's quality."""
    torch.manual_seed(0)
    return WorldModel(encoder=build_encoder("vit_tiny").eval(), predictor=build_predictor("vit_ac_tiny"),
                      crop="square")


def test_the_oracle_renders_where_each_candidate_leads(world_model):
    """A candidate whose actions add up to the straddle pose (fingers open) is imagined as the straddle goal image;
    holding still is not; a pose out of reach is non-finite; every step holds the last step's latent."""
    from vjepa_ac.sim.tasks import make_env

    robot, task = make_env("grasp", seed=2, image_size=(64, 64), cameras=("left",))
    try:
        state = torch.from_numpy(robot.droid_state())
        rollout = RenderedRollout(task, world_model, state)
        to_straddle = np.zeros(7)
        to_straddle[:3] = (task.goals[1].flange_pos - robot.droid_state()[:3]) / 2
        to_straddle[6] = -1.0  # open: the straddle goal's fingers
        candidates = torch.zeros(3, 2, 7)
        candidates[0] = torch.from_numpy(to_straddle)
        candidates[2, :, 0] = 1.0  # 2 m forward
        latents = rollout(candidates)
        goal = world_model.encode(task.goal_images()[1][None, None])[0, 0]
    finally:
        robot.close()
    assert latents.shape == (3, 2, *goal.shape)
    torch.testing.assert_close(latents[:, 0], latents[:, 1], equal_nan=True)
    energy = (latents[:, -1] - goal).abs().mean(dim=(-2, -1))
    assert energy[0] < 0.2 * energy[1]
    assert torch.isnan(energy[2])


def test_a_held_cube_moves_with_the_hand(world_model):
    from vjepa_ac.sim.tasks import make_env

    robot, task = make_env("grasp", seed=2, image_size=(64, 64), cameras=("left",))
    try:
        rollout = RenderedRollout(task, world_model, torch.from_numpy(robot.droid_state()))
        rollout.carrying = True
        seen = {}
        task.render_goal_camera = lambda q, gripper, objects: seen.update(objects) or np.zeros((64, 64, 3), np.uint8)
        rollout.render(robot.droid_state() + np.array([0.0, 0.0, 0.05, 0, 0, 0, 0]))
    finally:
        robot.close()
    np.testing.assert_allclose(seen["cube"][0], rollout.cube[0] + [0, 0, 0.05], atol=1e-3)
    assert seen["cube"][1] == pytest.approx(task.cube_yaw, abs=1e-3)


def test_table_from_a_results_file_with_a_torn_last_line(tmp_path, capsys):
    records = [{"condition": "rendered", "task": "grasp", "seed": 5000 + i, "success": i < 2, "final_distance": 0.02,
                "steps": 30, "subgoal_distances": [0.03, d, 0.02, 0.05], "seconds_per_action": 5.0}
               for i, d in enumerate([0.01, 0.025, 0.05, None])]
    records.append({"condition": "predictor", "task": "grasp", "seed": 5000, "success": False, "final_distance": 0.1,
                    "steps": 30, "subgoal_distances": [0.03, 0.07, 0.06, 0.1], "seconds_per_action": 0.7})
    records.append({"condition": "rendered", "task": "grasp", "settings": "reduce=sum", "seed": 5000, "success": True,
                    "final_distance": 0.01, "steps": 20, "subgoal_distances": [0.01, 0.005, 0.01, 0.02],
                    "seconds_per_action": 4.0})
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"condition": "ren')
    assert len(read_results(path)) == 6
    lines = format_table(read_results(path)).splitlines()
    assert lines[2] == "| rendered | grasp | model card | 2/4 (50%, 15%-85%) | 4 | 2.5 | 5.00 |"
    assert lines[3] == "| rendered | grasp | reduce=sum | 1/1 (100%, 21%-100%) | 1 | 0.5 | 4.00 |"
    assert lines[4] == "| predictor | grasp | model card | 0/1 (0%, 0%-79%) | 1 | 7.0 | 0.70 |"
    assert lines[8] == "| rendered | grasp | model card | 1/1 | 1/1 | 0/0 | 0/1 | 0/0 |"
    assert lines[9] == "| rendered | grasp | reduce=sum | 1/1 | 0/0 | 0/0 | 0/0 | 0/0 |"
    assert lines[10] == "| predictor | grasp | model card | 0/0 | 0/0 | 0/0 | 0/0 | 0/1 |"
    assert main(["--out", str(tmp_path), "--table"]) == 0
    assert "| rendered | grasp | model card | 2/4" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="goal_reduce"):
        main(["--out", str(tmp_path), "--episodes", "0", "goal_reduce=[middle]"])


def test_imagined_poses_stay_in_the_workspace_box_as_the_robots_do(world_model):
    from vjepa_ac.model_card import sim_config_options
    from vjepa_ac.sim.tasks import make_env

    options = sim_config_options({"image_size": [64, 64], "cameras": ["left"], "workspace_min": [0.3, -0.3, 0.05],
                                  "workspace_max": [0.75, 0.3, 0.55]})
    robot, task = make_env("grasp", seed=2, **options)
    try:
        rollout = RenderedRollout(task, world_model, torch.from_numpy(robot.droid_state()))
        up = torch.zeros(1, 3, 7)
        up[0, :, 2] = 0.5  # 1.5 m up in three steps
        up[0, 1, 0] = -0.1
        final = rollout.final_states(up)[0]
        start = robot.droid_state()
    finally:
        robot.close()
    assert final[2].item() == pytest.approx(0.55)
    assert final[0].item() == pytest.approx(max(start[0] - 0.1, 0.3))
