"""The planner's imagined states follow the simulator's execution of DROID actions: with a world whose latent is the
end-effector state itself, receding-horizon CEM drives the MuJoCo Panda to the reach task's goal pose."""

import numpy as np
import torch

from vjepa_ac.planner.cem import CEMConfig, CEMPlanner
from vjepa_ac.planner.objectives import GoalObjective
from vjepa_ac.sim import make_env

from .conftest import LinearLatentWorld


def test_cem_in_closed_loop_reaches_the_sim_goal():
    robot, task = make_env("reach", seed=3)
    try:
        goal_state = torch.from_numpy(task.goal_states()[-1])
        planner = CEMPlanner(CEMConfig(samples=100, iterations=6, topk=10))
        for step in range(25):
            state = torch.from_numpy(robot.get_observation().state)
            world = LinearLatentWorld(state)
            result = planner.plan(world, GoalObjective(world.latent(goal_state)), seed=step)
            outcome = robot.send_action(result.first_action)
            assert outcome.ok, outcome.reason
            if np.linalg.norm(robot.get_observation().state[:3] - goal_state[:3].numpy()) < 0.01:
                break
        distance = np.linalg.norm(robot.get_observation().state[:3] - goal_state[:3].numpy())
        assert distance < 0.01, f"flange still {distance:.3f} m from the goal after {step + 1} steps"
        assert task.success()
    finally:
        robot.close()
