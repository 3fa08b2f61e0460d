"""Planner test fixtures: a synthetic world whose latent is a fixed linear image of the imagined end-effector state,
so the energy minimum (the action that reaches the goal state) is known exactly."""

from __future__ import annotations

import pytest
import torch

from vjepa_ac.data.droid.poses import rollout_states


class LinearLatentWorld:
    """Rollout whose latent of a state s is reshape(W @ s[coords]), as [N, D]; by default it sees position and gripper
    (coords 0, 1, 2, 6), not the orientation."""

    def __init__(self, start_state: torch.Tensor, tokens: int = 4, dim: int = 8, seed: int = 0,
                 coords: tuple[int, ...] = (0, 1, 2, 6)) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.start_state = start_state.double()
        self.coords = list(coords)
        self.weight = torch.randn(tokens * dim, len(coords), generator=gen, dtype=torch.float64)
        self.tokens, self.dim = tokens, dim
        self.calls = 0

    def latent(self, states: torch.Tensor) -> torch.Tensor:
        coords = states[..., self.coords]
        flat = coords @ self.weight.T
        return flat.reshape(*states.shape[:-1], self.tokens, self.dim).float()

    def __call__(self, actions: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        start = self.start_state.expand(actions.shape[0], 7)
        return self.latent(rollout_states(start, actions.double()))


@pytest.fixture
def start_state() -> torch.Tensor:
    return torch.tensor([0.5, 0.0, 0.3, 3.1, 0.0, 0.0, 0.2], dtype=torch.float64)


@pytest.fixture
def world(start_state: torch.Tensor) -> LinearLatentWorld:
    return LinearLatentWorld(start_state)


class PointRobot:
    """A stand-in `Robot` for loop tests (the MuJoCo arm is exercised in test_sim_loop.py): the state follows the
    actions exactly and the camera shows a bright square at the end effector's (x, y)."""

    camera_roles = ("left",)
    control_hz = 15.0

    def __init__(self, state=None, *, size=(48, 64), reject=False, nan_after: int | None = None) -> None:
        import numpy as np

        self.state = np.array(state if state is not None else [0.5, 0.0, 0.3, 3.1, 0.0, 0.0, 0.0], dtype=np.float64)
        self.size, self.reject, self.nan_after = size, reject, nan_after
        self.sent: list = []
        self.holds = 0

    def image_at(self, state):
        import numpy as np

        h, w = self.size
        image = np.full((h, w, 3), 40, dtype=np.uint8)
        row = int(np.clip((state[0] - 0.3) / 0.4 * h, 0, h - 8))
        col = int(np.clip((state[1] + 0.3) / 0.6 * w, 0, w - 8))
        image[row : row + 8, col : col + 8] = (250, 200, 50)
        return image

    def connect(self) -> None:
        pass

    def get_observation(self):
        import numpy as np

        from vjepa_ac.robot.interface import Observation

        state = self.state.copy()
        if self.nan_after is not None and len(self.sent) >= self.nan_after:
            state[0] = np.nan
        return Observation(
            images={"left": self.image_at(self.state)},
            state=state,
            joint_positions=np.zeros(7),
            gripper_position=float(self.state[6]),
            timestamp=0.0,
        )

    def send_action(self, action):
        from vjepa_ac.data.droid.poses import apply_actions
        from vjepa_ac.robot.interface import ActionResult, ActionStatus, validate_action

        action = validate_action(action)
        self.sent.append(action)
        if self.reject:
            return ActionResult(ActionStatus.REJECTED, None, "test robot refuses everything")
        self.state = apply_actions(self.state, action)
        return ActionResult(ActionStatus.ACCEPTED, action)

    def hold(self) -> None:
        self.holds += 1

    def stop(self) -> None:
        pass


@pytest.fixture(scope="session")
def tiny_world_model():
    from vjepa_ac.worldmodel import WorldModel, build_encoder, build_predictor

    torch.manual_seed(0)
    return WorldModel(encoder=build_encoder("vit_tiny").eval(), predictor=build_predictor("vit_ac_tiny").eval())
