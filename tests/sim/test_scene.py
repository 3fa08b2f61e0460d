"""The tabletop scene: compiles, renders offscreen, holds its pose under gravity, loads user models."""

import shutil

import mujoco
import numpy as np
import pytest

from vjepa_ac.data.droid.poses import euler_xyz_to_matrix
from vjepa_ac.robot.kinematics import default_arm_mjcf
from vjepa_ac.sim.scene import CAMERA_ROLES, SceneConfig, build_scene, look_at_quat, resolve_robot_mjcf


def test_scene_has_robot_objects_and_cameras():
    model, info = build_scene()
    assert len(info.arm_actuators) == 7 and info.gripper_actuator is not None
    for name in ("table", "cube", "mug", "target"):
        assert mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY if name != "table" else mujoco.mjtObj.mjOBJ_GEOM,
                                 name) >= 0
    assert {model.camera(i).name for i in range(model.ncam)} == set(CAMERA_ROLES)
    # 15 Hz control from a whole number of physics steps at >= 500 Hz.
    steps_per_period = 1.0 / (15.0 * model.opt.timestep)
    assert abs(steps_per_period - round(steps_per_period)) < 1e-9 and 1.0 / model.opt.timestep >= 500


@pytest.mark.parametrize("size", [(256, 256), (720, 1280)])
def test_every_camera_renders_offscreen(robot, size):
    images = robot.render(roles=CAMERA_ROLES, size=size)
    for role, image in images.items():
        assert image.shape == (*size, 3) and image.dtype == np.uint8
        assert image.std() > 10, f"{role} camera image is flat"


def test_arm_holds_its_pose_under_gravity(fresh):
    # Gravity compensation: the servos hold the home pose without sagging.
    q0 = fresh.joint_positions
    flange0 = fresh.droid_state()[:3]
    fresh.settle(30)  # 2 s
    assert np.abs(fresh.joint_positions - q0).max() < 1e-4
    assert np.linalg.norm(fresh.droid_state()[:3] - flange0) < 1e-4


def test_camera_extrinsics_point_the_optical_axis_at_the_workspace(fresh):
    for role in ("left", "right"):
        pose = fresh.camera_extrinsics(role)
        forward = euler_xyz_to_matrix(pose[3:6])[:, 2]  # optical z axis
        to_workspace = np.array([0.45, 0.0, 0.22]) - pose[:3]
        assert forward @ to_workspace / np.linalg.norm(to_workspace) > 0.999
    assert fresh.camera_extrinsics("left")[1] > fresh.camera_extrinsics("right")[1]  # DROID: left has larger y


def test_look_at_quat_makes_cameras_look_along_minus_z():
    pos, target = np.array([1.0, 1.0, 1.0]), np.array([0.0, 0.0, 0.0])
    mat = np.zeros(9)
    mujoco.mju_quat2Mat(mat, look_at_quat(pos, target))
    np.testing.assert_allclose(-mat.reshape(3, 3)[:, 2], -pos / np.linalg.norm(pos), atol=1e-12)


def test_menagerie_models_need_menagerie_root(monkeypatch, tmp_path):
    monkeypatch.delenv("MENAGERIE_ROOT", raising=False)
    with pytest.raises(ValueError, match="MENAGERIE_ROOT"):
        resolve_robot_mjcf("menagerie:panda")
    with pytest.raises(ValueError, match="unknown Menagerie model"):
        resolve_robot_mjcf("menagerie:ur5")
    with pytest.raises(FileNotFoundError):
        resolve_robot_mjcf(str(tmp_path / "missing.xml"))
    # A folder laid out like a Menagerie checkout (our own Panda stands in for Menagerie's, which is not shipped).
    (tmp_path / "franka_emika_panda").mkdir()
    shutil.copy(default_arm_mjcf(), tmp_path / "franka_emika_panda" / "panda.xml")
    monkeypatch.setenv("MENAGERIE_ROOT", str(tmp_path))
    model, info = build_scene(SceneConfig(robot="menagerie:panda"))
    assert len(info.arm_actuators) == 7


def test_user_model_without_wrist_camera_gets_one(tmp_path):
    spec = mujoco.MjSpec.from_file(str(default_arm_mjcf()))
    spec.delete(spec.camera("wrist"))
    path = tmp_path / "arm.xml"
    path.write_text(spec.to_xml())
    model, _ = build_scene(SceneConfig(robot=str(path)))
    assert mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, "wrist") >= 0


def test_arm_without_hand_gets_the_wrist_camera_at_the_same_place(tmp_path):
    # Like Menagerie's FR3: an arm ending at link7, no hand, no gripper.
    spec = mujoco.MjSpec.from_file(str(default_arm_mjcf()))
    spec.delete(spec.keys[0])
    spec.delete(spec.equalities[0])
    for element in (spec.actuator("panda_gripper"), spec.tendon("panda_finger_split"), spec.body("panda_hand"),
                    spec.body("panda_link8")):
        spec.delete(element)
    path = tmp_path / "arm_only.xml"
    path.write_text(spec.to_xml())
    bare, info = build_scene(SceneConfig(robot=str(path)))
    full, _ = build_scene()
    assert info.gripper_actuator is None and len(info.finger_qpos_adr) == 0
    poses = []
    for model in (bare, full):
        data = mujoco.MjData(model)
        data.qpos[:7] = [0.1, -0.5, 0.2, -2.2, 0.3, 1.9, 0.4]
        mujoco.mj_forward(model, data)
        cam = model.camera("wrist").id
        poses.append((data.cam_xpos[cam].copy(), data.cam_xmat[cam].copy()))
    np.testing.assert_allclose(poses[0][0], poses[1][0], atol=1e-6)
    np.testing.assert_allclose(poses[0][1], poses[1][1], atol=1e-6)  # the camera quaternion has 8 digits


def test_set_camera_pose_inverts_camera_extrinsics(fresh):
    from vjepa_ac.sim.scene import camera_extrinsics, set_camera_pose

    pose = np.array([0.3, 0.8, 0.7, -2.0, 0.1, 3.0])
    original = camera_extrinsics(fresh.model, fresh.data, "left")
    set_camera_pose(fresh.model, "left", pose)
    mujoco.mj_forward(fresh.model, fresh.data)
    got = camera_extrinsics(fresh.model, fresh.data, "left")
    set_camera_pose(fresh.model, "left", original)  # the module's robot is shared
    np.testing.assert_allclose(got[:3], pose[:3], atol=1e-12)
    np.testing.assert_allclose(euler_xyz_to_matrix(got[3:6]), euler_xyz_to_matrix(pose[3:6]), atol=1e-9)
    with pytest.raises(ValueError, match="moves with the robot"):
        set_camera_pose(fresh.model, "wrist", pose)
    with pytest.raises(ValueError, match="finite"):
        set_camera_pose(fresh.model, "left", np.full(6, np.nan))


def test_camera_yaw_orbits_the_exterior_cameras():
    from vjepa_ac.sim.robot import SimConfig, SimRobot
    from vjepa_ac.sim.scene import exterior_camera_placement

    default, _ = build_scene()
    unturned, _ = build_scene(camera_yaw=0.0)
    turned, _ = build_scene(camera_yaw=30.0)
    for role in ("left", "right"):
        cam = default.camera(role).id
        # Yaw 0 is the default placement exactly.
        assert np.array_equal(unturned.cam_pos[cam], default.cam_pos[cam])
        assert np.array_equal(unturned.cam_quat[cam], default.cam_quat[cam])
        # Yaw 30: the whole rig turned 30 degrees about the base's z axis, height kept.
        pos, target = exterior_camera_placement(role, 30.0)
        c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
        rotation = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
        assert np.allclose(turned.cam_pos[cam], rotation @ default.cam_pos[cam])
        assert turned.cam_pos[cam][2] == default.cam_pos[cam][2]
        assert np.allclose(turned.cam_quat[cam], look_at_quat(pos, target))
        turned_mat, default_mat = np.zeros(9), np.zeros(9)
        mujoco.mju_quat2Mat(turned_mat, turned.cam_quat[cam])
        mujoco.mju_quat2Mat(default_mat, default.cam_quat[cam])
        assert np.allclose(turned_mat.reshape(3, 3), rotation @ default_mat.reshape(3, 3))
    wrist = default.camera("wrist").id
    assert np.array_equal(turned.cam_pos[wrist], default.cam_pos[wrist])

    images = {}
    for yaw in (None, 0.0, 30.0):
        config = SimConfig(cameras=("left",), image_size=(48, 64)) if yaw is None else SimConfig(
            cameras=("left",), image_size=(48, 64), camera_yaw=yaw)
        sim = SimRobot(config)
        sim.connect()
        images[yaw] = sim.render()["left"]
        sim.close()
    assert np.array_equal(images[None], images[0.0])
    assert np.abs(images[30.0].astype(int) - images[0.0]).mean() > 10
    with pytest.raises(ValueError, match="finite"):
        SimRobot(SimConfig(camera_yaw=float("nan")))
    with pytest.raises(ValueError, match="not an exterior camera"):
        exterior_camera_placement("wrist", 10.0)
