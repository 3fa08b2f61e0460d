"""Tasks: seeded initial conditions, goal images from the goal configuration, success checks."""

import numpy as np
import pytest

from vjepa_ac.sim.tasks import TASK_NAMES, PickAndPlaceTask, grasp_yaw, gripper_rotation, make_env


@pytest.mark.parametrize("name", TASK_NAMES)
def test_same_seed_same_episode_and_other_seeds_differ(robot, name):
    _, task = make_env(name, seed=3, robot=robot)
    first = (robot.body_position("cube"), robot.joint_positions, task.goal_states())
    _, task = make_env(name, seed=3, robot=robot)
    np.testing.assert_allclose(robot.body_position("cube"), first[0], atol=1e-9)
    np.testing.assert_allclose(robot.joint_positions, first[1], atol=1e-9)
    np.testing.assert_allclose(task.goal_states(), first[2], atol=1e-9)
    _, task = make_env(name, seed=4, robot=robot)
    assert not np.allclose(task.goal_states(), first[2])
    assert not task.success()  # no task starts solved


@pytest.mark.parametrize("name", TASK_NAMES)
def test_goal_images_come_from_the_goal_configuration(robot, name):
    _, task = make_env(name, seed=0, robot=robot)
    before = robot.get_observation()
    images = task.goal_images()
    assert len(images) == {"grasp": 4, "pick_and_place": 6}.get(name, 1)
    for image in images:
        assert image.shape == before.images["left"].shape and image.dtype == np.uint8
        assert np.abs(image.astype(int) - before.images["left"]).mean() > 0.5  # the arm moved in the goal image
    # Rendering goals leaves the simulation untouched.
    np.testing.assert_array_equal(robot.get_observation().images["left"], before.images["left"])
    info = task.info()
    assert info["task"] == name and info["success"] is False and info["ee_goal_distance"] > 0


def test_goal_distance_is_the_cube_s_where_the_task_is_about_the_cube(robot):
    _, task = make_env("pick_and_place", seed=1, robot=robot)
    final = task.goals[-1]
    # The cube dropped onto its goal spot while the arm is still far away: the task's distance is the cube's.
    robot.set_object_pose("cube", final.objects["cube"][0], final.objects["cube"][1])
    info = task.info()
    assert info["goal_distance"] == info["object_goal_distance"] < 1e-3 < 0.05 < info["ee_goal_distance"]
    _, reach = make_env("reach", seed=1, robot=robot)
    info = reach.info()
    assert info["goal_distance"] == info["ee_goal_distance"] != info["object_goal_distance"]


def test_pick_and_place_success_needs_the_cube_resting_on_the_mat(robot):
    _, task = make_env("pick_and_place", seed=1, robot=robot)
    assert isinstance(task, PickAndPlaceTask)
    target = task.target_pos
    robot.set_object_pose("cube", np.array([target[0], target[1], 0.025]))
    robot.settle(3)
    assert task.success()
    robot.set_object_pose("cube", np.array([target[0] + 0.2, target[1], 0.025]))
    robot.settle(3)
    assert not task.success()


@pytest.mark.parametrize("name", ["grasp", "pick_and_place"])
def test_grasp_subgoals_approach_straddle_and_close_on_the_cube(robot, name):
    from vjepa_ac.sim.tasks import APPROACH_HEIGHT, GRASP_DEPTH, HELD_GRIPPER

    _, task = make_env(name, seed=2, robot=robot)
    approach, straddle, grasp = task.goals[:3]
    np.testing.assert_allclose(straddle.flange_pos, task.cube_start + [0, 0, GRASP_DEPTH])
    np.testing.assert_allclose(approach.flange_pos, straddle.flange_pos + [0, 0, APPROACH_HEIGHT])
    np.testing.assert_allclose(grasp.flange_pos, straddle.flange_pos)
    assert approach.gripper == straddle.gripper == 0.0 and grasp.gripper == HELD_GRIPPER
    assert approach.flange_yaw == straddle.flange_yaw == grasp.flange_yaw == grasp_yaw(task.cube_yaw)
    for goal in task.goals[:3]:
        np.testing.assert_allclose(goal.objects["cube"][0], task.cube_start)  # the cube still rests on the table


def test_grasp_yaw_aligns_the_fingers_with_cube_faces():
    for cube_yaw in np.linspace(-3, 3, 13):
        yaw = grasp_yaw(cube_yaw)
        assert -np.pi / 4 <= yaw <= np.pi / 4
        # The hand's y axis (the fingers' closing direction) is along a cube face normal.
        rot = gripper_rotation(yaw)
        finger_axis = rot @ np.array([np.sin(np.pi / 4), np.cos(np.pi / 4), 0.0])
        angle = np.arctan2(finger_axis[1], finger_axis[0]) - cube_yaw
        assert abs((angle + np.pi / 4) % (np.pi / 2) - np.pi / 4) < 1e-9


def test_unknown_task_and_conflicting_options_are_clear_errors(robot):
    with pytest.raises(ValueError, match="unknown task"):
        make_env("stack", seed=0)
    with pytest.raises(ValueError, match="cannot change"):
        make_env("reach", seed=0, robot=robot, image_size=(32, 32))


def test_goal_images_of_a_multi_view_camera_are_its_views_side_by_side(robot):
    _, task = make_env("grasp", seed=0, robot=robot, goal_camera="left+wrist")
    joined = task.goal_images()
    _, task = make_env("grasp", seed=0, robot=robot, goal_camera="wrist")
    wrist = task.goal_images()
    _, task = make_env("grasp", seed=0, robot=robot)
    left = task.goal_images()
    for both, one, other in zip(joined, left, wrist):
        np.testing.assert_array_equal(both, np.concatenate([one, other], axis=1))
