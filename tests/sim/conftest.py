"""Shared simulator fixtures: one scene per test module (building and connecting takes a fraction of a second), and
the digest the bit-for-bit tests compare."""

import hashlib

import numpy as np
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


def digest(array: np.ndarray, decimals: int | None = None) -> str:
    """Short digest of an array; with `decimals`, of the array rounded first (for physics state, whose last bits
    differ between CPUs while rendered images and anything above 1e-6 do not)."""
    if decimals is not None:
        array = np.round(array, decimals)
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]
