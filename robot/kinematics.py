"""Forward and inverse kinematics of a Franka arm from an MJCF model, in DROID's end-effector convention.

The end-effector frame is the flange (`panda_link8`, 0.107 m past joint 7, no gripper offset): the frame DROID's
`cartesian_position` reports. Models that have no `link8` body (e.g. MuJoCo Menagerie's Panda/FR3) get the flange as
a fixed offset from their `link7` body.

The model is only used for its kinematic tree: `ArmKinematics` keeps its own `MjData` and runs `mj_kinematics`, so it
works on a bare arm model and on a full simulation scene alike. One instance is not thread-safe (it reuses buffers);
give each thread its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vjepa_ac.data.conventions import use_headless_rendering

use_headless_rendering()  # before MuJoCo is first imported

# isort: split
import mujoco

from vjepa_ac.robot.interface import NUM_JOINTS
from vjepa_ac.robot.limits import PANDA, JointLimits

FLANGE_OFFSET_FROM_LINK7 = 0.107
"""Franka's flange sits 0.107 m along joint 7's axis (the last row of the modified-DH table)."""

DROID_HOME_Q = np.array([0.0, -np.pi / 5, 0.0, -4 * np.pi / 5, 0.0, 3 * np.pi / 5, 0.0])
"""DROID's reset pose (gripper pointing down in front of the robot)."""


def default_arm_mjcf() -> Path:
    """The project's Panda model (arm + hand, no scene), shipped with this package and used by the simulator too."""
    return Path(__file__).resolve().parent / "assets" / "panda.xml"


@dataclass(frozen=True)
class IKResult:
    q: np.ndarray
    """Joint angles [7] (inside the joint limits)."""
    converged: bool
    """True when both errors are within the requested tolerances."""
    pos_err: float
    """Remaining flange position error in metres."""
    rot_err: float
    """Remaining flange orientation error in radians."""
    iterations: int


def rotation_error(target_rot: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """Rotation vector [3] (base frame) that turns `rot` into `target_rot`: log(target_rot @ rot.T)."""
    delta = target_rot @ rot.T
    cos_angle = np.clip((np.trace(delta) - 1.0) / 2.0, -1.0, 1.0)
    angle = float(np.arccos(cos_angle))
    axis_scaled = np.array([delta[2, 1] - delta[1, 2], delta[0, 2] - delta[2, 0], delta[1, 0] - delta[0, 1]])
    if angle < 1e-9:
        return 0.5 * axis_scaled
    if np.pi - angle > 1e-6:
        return axis_scaled * (angle / (2.0 * np.sin(angle)))
    # Near a half turn the antisymmetric part vanishes; recover the axis from the symmetric part instead.
    sym = (delta + np.eye(3)) / 2.0
    axis = sym[:, int(np.argmax(np.diag(sym)))]
    return axis / np.linalg.norm(axis) * angle


def rotvec_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """Rotation matrix [3, 3] of a rotation vector [3] (Rodrigues' formula); the inverse of `rotation_error`."""
    rotvec = np.asarray(rotvec, dtype=np.float64)
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-12:
        return np.eye(3)
    k = rotvec / angle
    skew = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + np.sin(angle) * skew + (1.0 - np.cos(angle)) * (skew @ skew)


class ArmKinematics:
    """FK, Jacobian and damped-least-squares IK of the 7 arm joints of a Franka MJCF model."""

    def __init__(
        self,
        model: mujoco.MjModel | str | Path | None = None,
        *,
        flange_body: str | None = None,
        flange_offset: np.ndarray | None = None,
    ) -> None:
        """`model`: an `MjModel`, an MJCF path, or None for the project's Panda.

        `flange_body`/`flange_offset` override the flange detection (`*link8`, else `*link7` + 0.107 m along z).
        """
        if model is None:
            model = default_arm_mjcf()
        if not isinstance(model, mujoco.MjModel):
            path = Path(model)
            if not path.is_file():
                raise FileNotFoundError(f"MJCF model not found: {path}")
            model = mujoco.MjModel.from_xml_path(str(path))
        self.model = model
        self._data = mujoco.MjData(model)
        self.flange_body_id, default_offset = _find_flange(model, flange_body)
        offset = default_offset if flange_offset is None else np.asarray(flange_offset, dtype=np.float64)
        if offset.shape != (3,):
            raise ValueError(f"flange_offset must have shape (3,), got {offset.shape}")
        self.flange_offset = offset
        self.joint_ids = _arm_chain_joints(model, self.flange_body_id)
        self.qpos_adr = np.array([model.jnt_qposadr[j] for j in self.joint_ids])

    # -- forward kinematics --------------------------------------------------------------------------------------

    def _set_q(self, q: np.ndarray) -> None:
        q = np.asarray(q, dtype=np.float64)
        if q.shape != (NUM_JOINTS,):
            raise ValueError(f"q must have shape ({NUM_JOINTS},), got {q.shape}")
        if not np.all(np.isfinite(q)):
            raise ValueError(f"q has non-finite values: {q.tolist()}")
        self._data.qpos[self.qpos_adr] = q
        mujoco.mj_kinematics(self.model, self._data)

    def _flange_pose(self) -> tuple[np.ndarray, np.ndarray]:
        rot = self._data.xmat[self.flange_body_id].reshape(3, 3).copy()
        pos = self._data.xpos[self.flange_body_id] + rot @ self.flange_offset
        return pos, rot

    def _jacobian(self, pos: np.ndarray) -> np.ndarray:
        # Each arm joint is a hinge: linear part axis x (p - anchor), angular part the axis itself.
        axes = self._data.xaxis[self.joint_ids]
        anchors = self._data.xanchor[self.joint_ids]
        return np.concatenate([np.cross(axes, pos - anchors).T, axes.T], axis=0)

    def fk(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flange position [3] (m, base frame) and rotation matrix [3, 3] at joint angles `q` [7]."""
        self._set_q(q)
        return self._flange_pose()

    def jacobian(self, q: np.ndarray) -> np.ndarray:
        """Geometric Jacobian [6, 7] of the flange (rows: linear xyz, then angular xyz, base frame)."""
        self._set_q(q)
        pos, _ = self._flange_pose()
        return self._jacobian(pos)

    def droid_state(self, q: np.ndarray, gripper: float) -> np.ndarray:
        """DROID 7-D state: flange xyz, Euler "xyz", gripper (0 = open .. 1 = closed); the simulator's state.

        The angles come from `data.droid.poses` (computed in torch), bit for bit as the recorded data and the planner
        compute them; the bridge, which loads no torch, reports its pose with `robot.safety.droid_pose` instead."""
        from vjepa_ac.data.droid.poses import matrix_to_euler_xyz

        pos, rot = self.fk(q)
        return np.concatenate([pos, matrix_to_euler_xyz(rot), [float(gripper)]])

    # -- inverse kinematics --------------------------------------------------------------------------------------

    def ik(
        self,
        target_pos: np.ndarray,
        target_rot: np.ndarray,
        q_init: np.ndarray,
        *,
        limits: JointLimits = PANDA,
        rest_q: np.ndarray | None = None,
        pos_tol: float = 1e-4,
        rot_tol: float = 1e-3,
        max_iters: int = 100,
        damping: float = 0.01,
        nullspace_gain: float = 0.1,
        max_step: float = 0.3,
        limit_margin: float = 1e-3,
    ) -> IKResult:
        """Joint angles that put the flange at (`target_pos`, `target_rot`), starting from `q_init`.

        Damped least squares: dq = J^T (J J^T + damping^2 I)^-1 e, each iteration's step capped at `max_step` rad
        and the result clamped to `limits` (minus `limit_margin`). A null-space term pulls towards `rest_q`
        (DROID's home pose by default) so the redundant elbow stays in a familiar configuration. When the target is
        unreachable the result is the closest pose found, with `converged=False`.
        """
        target_pos = np.asarray(target_pos, dtype=np.float64)
        target_rot = np.asarray(target_rot, dtype=np.float64)
        if target_pos.shape != (3,) or target_rot.shape != (3, 3):
            raise ValueError(f"target must be pos (3,) and rot (3, 3), got {target_pos.shape}, {target_rot.shape}")
        if not (np.all(np.isfinite(target_pos)) and np.all(np.isfinite(target_rot))):
            raise ValueError("IK target has non-finite values")
        rest = DROID_HOME_Q if rest_q is None else np.asarray(rest_q, dtype=np.float64)
        q = limits.clip_positions(np.asarray(q_init, dtype=np.float64), limit_margin)
        damping_sq = np.eye(6) * damping**2

        best: IKResult | None = None
        for iteration in range(max_iters + 1):
            self._set_q(q)
            pos, rot = self._flange_pose()
            err = np.concatenate([target_pos - pos, rotation_error(target_rot, rot)])
            pos_err, rot_err = float(np.linalg.norm(err[:3])), float(np.linalg.norm(err[3:]))
            converged = pos_err <= pos_tol and rot_err <= rot_tol
            if best is None or converged or pos_err + 0.1 * rot_err < best.pos_err + 0.1 * best.rot_err:
                best = IKResult(q.copy(), converged, pos_err, rot_err, iteration)
            if converged or iteration == max_iters:
                break
            jac = self._jacobian(pos)
            dq = jac.T @ np.linalg.solve(jac @ jac.T + damping_sq, err)
            # The exact projector keeps the rest-pose pull out of the task space; a damped one would leak into it
            # and stall convergence.
            nullspace = np.eye(NUM_JOINTS) - np.linalg.pinv(jac, rcond=1e-4) @ jac
            dq += nullspace @ (nullspace_gain * (rest - q))
            largest = float(np.max(np.abs(dq)))
            if largest > max_step:
                dq *= max_step / largest
            q = limits.clip_positions(q + dq, limit_margin)
        assert best is not None
        return best


def _find_flange(model: mujoco.MjModel, flange_body: str | None) -> tuple[int, np.ndarray]:
    if flange_body is not None:
        body_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, flange_body)
        if body_id < 0:
            raise ValueError(f"flange body {flange_body!r} is not in the model")
        return body_id, np.zeros(3)
    names = [model.body(i).name for i in range(model.nbody)]
    for suffix, offset in (("link8", np.zeros(3)), ("link7", np.array([0.0, 0.0, FLANGE_OFFSET_FROM_LINK7]))):
        matches = [i for i, name in enumerate(names) if name.endswith(suffix)]
        if len(matches) == 1:
            return matches[0], offset
    raise ValueError("cannot find the flange: the model has no unique '*link8' or '*link7' body; pass flange_body")


def _arm_chain_joints(model: mujoco.MjModel, body_id: int) -> np.ndarray:
    """The hinge joints on the path from the world to `body_id`, base first."""
    joints: list[int] = []
    while body_id > 0:
        start, count = model.body_jntadr[body_id], model.body_jntnum[body_id]
        for j in range(start + count - 1, start - 1, -1):
            if model.jnt_type[j] != mujoco.mjtJoint.mjJNT_HINGE:
                raise ValueError(f"joint {model.joint(j).name!r} on the arm chain is not a hinge")
            joints.append(j)
        body_id = model.body_parentid[body_id]
    if len(joints) != NUM_JOINTS:
        raise ValueError(f"expected {NUM_JOINTS} hinge joints between the base and the flange, found {len(joints)}")
    return np.array(joints[::-1])
