"""Shared simulator fixtures: one scene per test module (building and connecting takes a fraction of a second)."""

import pytest

from vjepa_ac.sim.robot import SimConfig, SimRobot


@pytest.fixture(scope="module")
def robot():
    robot = SimRobot(SimConfig(cameras=("left", "wrist"), image_size=(64, 96)))
    robot.connect()
    yield robot
    robot.close()


@pytest.fixture
def fresh(robot):
    """The module's robot, reset to DROID's home pose and connected."""
    robot.connect()
    robot.reset()
    return robot
