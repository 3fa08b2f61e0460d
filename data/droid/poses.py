"""Batched DROID pose conversions in torch: actions from consecutive states and back.

The convention itself (state and action layout, Euler "xyz" angles, `STATE_DIM` / `ACTION_DIM`) is stated and
implemented in `data.conventions`, which imports no torch; this module computes its Euler conversions in torch for
NumPy input too (as the batched code does), which is what the data, the simulator and the planner use. An action is
the V-JEPA 2-AC pose difference between consecutive states (`states_to_actions`); `apply_actions` is its inverse and
is what the planner, the simulator and the recorder use to turn an action into a target.

Every function takes torch tensors or NumPy arrays with any leading batch shape and returns the same kind.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

from vjepa_ac.data import conventions
from vjepa_ac.data.conventions import ACTION_DIM, STATE_DIM

ArrayT = TypeVar("ArrayT", torch.Tensor, np.ndarray)


def _to_tensor(x: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, bool]:
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.asarray(x, dtype=np.float64)), True
    if not torch.is_tensor(x):
        raise TypeError(f"expected a torch.Tensor or numpy.ndarray, got {type(x).__name__}")
    return x, False


def _back(x: torch.Tensor, was_numpy: bool):
    return x.numpy() if was_numpy else x


def _check_last_dim(x: torch.Tensor, size: int, name: str) -> None:
    if x.ndim == 0 or x.shape[-1] != size:
        raise ValueError(f"{name} must have last dimension {size}, got shape {tuple(x.shape)}")


def euler_xyz_to_matrix(euler: ArrayT) -> ArrayT:
    """Rotation matrices [..., 3, 3] from scipy-style extrinsic Euler "xyz" angles [..., 3] (`data.conventions`),
    computed in torch also for NumPy input."""
    e, was_numpy = _to_tensor(euler)
    return _back(conventions.euler_xyz_to_matrix(e), was_numpy)


def matrix_to_euler_xyz(matrix: ArrayT) -> ArrayT:
    """Extrinsic Euler "xyz" angles [..., 3] of rotation matrices [..., 3, 3], in scipy's ranges (`data.conventions`),
    computed in torch also for NumPy input."""
    m, was_numpy = _to_tensor(matrix)
    return _back(conventions.matrix_to_euler_xyz(m), was_numpy)


def states_to_actions(states: ArrayT) -> ArrayT:
    """V-JEPA 2-AC actions [..., T-1, 7] from consecutive DROID states [..., T, 7]."""
    s, was_numpy = _to_tensor(states)
    _check_last_dim(s, STATE_DIM, "states")
    if s.ndim < 2 or s.shape[-2] < 2:
        raise ValueError(f"states need at least 2 time steps along dim -2, got shape {tuple(s.shape)}")
    rot = euler_xyz_to_matrix(s[..., 3:6])
    delta_rot = rot[..., 1:, :, :] @ rot[..., :-1, :, :].transpose(-1, -2)
    actions = torch.cat(
        [s[..., 1:, :3] - s[..., :-1, :3], matrix_to_euler_xyz(delta_rot), s[..., 1:, 6:] - s[..., :-1, 6:]], dim=-1
    )
    return _back(actions, was_numpy)


def apply_actions(states: ArrayT, actions: ArrayT, *, clip_gripper: bool = True) -> ArrayT:
    """Next states [..., 7] from states [..., 7] and actions [..., 7] (the inverse of `states_to_actions`).

    xyz' = xyz + Δxyz, R' = R_Δ @ R, gripper' = gripper + Δgripper clipped to [0, 1] unless `clip_gripper` is False.
    """
    s, was_numpy = _to_tensor(states)
    a, _ = _to_tensor(actions)
    _check_last_dim(s, STATE_DIM, "states")
    _check_last_dim(a, ACTION_DIM, "actions")
    a = a.to(dtype=s.dtype, device=s.device)
    s, a = torch.broadcast_tensors(s, a)
    rot = euler_xyz_to_matrix(a[..., 3:6]) @ euler_xyz_to_matrix(s[..., 3:6])
    gripper = s[..., 6:] + a[..., 6:]
    if clip_gripper:
        gripper = gripper.clamp(0.0, 1.0)
    nxt = torch.cat([s[..., :3] + a[..., :3], matrix_to_euler_xyz(rot), gripper], dim=-1)
    return _back(nxt, was_numpy)


def rollout_states(state: ArrayT, actions: ArrayT, *, clip_gripper: bool = True) -> ArrayT:
    """States [..., H, 7] reached by applying actions [..., H, 7] one after another from state [..., 7]."""
    s, was_numpy = _to_tensor(state)
    a, _ = _to_tensor(actions)
    if a.ndim < 2:
        raise ValueError(f"actions must have shape [..., H, 7], got {tuple(a.shape)}")
    out = []
    for step in range(a.shape[-2]):
        s = apply_actions(s, a[..., step, :], clip_gripper=clip_gripper)
        out.append(s)
    return _back(torch.stack(out, dim=-2), was_numpy)


def states_to_camera_frame(states: ArrayT, extrinsics: ArrayT) -> ArrayT:
    """States [..., 7] re-expressed in the frame of a camera whose base-frame pose is `extrinsics` [..., 6].

    The pose becomes T_cam^-1 @ T_ee (xyz' = R_cᵀ (xyz - t_c), R' = R_cᵀ R); the gripper value is unchanged. This is
    the reference loader's optional `camera_frame` mode.
    """
    s, was_numpy = _to_tensor(states)
    e, _ = _to_tensor(extrinsics)
    _check_last_dim(s, STATE_DIM, "states")
    _check_last_dim(e, 6, "extrinsics")
    e = e.to(dtype=s.dtype, device=s.device)
    s, e = torch.broadcast_tensors(s, torch.cat([e, torch.zeros_like(e[..., :1])], dim=-1))
    cam_rot_t = euler_xyz_to_matrix(e[..., 3:6]).transpose(-1, -2)
    xyz = (cam_rot_t @ (s[..., :3] - e[..., :3]).unsqueeze(-1)).squeeze(-1)
    rot = matrix_to_euler_xyz(cam_rot_t @ euler_xyz_to_matrix(s[..., 3:6]))
    return _back(torch.cat([xyz, rot, s[..., 6:]], dim=-1), was_numpy)
