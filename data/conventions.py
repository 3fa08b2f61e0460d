"""The conventions every layer shares (data, world model, planner, robot, sim), in one small module at the bottom that
imports NumPy alone, so that the robot-side bridge process can use it without torch or h5py.

- **DROID state** (`STATE_DIM` = 7): end-effector (flange) position xyz in metres in the robot base frame, orientation
  as scipy Euler "xyz" angles (extrinsic: R = Rz(c) @ Ry(b) @ Rx(a)) in radians, and the gripper position
  (0 = open, 1 = closed).
- **V-JEPA 2-AC action** (`ACTION_DIM` = 7): the pose difference between consecutive states: Δxyz in the base frame,
  the Euler "xyz" angles of R_{t+1} @ R_t^T (rotation delta left-multiplied, base frame), and Δgripper. The batched
  conversions (`states_to_actions`, `apply_actions`, ...) are in `data.droid.poses`.
- **Euler angles** <-> rotation matrices: `euler_xyz_to_matrix`, `matrix_to_euler_xyz`, for NumPy arrays (computed
  with NumPy: the robot-side bridge) or torch tensors (computed with torch, on their device; torch is never imported
  here). `data.droid.poses` computes the same formulas in torch for NumPy input too, so that the data, the simulator
  and the planner agree to the last bit with the batched tensor code; the two differ by rounding only.
- **Camera views**: a camera name may join several roles with "+" ("left+wrist"); such a frame is the roles' frames
  (all the same size) side by side, left to right, and the world model encodes each panel on its own and lays the
  token grids side by side (`camera_views`, `join_views`).
- **Headless rendering**: `use_headless_rendering` picks EGL for MuJoCo's offscreen rendering on a Linux machine
  without a display, before MuJoCo is first imported.
"""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace
from typing import Any

import numpy as np

STATE_DIM = 7
ACTION_DIM = 7
# Below this |cos(pitch)| the Euler decomposition is at gimbal lock; like scipy, we then set the third angle to 0.
_GIMBAL_EPS = 1e-7

_NUMPY_OPS = SimpleNamespace(
    cos=np.cos, sin=np.sin, sqrt=np.sqrt, atan2=np.arctan2, where=np.where, zeros_like=np.zeros_like,
    stack=lambda arrays, axis: np.stack(arrays, axis=axis), unbind=lambda array: tuple(np.moveaxis(array, -1, 0)),
)


def _array_ops(x: Any) -> tuple[Any, SimpleNamespace]:
    """(x as float64 NumPy array or as the given tensor, the element-wise operations of its library)."""
    if isinstance(x, np.ndarray):
        return np.asarray(x, dtype=np.float64), _NUMPY_OPS
    torch = sys.modules.get("torch")  # a tensor can only exist once torch is imported
    if torch is None or not torch.is_tensor(x):
        raise TypeError(f"expected a torch.Tensor or numpy.ndarray, got {type(x).__name__}")
    ops = SimpleNamespace(
        cos=torch.cos, sin=torch.sin, sqrt=torch.sqrt, atan2=torch.atan2, where=torch.where,
        zeros_like=torch.zeros_like, stack=lambda tensors, axis: torch.stack(tensors, dim=axis),
        unbind=lambda tensor: tensor.unbind(-1),
    )
    return x, ops


def euler_xyz_to_matrix(euler):
    """Rotation matrices [..., 3, 3] from scipy-style extrinsic Euler "xyz" angles [..., 3]."""
    e, ops = _array_ops(euler)
    if e.ndim == 0 or e.shape[-1] != 3:
        raise ValueError(f"euler must have last dimension 3, got shape {tuple(e.shape)}")
    ca, cb, cc = ops.unbind(ops.cos(e))
    sa, sb, sc = ops.unbind(ops.sin(e))
    rows = (
        (cc * cb, cc * sb * sa - sc * ca, cc * sb * ca + sc * sa),
        (sc * cb, sc * sb * sa + cc * ca, sc * sb * ca - cc * sa),
        (-sb, cb * sa, cb * ca),
    )
    return ops.stack([ops.stack(list(row), -1) for row in rows], -2)


def matrix_to_euler_xyz(matrix):
    """Extrinsic Euler "xyz" angles [..., 3] of rotation matrices [..., 3, 3], in scipy's ranges."""
    m, ops = _array_ops(matrix)
    if m.ndim < 2 or tuple(m.shape[-2:]) != (3, 3):
        raise ValueError(f"matrix must have shape [..., 3, 3], got {tuple(m.shape)}")
    cos_b = ops.sqrt(m[..., 0, 0] ** 2 + m[..., 1, 0] ** 2)
    b = ops.atan2(-m[..., 2, 0], cos_b)
    regular = cos_b > _GIMBAL_EPS
    a = ops.where(regular, ops.atan2(m[..., 2, 1], m[..., 2, 2]), ops.atan2(-m[..., 1, 2], m[..., 1, 1]))
    c = ops.where(regular, ops.atan2(m[..., 1, 0], m[..., 0, 0]), ops.zeros_like(b))
    return ops.stack([a, b, c], -1)


def use_headless_rendering() -> None:
    """Pick EGL for MuJoCo's offscreen rendering on a Linux machine without a display, unless `MUJOCO_GL` is set.

    Must run before MuJoCo is first imported; `sim` and `robot.kinematics` call it on import."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("MUJOCO_GL", "egl")


def camera_views(camera: str) -> tuple[str, ...]:
    """The camera roles a camera name joins with "+" ("left+wrist" -> ("left", "wrist")), checked non-empty and
    distinct."""
    views = tuple(part.strip() for part in str(camera).split("+"))
    if not all(views) or len(set(views)) != len(views):
        raise ValueError(f"camera {camera!r}: join distinct camera roles with '+', e.g. 'left+wrist'")
    return views


def join_views(frames: list[np.ndarray], camera: str = "") -> np.ndarray:
    """Frames of several views ([..., H, W, 3] each, same shape) side by side along the width: one multi-view frame."""
    if len(frames) == 1:
        return frames[0]
    shapes = {tuple(np.shape(frame)) for frame in frames}
    if len(shapes) != 1:
        raise ValueError(f"camera {camera!r}: its views must have frames of one size to be joined, got "
                         f"{sorted(shapes)}")
    return np.concatenate(frames, axis=-2)
