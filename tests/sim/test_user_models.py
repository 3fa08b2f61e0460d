"""A user model with Menagerie's conventions runs the whole stack: `general` affine servos, a 0..255 tendon gripper,
no wrist camera, `linkN`/`hand` body names. Built from our Panda (Menagerie's meshes are not shipped here)."""

import mujoco
import numpy as np
import pytest

from vjepa_ac.robot.kinematics import default_arm_mjcf
from vjepa_ac.sim.experts import ScriptedExpert
from vjepa_ac.sim.scene import SceneConfig
from vjepa_ac.sim.tasks import make_env


def _menagerie_style_panda(path):
    spec = mujoco.MjSpec.from_file(str(default_arm_mjcf()))
    spec.delete(spec.keys[0])
    for actuator in list(spec.actuators):
        spec.delete(actuator)
    spec.delete(spec.camera("wrist"))
    for body in spec.bodies:
        body.name = body.name.removeprefix("panda_")
    for joint in spec.joints:
        if "finger" in joint.name:  # Menagerie's fingers are light and barely damped
            joint.damping = [1.0, 0.0, 0.0]
            joint.armature = 0.1
    for i, kp in enumerate([4500, 4500, 3500, 3500, 2000, 2000, 2000], 1):
        servo = spec.add_actuator(name=f"actuator{i}", target=f"panda_joint{i}", trntype=mujoco.mjtTrn.mjTRN_JOINT)
        servo.gainprm[0] = kp
        servo.biasprm[:3] = [0, -kp, -kp / 10]
        servo.biastype = mujoco.mjtBias.mjBIAS_AFFINE
        servo.ctrlrange = [-2.8973, 2.8973]
        servo.forcerange = [-87, 87] if i <= 4 else [-12, 12]
    gripper = spec.add_actuator(name="actuator8", target="panda_finger_split", trntype=mujoco.mjtTrn.mjTRN_TENDON)
    gripper.gainprm[0] = 0.04 * 100 / 255  # ctrl 255 = fingers 0.04 m open
    gripper.biasprm[:3] = [0, -100, -10]
    gripper.biastype = mujoco.mjtBias.mjBIAS_AFFINE
    gripper.ctrlrange = [0, 255]
    gripper.forcerange = [-100, 100]
    path.write_text(spec.to_xml())


@pytest.fixture(scope="module")
def menagerie_robot(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "panda.xml"
    _menagerie_style_panda(path)
    robot, _ = make_env("grasp", seed=0, scene=SceneConfig(robot=str(path)), cameras=("left", "wrist"),
                        image_size=(48, 64))
    yield robot
    robot.close()


def test_gripper_maps_closure_onto_a_0_255_actuator(menagerie_robot):
    assert menagerie_robot.gripper_ctrl(0.0) == 255.0
    assert menagerie_robot.gripper_ctrl(1.0) == 0.0
    assert menagerie_robot.get_observation().images["wrist"].shape == (48, 64, 3)


@pytest.mark.parametrize("seed", [0, 1])
def test_grasp_expert_succeeds_on_the_menagerie_style_model(menagerie_robot, seed):
    _, task = make_env("grasp", seed=seed, robot=menagerie_robot)
    expert = ScriptedExpert(task, np.random.default_rng(seed))
    for _ in range(task.max_steps):
        menagerie_robot.send_action(expert.act(menagerie_robot.droid_state()))
        if task.success():
            break
    assert task.success(), task.info()
