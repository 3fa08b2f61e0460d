"""The DROID-like tabletop scene: a Franka arm at the back edge of a table, a cube, a mug and a target mat, two
exterior cameras (left and right of the robot, like DROID's) and a wrist camera.

The robot comes from an MJCF file (the project's Panda by default, or Menagerie's Panda/FR3 via `MENAGERIE_ROOT`);
the rest of the scene is added with `mujoco.MjSpec`, so any Franka model with position servos fits in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

from vjepa_ac.data.droid.poses import euler_xyz_to_matrix, matrix_to_euler_xyz
from vjepa_ac.robot.kinematics import ArmKinematics, default_arm_mjcf
from vjepa_ac.robot.limits import FR3, PANDA, JointLimits
from vjepa_ac.sim.randomization import SceneVariation, apply_variation

MENAGERIE_MODELS = {"panda": "franka_emika_panda/panda.xml", "fr3": "franka_fr3/fr3.xml"}
"""Model name -> file inside a MuJoCo Menagerie checkout."""

CAMERA_ROLES = ("left", "right", "wrist")
TABLE_HEIGHT = 0.0
"""The table top is level with the robot base (z = 0 in the base frame)."""
CUBE_HALF_SIZE = 0.025
TARGET_HALF_SIZE = 0.06
MAX_RENDER_SIZE = (720, 1280)
"""Largest offscreen image (height, width): DROID's HD720."""

CUBE_COLORS = {
    "red": (0.85, 0.15, 0.12), "green": (0.15, 0.6, 0.2), "blue": (0.15, 0.3, 0.85),
    "yellow": (0.95, 0.8, 0.1), "orange": (0.95, 0.45, 0.1), "purple": (0.55, 0.2, 0.7),
}
# Exterior cameras sit on tripods left and right of the robot looking at the workspace, like DROID's ZED 2s.
_EXTERIOR_CAMERAS = {
    "left": (np.array([0.45, 0.95, 0.6]), np.array([0.45, 0.0, 0.22])),
    "right": (np.array([0.45, -0.95, 0.6]), np.array([0.45, 0.0, 0.22])),
}
_WRIST_CAMERA_POS = np.array([0.07, 0.0, 0.03])
_WRIST_CAMERA_QUAT = np.array([0.10772341, 0.69885311, 0.69885311, 0.10772341])
"""Camera on the hand's +x side, tilted to look down the fingers (same as the wrist camera in panda.xml)."""
EXTERIOR_FOVY = 52.0
"""Vertical field of view of a ZED 2 at HD720 (fy about 733 px for 720 rows)."""


@dataclass(frozen=True)
class SceneConfig:
    robot: str = "panda"
    """"panda" (the project's model), "menagerie:panda" / "menagerie:fr3" (needs MENAGERIE_ROOT) or an MJCF path."""
    physics_hz: float = 600.0
    """Physics rate; rounded so that a whole number of steps makes one control period."""
    control_hz: float = 15.0


@dataclass(frozen=True)
class RobotModelInfo:
    """Where the robot's parts are in a compiled scene."""

    arm_actuators: np.ndarray
    """Actuator ids driving joints 1..7 (position servos: ctrl = joint angle)."""
    gripper_actuator: int | None
    finger_qpos_adr: np.ndarray
    finger_open_qpos: np.ndarray
    """Finger joint positions when fully open (the upper end of their ranges)."""
    limits: JointLimits


def resolve_robot_mjcf(robot: str) -> Path:
    """The MJCF file for a robot name (see `SceneConfig.robot`); a clear error when it is not available."""
    if robot == "panda":
        return default_arm_mjcf()
    if robot.startswith("menagerie:"):
        name = robot.split(":", 1)[1]
        if name not in MENAGERIE_MODELS:
            raise ValueError(f"unknown Menagerie model {name!r}; choose from {sorted(MENAGERIE_MODELS)}")
        root = os.environ.get("MENAGERIE_ROOT")
        if not root:
            raise ValueError(f"robot {robot!r} needs MENAGERIE_ROOT pointing to a mujoco_menagerie checkout")
        path = Path(root) / MENAGERIE_MODELS[name]
    else:
        path = Path(robot)
    if not path.is_file():
        raise FileNotFoundError(f"robot MJCF not found: {path}")
    return path


def look_at_quat(pos: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Quaternion (w, x, y, z) of a MuJoCo camera at `pos` looking at `target` with the world z axis up."""
    forward = (target - pos) / np.linalg.norm(target - pos)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    # MuJoCo cameras look along their -z axis with +y up.
    mat = np.stack([right, up, -forward], axis=1)
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, mat.reshape(-1))
    return quat


def yaw_rotation(yaw: float) -> np.ndarray:
    """Rotation matrix [3, 3] by `yaw` radians about the vertical (z) axis."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def exterior_camera_placement(role: str, camera_yaw: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(position, look-at point) in the base frame of exterior camera `role` orbited by `camera_yaw` degrees about
    the robot base's vertical axis (counter-clockwise seen from above); height and aim relative to the base are kept.

    An orbited camera sees the arm as the unrotated camera would see it rotated by -camera_yaw (the table and room
    aside), so a world model trained with the default placement reads actions in a frame turned by camera_yaw; this is
    what `vjepa-ac calibrate` estimates. Yaw 0 gives the default placement exactly.
    """
    if role not in _EXTERIOR_CAMERAS:
        raise ValueError(f"{role!r} is not an exterior camera; choose from {sorted(_EXTERIOR_CAMERAS)}")
    if not np.isfinite(camera_yaw):
        raise ValueError(f"camera yaw must be a finite number of degrees, got {camera_yaw}")
    pos, target = _EXTERIOR_CAMERAS[role]
    if camera_yaw == 0.0:
        return pos.copy(), target.copy()
    rotation = yaw_rotation(np.radians(camera_yaw))
    return rotation @ pos, rotation @ target


def build_scene(
    config: SceneConfig = SceneConfig(), variation: SceneVariation | None = None, *, camera_yaw: float = 0.0
) -> tuple[mujoco.MjModel, RobotModelInfo]:
    """Compile the tabletop scene around the configured robot, exterior cameras orbited by `camera_yaw` degrees
    (`exterior_camera_placement`); with a `variation` (see `sim.randomization`), the randomised version of it.
    Without one it is the fixed evaluation scene."""
    robot_path = resolve_robot_mjcf(config.robot)
    spec = mujoco.MjSpec.from_file(str(robot_path))
    # Without gravity compensation the arm sags several millimetres below its targets; the real controller
    # compensates gravity, so every robot body does here.
    for body in spec.worldbody.find_all(mujoco.mjtObj.mjOBJ_BODY):
        body.gravcomp = 1.0
    substeps = max(1, round(config.physics_hz / config.control_hz))
    spec.option.timestep = 1.0 / (config.control_hz * substeps)
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    spec.option.impratio = 10.0  # stiffer friction cone: grasped objects do not slip out of the fingers
    spec.visual.global_.offheight, spec.visual.global_.offwidth = MAX_RENDER_SIZE
    spec.visual.headlight.ambient = [0.35, 0.35, 0.35]
    spec.visual.headlight.diffuse = [0.3, 0.3, 0.3]
    _add_room(spec)
    _add_objects(spec)
    _add_cameras(spec, camera_yaw)
    if variation is not None:
        apply_variation(spec, variation)
    model = spec.compile()
    return model, _robot_info(model, config.robot)


def _add_room(spec: mujoco.MjSpec) -> None:
    world = spec.worldbody
    spec.add_texture(
        name="floor_tex", type=mujoco.mjtTexture.mjTEXTURE_2D, builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER,
        rgb1=[0.42, 0.42, 0.44], rgb2=[0.38, 0.38, 0.40], width=256, height=256,
    )
    floor = spec.add_material(name="floor", texrepeat=[8, 8], reflectance=0.05)
    floor.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = "floor_tex"
    spec.add_texture(
        name="wood_tex", type=mujoco.mjtTexture.mjTEXTURE_2D, builtin=mujoco.mjtBuiltin.mjBUILTIN_FLAT,
        rgb1=[0.62, 0.47, 0.32], rgb2=[0.52, 0.38, 0.25], mark=mujoco.mjtMark.mjMARK_RANDOM, random=0.08,
        markrgb=[0.45, 0.33, 0.22],
        width=512, height=512,
    )
    wood = spec.add_material(name="table", texrepeat=[2, 2], reflectance=0.1)
    wood.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = "wood_tex"

    world.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[3, 3, 0.1], pos=[0, 0, -0.76],
                   material="floor")
    world.add_geom(name="table", type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.45, 0.7, 0.02],
                   pos=[0.55, 0, TABLE_HEIGHT - 0.02], material="table", friction=[0.8, 0.005, 0.0001])
    for sx in (-1, 1):
        for sy in (-1, 1):
            world.add_geom(type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.025, 0.025, 0.37],
                           pos=[0.55 + sx * 0.4, sy * 0.65, -0.41], rgba=[0.25, 0.25, 0.27, 1], contype=0,
                           conaffinity=0)
    world.add_geom(name="pedestal", type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.12, 0.12, 0.37], pos=[-0.05, 0, -0.39],
                   rgba=[0.2, 0.2, 0.22, 1])
    # Lab walls give the cameras a structured, static background.
    walls = {"back_wall": ([1.8, 0, 0.3], [0.02, 2.5, 1.1]), "left_wall": ([0.4, 1.6, 0.3], [1.5, 0.02, 1.1]),
             "right_wall": ([0.4, -1.6, 0.3], [1.5, 0.02, 1.1]), "front_wall": ([-1.1, 0, 0.3], [0.02, 2.5, 1.1])}
    for name, (pos, size) in walls.items():
        world.add_geom(name=name, type=mujoco.mjtGeom.mjGEOM_BOX, size=size, pos=pos, rgba=[0.78, 0.8, 0.76, 1],
                       contype=0, conaffinity=0)
    world.add_light(name="key_light", pos=[0.5, 0.3, 2.2], dir=[0, -0.1, -1], diffuse=[0.65, 0.65, 0.62],
                    specular=[0.2, 0.2, 0.2], castshadow=True)
    world.add_light(name="fill_light", pos=[-0.6, -0.8, 1.6], dir=[0.6, 0.5, -0.7], diffuse=[0.25, 0.25, 0.27],
                    specular=[0, 0, 0], castshadow=False)


def _add_objects(spec: mujoco.MjSpec) -> None:
    world = spec.worldbody
    cube = world.add_body(name="cube", pos=[0.55, 0, TABLE_HEIGHT + CUBE_HALF_SIZE])
    cube.add_freejoint(name="cube_joint")
    cube.add_geom(name="cube", type=mujoco.mjtGeom.mjGEOM_BOX, size=[CUBE_HALF_SIZE] * 3, mass=0.05,
                  rgba=[*CUBE_COLORS["red"], 1], friction=[1.5, 0.02, 0.001], condim=4)

    mug = world.add_body(name="mug", pos=[0.5, 0.3, TABLE_HEIGHT + 0.045])
    mug.add_freejoint(name="mug_joint")
    mug_rgba = [0.92, 0.92, 0.9, 1]
    mug.add_geom(name="mug", type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[0.04, 0.045], mass=0.25, rgba=mug_rgba)
    mug.add_geom(type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[0.033, 0.001], pos=[0, 0, 0.0451],
                 rgba=[0.25, 0.15, 0.08, 1], contype=0, conaffinity=0, mass=0)
    mug.add_geom(type=mujoco.mjtGeom.mjGEOM_CAPSULE, size=[0.008, 0.02], pos=[0.052, 0, 0], mass=0.01,
                 rgba=mug_rgba)

    # The target mat is a mocap body so tasks can move it without touching the physics.
    target = world.add_body(name="target", mocap=True, pos=[0.55, -0.2, TABLE_HEIGHT + 0.001])
    target.add_geom(name="target", type=mujoco.mjtGeom.mjGEOM_BOX, size=[TARGET_HALF_SIZE, TARGET_HALF_SIZE, 0.001],
                    rgba=[0.15, 0.35, 0.75, 1], contype=0, conaffinity=0)


def _add_cameras(spec: mujoco.MjSpec, camera_yaw: float) -> None:
    for role in _EXTERIOR_CAMERAS:
        pos, target = exterior_camera_placement(role, camera_yaw)
        spec.worldbody.add_camera(name=role, pos=pos, quat=look_at_quat(pos, target), fovy=EXTERIOR_FOVY)
    if any(cam.name == "wrist" for cam in spec.cameras):
        return
    # Models without a wrist camera (e.g. Menagerie's) get one where panda.xml has it: on the hand, looking past the
    # fingers; arms without a hand (Menagerie's FR3) get it at the same place relative to link7.
    hands = [body for body in spec.bodies if body.name.endswith("hand")]
    link7 = [body for body in spec.bodies if body.name.endswith("link7")]
    if len(hands) == 1:
        hands[0].add_camera(name="wrist", pos=_WRIST_CAMERA_POS, quat=_WRIST_CAMERA_QUAT, fovy=75)
    elif len(link7) == 1:
        hand_quat = np.array([np.cos(-np.pi / 8), 0.0, 0.0, np.sin(-np.pi / 8)])  # the hand's -45 deg mounting
        pos, quat = np.zeros(3), np.zeros(4)
        mujoco.mju_rotVecQuat(pos, _WRIST_CAMERA_POS, hand_quat)
        mujoco.mju_mulQuat(quat, hand_quat, _WRIST_CAMERA_QUAT)
        link7[0].add_camera(name="wrist", pos=pos + [0, 0, 0.107], quat=quat, fovy=75)
    else:
        raise ValueError("the robot model has no 'wrist' camera and no unique '*hand' or '*link7' body to mount one on")


def _robot_info(model: mujoco.MjModel, robot: str) -> RobotModelInfo:
    arm_joints = ArmKinematics(model).joint_ids
    arm_actuators = []
    for joint in arm_joints:
        ids = [a for a in range(model.nu) if model.actuator_trntype[a] == mujoco.mjtTrn.mjTRN_JOINT
               and model.actuator_trnid[a, 0] == joint]
        if len(ids) != 1:
            raise ValueError(f"joint {model.joint(joint).name!r} needs exactly one position actuator, found {len(ids)}")
        arm_actuators.append(ids[0])
    others = [a for a in range(model.nu) if a not in arm_actuators]
    # Finger joints: the slide joints mounted past the last arm joint.
    last_link = model.jnt_bodyid[arm_joints[-1]]
    fingers = [j for j in range(model.njnt) if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_SLIDE
               and _is_descendant(model, model.jnt_bodyid[j], last_link)]
    if len(others) > 1:
        raise ValueError(f"expected at most one gripper actuator besides the arm's, found {len(others)}")
    limits = FR3 if "fr3" in robot.lower() else PANDA
    return RobotModelInfo(
        arm_actuators=np.array(arm_actuators),
        gripper_actuator=others[0] if others else None,
        finger_qpos_adr=np.array([model.jnt_qposadr[j] for j in fingers], dtype=int),
        finger_open_qpos=np.array([model.jnt_range[j, 1] for j in fingers]),
        limits=limits,
    )


def _is_descendant(model: mujoco.MjModel, body: int, ancestor: int) -> bool:
    while body > 0:
        if body == ancestor:
            return True
        body = model.body_parentid[body]
    return False


def resting_height(model: mujoco.MjModel, body: str) -> float:
    """Height of a body's origin above the table when its (first) geom stands upright on it."""
    geom = model.body_geomadr[model.body(body).id]
    size = model.geom_size[geom]
    kind = int(model.geom_type[geom])
    if kind in (mujoco.mjtGeom.mjGEOM_SPHERE, mujoco.mjtGeom.mjGEOM_CAPSULE, mujoco.mjtGeom.mjGEOM_CYLINDER):
        return float(size[1] if kind == mujoco.mjtGeom.mjGEOM_CYLINDER
                     else size[0] if kind == mujoco.mjtGeom.mjGEOM_SPHERE else size[0] + size[1])
    return float(size[2])


def cube_color_name(model: mujoco.MjModel) -> str:
    """Name of the palette colour closest to the cube's current colour (for task instructions)."""
    rgb = model.geom_rgba[model.geom("cube").id, :3]
    return min(CUBE_COLORS, key=lambda name: float(np.abs(np.asarray(CUBE_COLORS[name]) - rgb).sum()))


def cube_shape_name(model: mujoco.MjModel) -> str:
    """What to call the manipulated object in instructions: "cube" in the fixed scene, else its shape."""
    geom = model.geom("cube").id
    kind, size = int(model.geom_type[geom]), model.geom_size[geom]
    if kind == mujoco.mjtGeom.mjGEOM_BOX:
        return "cube" if np.ptp(size) < 0.1 * size.max() else "block"
    return {mujoco.mjtGeom.mjGEOM_SPHERE: "ball", mujoco.mjtGeom.mjGEOM_CYLINDER: "cylinder"}.get(kind, "object")


_OPTICAL_FROM_MUJOCO = np.diag([1.0, -1.0, -1.0])
"""MuJoCo cameras look along -z with +y up; optical (ZED/OpenCV) frames look along +z with +y down."""


def set_camera_pose(model: mujoco.MjModel, role: str, extrinsics: np.ndarray) -> None:
    """Place a world-fixed camera at a DROID-style pose [6] (xyz + Euler "xyz" of the optical frame, base frame);
    the inverse of `camera_extrinsics`. Call `mj_forward` (or step) before rendering."""
    extrinsics = np.asarray(extrinsics, dtype=np.float64)
    if extrinsics.shape != (6,) or not np.all(np.isfinite(extrinsics)):
        raise ValueError(f"camera extrinsics must be 6 finite numbers, got {extrinsics}")
    cam = model.camera(role).id
    if model.cam_bodyid[cam] != 0:
        raise ValueError(f"camera {role!r} moves with the robot; only world-fixed cameras can be placed")
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, (euler_xyz_to_matrix(extrinsics[3:6]) @ _OPTICAL_FROM_MUJOCO).reshape(-1))
    model.cam_pos[cam], model.cam_quat[cam] = extrinsics[:3], quat


def camera_extrinsics(model: mujoco.MjModel, data: mujoco.MjData, role: str) -> np.ndarray:
    """DROID-style camera pose [6] in the robot base frame: xyz + Euler "xyz" of the optical frame (z forward,
    y down, as ZED/OpenCV cameras report it)."""
    cam = model.camera(role).id
    rot = data.cam_xmat[cam].reshape(3, 3) @ _OPTICAL_FROM_MUJOCO
    return np.concatenate([data.cam_xpos[cam], matrix_to_euler_xyz(rot)])
