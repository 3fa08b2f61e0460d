"""`SimRobot`: the MuJoCo tabletop behind the same `Robot` interface as the real Franka bridge.

One `send_action` is one DROID control period (1/15 s): the delta action is checked and clamped, turned into a flange
target with `data.droid.poses.apply_actions` on the measured state, solved for joint angles with damped least
squares, clamped to the joint position and velocity limits, and tracked by the arm's position servos with the
targets interpolated over the period's physics steps (like a bridge interpolating set-points for the real arm).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mujoco
import numpy as np

from vjepa_ac.data.droid.poses import apply_actions, euler_xyz_to_matrix, matrix_to_euler_xyz
from vjepa_ac.robot.interface import ActionResult, ActionStatus, Observation, Robot, validate_action
from vjepa_ac.robot.kinematics import DROID_HOME_Q, ArmKinematics, rotation_error, rotvec_to_matrix
from vjepa_ac.robot.limits import DEFAULT_ACTION_LIMITS, ActionLimits
from vjepa_ac.sim.randomization import DomainRandomization, SceneVariation, variation_rng
from vjepa_ac.sim.scene import CAMERA_ROLES, SceneConfig, build_scene, camera_extrinsics


@dataclass(frozen=True)
class SimConfig:
    scene: SceneConfig = field(default_factory=SceneConfig)
    cameras: tuple[str, ...] = CAMERA_ROLES
    """Camera roles rendered into every observation ("left" is the world model's default view)."""
    image_size: tuple[int, int] = (180, 320)
    """(height, width) of observation images; DROID's 16:9 aspect (RLDS stores 180x320, raw video 720x1280)."""
    fast_render: bool = True
    """No multisampling, shadows or reflections: 14-40x faster offscreen rendering on a CPU (bench/sim.py)."""
    action_limits: ActionLimits = DEFAULT_ACTION_LIMITS
    randomize_appearance: bool = False
    """Domain randomisation: every `reset` with a seed rebuilds the scene with a new variation drawn from
    `randomization` (objects, distractors, textures, lights, camera poses). Off: the fixed evaluation scene."""
    randomization: DomainRandomization = field(default_factory=DomainRandomization)
    """Ranges the variations are drawn from (used only with `randomize_appearance`)."""
    camera_yaw: float = 0.0
    """Degrees the exterior cameras orbit the robot base's vertical axis (counter-clockwise seen from above), keeping
    height and aim relative to the base (`sim.scene.exterior_camera_placement`); 0 = the default DROID-like placement.
    Models trained at 0 read actions in a frame turned by this angle: see `vjepa-ac calibrate`."""
    velocity_margin: float = 0.9
    """Fraction of the joint velocity limits that commanded steps may use (servo overshoot stays inside them)."""
    ik_warn_distance: float = 0.005
    """Report an action as clamped when IK ends farther than this (m) from its target."""


_ABSURD_ACTION = 100.0
"""No action component is meaningful beyond this (m or rad per 1/15 s); larger values are cut before clamping."""


class SimulationUnstable(RuntimeError):
    """The physics produced non-finite values; the state was rolled back."""


class SimRobot(Robot):
    """MuJoCo Franka Panda on a table, controlled at 15 Hz with DROID delta actions or joint targets."""

    control_hz = 15.0

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        unknown = set(self.config.cameras) - set(CAMERA_ROLES)
        if unknown:
            raise ValueError(f"unknown camera roles {sorted(unknown)}; choose from {CAMERA_ROLES}")
        if not np.isfinite(self.config.camera_yaw):
            raise ValueError(f"camera_yaw must be a finite number of degrees, got {self.config.camera_yaw}")
        self.camera_roles = tuple(self.config.cameras)
        self.control_hz = self.config.scene.control_hz
        self.model: mujoco.MjModel | None = None
        self.data: mujoco.MjData | None = None
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self.variation: SceneVariation | None = None
        """The randomised scene in use, or None for the fixed scene."""
        self.object_names: tuple[str, ...] = ()
        """Free and mocap bodies of the scene (cube, mug, target mat, distractors), see `object_poses`."""
        self._stopped = True

    # -- lifecycle -----------------------------------------------------------------------------------------------

    def connect(self) -> None:
        if self.model is None:
            self.load_scene(None)
            self.reset()
        self._stopped = False

    def load_scene(self, variation: SceneVariation | None) -> None:
        """(Re)build the scene: the fixed one, or a randomised `variation` (e.g. one recorded with an episode).
        The arm is left at rest at DROID's home pose; call `reset` to place it elsewhere."""
        self.model, self.info = build_scene(self.config.scene, variation, camera_yaw=self.config.camera_yaw)
        self.variation = variation
        self.data = mujoco.MjData(self.model)
        self.kinematics = ArmKinematics(self.model)
        self._arm_qpos_adr = self.kinematics.qpos_adr
        self._arm_dof_adr = np.array([self.model.jnt_dofadr[j] for j in self.kinematics.joint_ids])
        self._substeps = max(1, round(1.0 / (self.control_hz * self.model.opt.timestep)))
        servos = self.info.arm_actuators
        self._servo_lead = -self.model.actuator_biasprm[servos, 2] / self.model.actuator_gainprm[servos, 0]
        if self.config.fast_render:
            self.model.vis.quality.offsamples = 0
        # Renderers hold the old model's textures; the next `render` makes new ones.
        self._close_renderers()
        # Objects are the bodies that are not part of the robot: free bodies and mocap bodies.
        self.object_names = tuple(
            self.model.body(b).name for b in range(1, self.model.nbody)
            if self.model.body_mocapid[b] >= 0
            or (self.model.body_jntnum[b] == 1
                and self.model.jnt_type[self.model.body_jntadr[b]] == mujoco.mjtJoint.mjJNT_FREE)
        )

    def reset(self, q: np.ndarray | None = None, gripper: float = 0.0, *, seed: int | None = None) -> None:
        """Put the arm at `q` (DROID's home pose by default) at rest with the gripper at `gripper` (0..1).

        With domain randomisation on, a `seed` first rebuilds the scene with the variation that seed draws."""
        self._require_model()
        q = DROID_HOME_Q if q is None else np.asarray(q, dtype=np.float64)
        if not self.info.limits.within(q):
            raise ValueError(f"reset pose outside the joint limits: {q.tolist()}")
        if seed is not None and self.config.randomize_appearance:
            self.load_scene(self.config.randomization.sample(variation_rng(seed)))
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[self._arm_qpos_adr] = q
        self.data.qpos[self.info.finger_qpos_adr] = self.info.finger_open_qpos * (1.0 - float(np.clip(gripper, 0, 1)))
        self.data.ctrl[self.info.arm_actuators] = q
        # The joint angles the servos track (their set-point minus its velocity lead).
        self._reference = q.copy()
        # Joint target of the latest action after clamping: what DROID records as `action/joint_position`.
        self.last_joint_target = q.copy()
        self._set_gripper_ctrl(gripper)
        mujoco.mj_forward(self.model, self.data)

    def hold(self) -> None:
        """Servo to the measured joint angles; the gripper keeps its command."""
        self._require_model()
        self._reference = self.joint_positions
        self.data.ctrl[self.info.arm_actuators] = self._reference

    def stop(self) -> None:
        if self.model is not None:
            self.hold()
        self._stopped = True

    def close(self) -> None:
        self.stop()
        self._close_renderers()

    def _close_renderers(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()

    # -- state ---------------------------------------------------------------------------------------------------

    @property
    def joint_positions(self) -> np.ndarray:
        return self.data.qpos[self._arm_qpos_adr].copy()

    @property
    def joint_velocities(self) -> np.ndarray:
        return self.data.qvel[self._arm_dof_adr].copy()

    @property
    def gripper_position(self) -> float:
        """Measured closure, 0 = open .. 1 = closed, from the finger joints."""
        if len(self.info.finger_qpos_adr) == 0:
            return 0.0
        opening = self.data.qpos[self.info.finger_qpos_adr] / self.info.finger_open_qpos
        return float(np.clip(1.0 - opening.mean(), 0.0, 1.0))

    def droid_state(self) -> np.ndarray:
        """The measured DROID 7-D state (flange pose + gripper)."""
        return self.kinematics.droid_state(self.joint_positions, self.gripper_position)

    def camera_extrinsics(self, role: str) -> np.ndarray:
        """Pose [6] of a camera in the base frame (xyz + Euler "xyz", optical frame)."""
        return camera_extrinsics(self.model, self.data, role)

    def render(
        self, roles: tuple[str, ...] | None = None, size: tuple[int, int] | None = None
    ) -> dict[str, np.ndarray]:
        """RGB images [H, W, 3] uint8 of the current state from each camera role."""
        self._require_model()
        height, width = size or self.config.image_size
        renderer = self._renderers.get((height, width))
        if renderer is None:
            renderer = mujoco.Renderer(self.model, height=height, width=width)
            if self.config.fast_render:
                renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
                renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
            self._renderers[(height, width)] = renderer
        images = {}
        for role in roles or self.camera_roles:
            renderer.update_scene(self.data, camera=role)
            images[role] = renderer.render().copy()
        return images

    def get_observation(self) -> Observation:
        self._require_model()
        images = self.render()
        now = float(self.data.time)
        return Observation(
            images=images,
            state=self.droid_state(),
            joint_positions=self.joint_positions,
            gripper_position=self.gripper_position,
            timestamp=now,
            image_timestamps={role: now for role in images},
        )

    # -- control -------------------------------------------------------------------------------------------------

    def send_action(self, action: np.ndarray) -> ActionResult:
        """One DROID delta action [7]; see the module docstring. Never raises on bad input: it rejects it."""
        if self._stopped or self.model is None:
            return ActionResult(ActionStatus.REJECTED, None, "robot is stopped; call connect() first")
        try:
            action = validate_action(action)
        except ValueError as exc:
            self.hold()
            return ActionResult(ActionStatus.REJECTED, None, str(exc))
        action, reasons = clamp_action(action, self.config.action_limits)

        state = self.droid_state()
        target = apply_actions(state, action)
        limits = self.config.action_limits
        clipped_pos = np.clip(target[:3], limits.workspace_min, limits.workspace_max)
        if not np.allclose(clipped_pos, target[:3]):
            reasons.append(f"target position clipped to the workspace box: {np.round(clipped_pos, 3).tolist()}")
            target[:3] = clipped_pos
            action[:3] = clipped_pos - state[:3]

        ik = self.kinematics.ik(target[:3], euler_xyz_to_matrix(target[3:6]), self.joint_positions,
                                limits=self.info.limits)
        if ik.pos_err > self.config.ik_warn_distance:
            reasons.append(f"target not reachable: IK stopped {ik.pos_err * 1000:.1f} mm away")
        # The gripper integrates on the command, not the measured closure: the command-to-closure gain of
        # `gripper_ctrl` is 2, so integrating on the measurement would close a free gripper under zero deltas.
        gripper = float(np.clip(self._gripper_command + action[6], 0.0, 1.0))
        return self._execute(ik.q, gripper, action, reasons)

    def send_joint_target(self, q: np.ndarray, gripper: float | None = None) -> ActionResult:
        """Joint-target mode: move towards joint angles `q` [7] within one control period.

        The returned `applied` holds the clamped joint target (not a delta action)."""
        if self._stopped or self.model is None:
            return ActionResult(ActionStatus.REJECTED, None, "robot is stopped; call connect() first")
        try:
            q = validate_action(q)
        except ValueError as exc:
            self.hold()
            return ActionResult(ActionStatus.REJECTED, None, str(exc).replace("action", "joint target"))
        reasons = []
        clipped = self.info.limits.clip_positions(q)
        if not np.array_equal(clipped, q):
            reasons.append("joint target clipped to the joint position limits")
        if gripper is not None and not np.isfinite(gripper):
            return ActionResult(ActionStatus.REJECTED, None, f"gripper command is not finite: {gripper}")
        grip = self.gripper_position if gripper is None else float(np.clip(gripper, 0.0, 1.0))
        return self._execute(clipped, grip, clipped, reasons)

    def _execute(self, q_target: np.ndarray, gripper: float, applied: np.ndarray, reasons: list[str]) -> ActionResult:
        q_now = self.joint_positions
        # Scale the whole joint step (not each joint on its own) so the flange keeps its direction of motion.
        step = q_target - q_now
        max_step = self.config.velocity_margin * self.info.limits.dq_max / self.control_hz
        scale = float(np.min(max_step / np.maximum(np.abs(step), 1e-12)))
        if scale < 1.0:
            reasons.append(f"joint step scaled by {scale:.2f} to the joint velocity limits")
            step *= scale
        limited = self.info.limits.clip_positions(q_now + step)
        self.last_joint_target = limited
        try:
            self._step_towards(limited, gripper)
        except SimulationUnstable as exc:
            return ActionResult(ActionStatus.REJECTED, None, str(exc))
        status = ActionStatus.CLAMPED if reasons else ActionStatus.ACCEPTED
        return ActionResult(status, np.asarray(applied, dtype=np.float64), "; ".join(reasons))

    def _step_towards(self, q_target: np.ndarray, gripper: float) -> None:
        """Interpolate the arm servos' targets to `q_target` over one control period and step the physics."""
        snapshot = self._get_state()
        divergences = self._divergence_count()
        q_start = self._reference.copy()
        self._set_gripper_ctrl(gripper)
        velocity = (q_target - q_start) * self.control_hz
        # A position servo damps the joint's absolute velocity (force = kp (ctrl - q) - kv dq); leading the set-point
        # by kv/kp times the reference velocity turns that into damping of the tracking error, so the arm follows
        # the moving target without lag, like an impedance controller with a velocity reference.
        lead = self._servo_lead * velocity
        for i in range(1, self._substeps + 1):
            self.data.ctrl[self.info.arm_actuators] = q_start + (q_target - q_start) * (i / self._substeps) + lead
            mujoco.mj_step(self.model, self.data)
        self._reference = q_target.copy()
        # MuJoCo resets the whole simulation when the state blows up; treat that like non-finite values.
        diverged = self._divergence_count() > divergences
        if diverged or not (np.all(np.isfinite(self.data.qpos)) and np.all(np.isfinite(self.data.qvel))):
            self._set_state(snapshot)
            self.hold()
            raise SimulationUnstable("simulation became unstable; rolled back to the previous state and holding")
        # mj_step leaves body poses from before its last integration; cameras and contacts must see the new state.
        mujoco.mj_forward(self.model, self.data)

    def _divergence_count(self) -> int:
        kinds = (mujoco.mjtWarning.mjWARN_BADQPOS, mujoco.mjtWarning.mjWARN_BADQVEL, mujoco.mjtWarning.mjWARN_BADQACC)
        return sum(int(self.data.warning[kind].number) for kind in kinds)

    def gripper_ctrl(self, gripper: float) -> float:
        """Gripper actuator control for a commanded closure (0 = open .. 1 = closed).

        Closure g maps to 1 - 2g of the opening range: commands from half-closed on ask for fully closed fingers,
        so a held object stays squeezed while the command sits at the measured closure (about 0.4 for a 5 cm cube).
        Actuators without a negative range (e.g. Menagerie's 0..255) close fully from g = 0.5 on.
        """
        low, high = self.model.actuator_ctrlrange[self.info.gripper_actuator]
        opening = 1.0 - 2.0 * float(np.clip(gripper, 0.0, 1.0))
        ctrl = high * opening if low < 0 else low + (high - low) * max(opening, 0.0)
        return float(np.clip(ctrl, low, high))

    def _set_gripper_ctrl(self, gripper: float) -> None:
        self._gripper_command = float(gripper)
        if self.info.gripper_actuator is not None:
            self.data.ctrl[self.info.gripper_actuator] = self.gripper_ctrl(gripper)

    # -- scene access for tasks ----------------------------------------------------------------------------------

    def _get_state(self) -> np.ndarray:
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        state = np.empty(mujoco.mj_stateSize(self.model, spec))
        mujoco.mj_getState(self.model, self.data, state, spec)
        return state

    def _set_state(self, state: np.ndarray) -> None:
        mujoco.mj_setState(self.model, self.data, state, mujoco.mjtState.mjSTATE_INTEGRATION)
        mujoco.mj_forward(self.model, self.data)

    def body_position(self, name: str) -> np.ndarray:
        return self.data.body(name).xpos.copy()

    def set_object_pose(self, name: str, pos: np.ndarray, yaw: float = 0.0) -> None:
        """Place a free object (e.g. "cube", "mug") at rest, or move a mocap body (e.g. "target")."""
        self._place_body(name, pos, np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]))

    def object_poses(self) -> dict[str, np.ndarray]:
        """Pose [6] of every object (`object_names`): xyz + Euler "xyz" in the base frame, DROID's pose convention."""
        return {name: np.concatenate([self.data.body(name).xpos, matrix_to_euler_xyz(
            self.data.body(name).xmat.reshape(3, 3))]) for name in self.object_names}

    def set_object_poses(self, poses: dict[str, np.ndarray]) -> None:
        """Put objects at recorded poses {name: xyz + Euler "xyz"} (at rest), e.g. to replay an episode."""
        for name, pose in poses.items():
            quat = np.zeros(4)
            mujoco.mju_mat2Quat(quat, euler_xyz_to_matrix(np.asarray(pose[3:6], dtype=np.float64)).reshape(-1))
            self._place_body(name, np.asarray(pose[:3], dtype=np.float64), quat)

    def _place_body(self, name: str, pos: np.ndarray, quat: np.ndarray) -> None:
        body = self.model.body(name)
        if self.model.body_mocapid[body.id] >= 0:
            self.data.mocap_pos[self.model.body_mocapid[body.id]] = pos
            self.data.mocap_quat[self.model.body_mocapid[body.id]] = quat
        else:
            joint = self.model.body_jntadr[body.id]
            qadr, vadr = self.model.jnt_qposadr[joint], self.model.jnt_dofadr[joint]
            self.data.qpos[qadr:qadr + 7] = np.concatenate([pos, quat])
            self.data.qvel[vadr:vadr + 6] = 0.0
        mujoco.mj_forward(self.model, self.data)

    def settle(self, steps: int = 5) -> None:
        """Run `steps` control periods holding the current targets (objects come to rest)."""
        for _ in range(steps):
            self._step_towards(self._reference, self._gripper_command)

    def render_configuration(
        self, q: np.ndarray, gripper: float, objects: dict[str, tuple[np.ndarray, float]] | None = None,
        roles: tuple[str, ...] = ("left",), size: tuple[int, int] | None = None,
    ) -> dict[str, np.ndarray]:
        """Images of the scene with the arm at `q`, fingers at `gripper` and objects at {name: (pos, yaw)};
        the simulation state is left untouched."""
        snapshot = self._get_state()
        try:
            self.data.qpos[self._arm_qpos_adr] = q
            self.data.qpos[self.info.finger_qpos_adr] = self.info.finger_open_qpos * (1.0 - gripper)
            for name, (pos, yaw) in (objects or {}).items():
                self.set_object_pose(name, pos, yaw)
            mujoco.mj_forward(self.model, self.data)
            return self.render(roles, size)
        finally:
            self._set_state(snapshot)

    def _require_model(self) -> None:
        if self.model is None:
            raise RuntimeError("SimRobot is not connected; call connect() first")


def clamp_action(action: np.ndarray, limits: ActionLimits) -> tuple[np.ndarray, list[str]]:
    """Scale the translation and rotation of a delta action down to the per-step limits; the reasons say what."""
    # Absurd magnitudes are cut first so the norms below stay finite; the direction survives for sane inputs.
    action = np.clip(action, -_ABSURD_ACTION, _ABSURD_ACTION)
    reasons = []
    translation = float(np.linalg.norm(action[:3]))
    if translation > limits.max_translation:
        action[:3] *= limits.max_translation / translation
        reasons.append(f"translation {translation:.3g} m clamped to {limits.max_translation} m")
    rotvec = rotation_error(euler_xyz_to_matrix(action[3:6]), np.eye(3))
    angle = float(np.linalg.norm(rotvec))
    if angle > limits.max_rotation:
        scaled = rotvec * (limits.max_rotation / angle)
        action[3:6] = matrix_to_euler_xyz(rotvec_to_matrix(scaled))
        reasons.append(f"rotation {angle:.3g} rad clamped to {limits.max_rotation} rad")
    if abs(action[6]) > 1.0:
        action[6] = np.clip(action[6], -1.0, 1.0)
        reasons.append("gripper delta clamped to [-1, 1]")
    return action, reasons

