"""The action frame: the rotation about the vertical between the robot base frame and the frame in which a world model
reads actions.

A world model learns actions in the frame its training camera placement implies (V-JEPA 2-AC paper, appendix on
camera position sensitivity). Seen from a camera orbited by yaw θ about the base's vertical axis, the arm at
base-frame state s looks like the arm at Rz(-θ) s seen from the training camera, and executing the base-frame action
a looks like the action Rz(-θ) a. With `ActionFrame(yaw=θ)` the planner therefore plans in the model's frame: the
states (and context actions) it feeds the world model go through `to_model_*`, and the actions it sends to the robot
go back through `to_base_*` (`planner.mpc.LatentPlanner`). `vjepa-ac calibrate` (`planner.calibration`) estimates θ.

Conventions (DROID states and actions, `data.droid.poses`): positions rotate about the base origin, xyz' = Rz xyz;
orientations R' = Rz R; rotation deltas (left-multiplied, base frame) R_Δ' = Rz R_Δ Rzᵀ; the gripper is unchanged.
A rotation keeps |Δxyz|, so an action inside the robot's translation limit stays inside it; the planner's L1 / box
bound on Δxyz holds in the model frame (the same step measured in the base frame can be up to √2 longer in L1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from vjepa_ac.data.droid.poses import euler_xyz_to_matrix, matrix_to_euler_xyz

ArrayT = TypeVar("ArrayT", torch.Tensor, np.ndarray)


def yaw_matrices(yaw_degrees: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [..., 3, 3] about z by angles [...] in degrees (counter-clockwise seen from above)."""
    radians = torch.deg2rad(yaw_degrees)
    c, s = torch.cos(radians), torch.sin(radians)
    zero, one = torch.zeros_like(c), torch.ones_like(c)
    rows = ((c, -s, zero), (s, c, zero), (zero, zero, one))
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)


def _as_tensors(values: ArrayT, yaw: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """(values as a tensor, yaw rotations broadcast to values' batch shape [..., 3, 3], values were NumPy)."""
    was_numpy = isinstance(values, np.ndarray)
    x = torch.from_numpy(np.asarray(values, dtype=np.float64)) if was_numpy else values
    if x.ndim == 0 or x.shape[-1] != 7:
        raise ValueError(f"expected DROID states or actions [..., 7], got shape {tuple(x.shape)}")
    yaw = torch.as_tensor(yaw, dtype=torch.float64)
    rotation = yaw_matrices(yaw).to(x.dtype)
    batch = torch.broadcast_shapes(x.shape[:-1], yaw.shape)
    return x.expand(*batch, 7), rotation.expand(*batch, 3, 3), was_numpy


def rotate_states(states: ArrayT, yaw: float | torch.Tensor) -> ArrayT:
    """States [..., 7] with their poses rotated by `yaw` degrees about the base's z axis (`yaw` a number or a tensor
    broadcast against the batch dimensions); the gripper is kept."""
    x, rotation, was_numpy = _as_tensors(states, yaw)
    xyz = (rotation @ x[..., :3].unsqueeze(-1)).squeeze(-1)
    euler = matrix_to_euler_xyz(rotation @ euler_xyz_to_matrix(x[..., 3:6]))
    out = torch.cat([xyz, euler, x[..., 6:]], dim=-1)
    return out.numpy() if was_numpy else out


def rotate_actions(actions: ArrayT, yaw: float | torch.Tensor) -> ArrayT:
    """Actions [..., 7] rotated by `yaw` degrees about z: Δxyz rotated, rotation delta conjugated, Δgripper kept."""
    x, rotation, was_numpy = _as_tensors(actions, yaw)
    xyz = (rotation @ x[..., :3].unsqueeze(-1)).squeeze(-1)
    euler = matrix_to_euler_xyz(rotation @ euler_xyz_to_matrix(x[..., 3:6]) @ rotation.transpose(-1, -2))
    out = torch.cat([xyz, euler, x[..., 6:]], dim=-1)
    return out.numpy() if was_numpy else out


def wrap_degrees(angle: float) -> float:
    """`angle` in [-180, 180)."""
    return (angle + 180.0) % 360.0 - 180.0


@dataclass(frozen=True)
class ActionFrame:
    """The world model's action frame relative to the robot base frame (see the module docstring)."""

    yaw: float = 0.0
    """Degrees the model's frame is turned about the base's vertical axis, counter-clockwise seen from above; for a
    sim camera orbited by θ (`--camera-yaw θ`) the right value is about θ. 0 = the frames coincide."""

    def __post_init__(self) -> None:
        if not math.isfinite(self.yaw):
            raise ValueError(f"action-frame yaw must be a finite number of degrees, got {self.yaw}")

    @property
    def is_identity(self) -> bool:
        return wrap_degrees(self.yaw) == 0.0

    def to_model_states(self, states: ArrayT) -> ArrayT:
        """Base-frame states [..., 7] as the world model should see them."""
        return states if self.is_identity else rotate_states(states, -self.yaw)

    def to_model_actions(self, actions: ArrayT) -> ArrayT:
        """Base-frame actions [..., 7] as the world model should see them."""
        return actions if self.is_identity else rotate_actions(actions, -self.yaw)

    def to_base_actions(self, actions: ArrayT) -> ArrayT:
        """Model-frame actions [..., 7] (what the planner found) as the robot must execute them."""
        return actions if self.is_identity else rotate_actions(actions, self.yaw)

    def to_base_states(self, states: ArrayT) -> ArrayT:
        """Model-frame states [..., 7] back in the base frame."""
        return states if self.is_identity else rotate_states(states, self.yaw)
