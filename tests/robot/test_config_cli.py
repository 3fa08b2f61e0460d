"""Bridge configs from the launch/ YAML files, and the `vjepa-ac bridge` commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vjepa_ac.data.config import to_dict
from vjepa_ac.robot.config import bridge_config_from_dict, load_bridge_config
from vjepa_ac.robot.limits import FR3, PANDA
from vjepa_ac.cli import main

LAUNCH = Path(__file__).resolve().parents[2] / "launch"


def test_launch_yaml_configs_load():
    panda = load_bridge_config(LAUNCH / "panda.yaml")
    assert panda.robot == "panda" and panda.safety.joint_limits is PANDA and panda.backend == "ros1"
    assert panda.backend_options["ros1"]["joint_command_topic"] == "/position_joint_trajectory_controller/command"
    from vjepa_ac.robot.backends.libfranka import LibfrankaConfig
    from vjepa_ac.robot.backends.ros1 import Ros1Config
    from vjepa_ac.robot.backends.ros2 import Ros2Config

    Ros1Config(**panda.backend_options["ros1"])
    fr3 = load_bridge_config(LAUNCH / "fr3.yaml", backend="mujoco")
    assert fr3.safety.joint_limits is FR3 and fr3.backend == "mujoco"
    assert Path(fr3.link.secret_key).is_absolute() and fr3.link.secret_key.endswith("launch/keys/bridge.key_secret")
    np.testing.assert_allclose(fr3.safety.action_limits.workspace_max, [1.0, 0.4, 1.0])
    LibfrankaConfig(**fr3.backend_options["libfranka"])
    Ros2Config(**fr3.backend_options["ros2"])


@pytest.mark.parametrize(
    "data,needle",
    [
        ({"robot": "ur5"}, "unknown robot"),
        ({"tick_hz": 50}, "at least 100"),
        ({"safety": {"max_translaton": 0.1}}, "unknown config key 'safety.max_translaton' .did you mean 'max_translation'"),
        ({"link": {"prot": 1}}, "unknown config key 'link.prot'"),
        ({"control_mode": "torque"}, "control_mode"),
        ({"backend": "polymetis"}, "unknown backend"),
        ({"backend_options": {"ros3": {}}}, "backend_options"),
    ],
)
def test_config_errors_name_the_problem(data, needle):
    with pytest.raises(ValueError, match=needle):
        bridge_config_from_dict(data)


def test_ros_launch_files_are_well_formed():
    import xml.etree.ElementTree as ET

    ros1 = ET.parse(LAUNCH / "bridge_ros1.launch").getroot()
    bridge = next(node for node in ros1.iter("node") if node.get("name") == "vjepa_ac_bridge")
    assert bridge.get("pkg") == ET.parse(LAUNCH / "package.xml").getroot().findtext("name")
    assert (LAUNCH / bridge.get("type")).stat().st_mode & 0o111  # roslaunch needs an executable
    assert any("franka_control.launch" in inc.get("file") for inc in ros1.iter("include"))
    compile((LAUNCH / "bridge_ros2.launch.py").read_text(), "bridge_ros2.launch.py", "exec")


def test_keygen_writes_a_usable_pair(tmp_path, capsys):
    assert main(["bridge", "keygen", str(tmp_path), "--name", "ws"]) == 0
    assert (tmp_path / "ws.key").is_file() and (tmp_path / "ws.key_secret").stat().st_mode & 0o077 == 0
    assert main(["bridge", "keygen", str(tmp_path), "--name", "ws"]) == 1  # no silent overwrite
    assert main(["bridge", "keygen", str(tmp_path), "--name", "ws", "--force"]) == 0


def test_run_and_status_over_loopback(make_port_base, capsys):
    base = make_port_base()
    proc = subprocess.Popen([sys.executable, "-m", "vjepa_ac.cli", "bridge", "run", "--backend", "mujoco",
                             "--port-base", str(base)], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "bridge running" in line, line
        capsys.readouterr()
        code = main(["bridge", "status", "--port-base", str(base), "--timeout", "10"])
        out = capsys.readouterr()
        assert code == 0, out.err
        report = json.loads(out.out)
        assert report["config"]["backend"] == "mujoco" and report["state"]["watchdog"] == "IDLE"
    finally:
        proc.terminate()
        code = proc.wait(timeout=10)
        assert code == 0, f"bridge exited with {code}"


def test_status_of_an_absent_bridge_fails_cleanly(make_port_base, capsys):
    base = make_port_base()
    assert main(["bridge", "status", "--port-base", str(base), "--timeout", "0.3"]) == 1
    assert "did not answer" in capsys.readouterr().err


def test_task_scene_home_and_recover_over_loopback(make_port_base, capsys):
    base = make_port_base()
    proc = subprocess.Popen([sys.executable, "-m", "vjepa_ac.cli", "bridge", "run", "--backend", "mujoco",
                             "--task", "pick_and_place", "--seed", "3", "--port-base", str(base),
                             "safety.max_translation=0.04", "watchdog.hold_after_s=0.1", "state_hz=50"],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "bridge running" in line, line
        assert main(["bridge", "status", "--port-base", str(base), "--timeout", "10"]) == 0
        config = json.loads(capsys.readouterr().out)["config"]
        assert config["backend_options"]["mujoco"] == {"task": "pick_and_place", "seed": 3}
        # KEY=VALUE words reach the running bridge, and leave the rest of their section at its defaults.
        assert config["safety"]["action_limits"]["max_translation"] == 0.04
        assert config["watchdog"] == {"hold_after_s": 0.1, "stop_after_s": 0.85} and config["state_hz"] == 50.0

        code = main(["bridge", "home", "--port-base", str(base), "--timeout", "10"])
        out = capsys.readouterr()
        assert code == 0, out.err
        reached = np.array([float(v) for v in out.out.split("at home: joints")[1].split()])
        np.testing.assert_allclose(reached, config["home_q"], atol=0.02)

        code = main(["bridge", "recover", "--port-base", str(base), "--timeout", "10"])
        out = capsys.readouterr()
        assert code == 0, out.err
        assert out.out.startswith("recovered: watchdog")
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_task_needs_the_simulated_arm(capsys):
    assert main(["bridge", "run", "--backend", "ros1", "--task", "reach", "--port-base", "1"]) == 2
    assert "the backend is ros1" in capsys.readouterr().err


def _run_config(*words: str):
    from vjepa_ac.bridge import bridge_run_config
    from vjepa_ac.cli import build_parser

    return bridge_run_config(build_parser().parse_args(["bridge", "run", *words]))


def test_run_settings_come_from_the_file_then_the_options_then_the_overrides():
    config = _run_config("--config", str(LAUNCH / "panda.yaml"), "--backend", "mujoco", "--port-base", "7000",
                         "--host", "127.0.0.2", "link.host=127.0.0.3", "safety.max_translation=0.05",
                         "watchdog.hold_after_s=0.1", "cameras.wrist.fps=30", "backend_options.mujoco.seed=4")
    assert config.backend == "mujoco" and config.robot == "panda"  # --backend beats the file's ros1
    assert config.link.host == "127.0.0.3"  # the override beats --host
    assert (config.link.cmd_port, config.link.state_port, config.link.rpc_port, config.link.camera_port) == (
        7000, 7001, 7002, 7003)
    assert config.safety.action_limits.max_translation == 0.05
    assert config.safety.action_limits.max_rotation == 0.15 and config.safety.max_joint_step == 0.6  # from the file
    assert (config.watchdog.hold_after_s, config.watchdog.stop_after_s) == (0.1, 0.85)  # the file's stop_after_s
    wrist = next(camera for camera in config.cameras if camera.role == "wrist")
    assert wrist.fps == 30.0 and wrist.topic.endswith("/compressed")
    assert config.backend_options["mujoco"] == {"robot_model": "panda", "image_size": [180, 320], "seed": 4}
    defaults = _run_config()
    assert defaults.watchdog.hold_after_s == 0.12 and defaults.link.cmd_port == 5555 and defaults.backend == "mujoco"


def test_print_config_loads_back_to_the_same_bridge(tmp_path, capsys):
    assert main(["bridge", "run", "--config", str(LAUNCH / "fr3.yaml"), "--print-config", "tick_hz=500",
                 "safety.workspace_max=[0.9, 0.3, 0.8]"]) == 0
    printed = tmp_path / "printed.yaml"
    printed.write_text(capsys.readouterr().out)
    again = load_bridge_config(printed)
    original = load_bridge_config(LAUNCH / "fr3.yaml", ["tick_hz=500", "safety.workspace_max=[0.9, 0.3, 0.8]"])
    assert to_dict(again) == to_dict(original)
    np.testing.assert_array_equal(again.safety.action_limits.workspace_max, [0.9, 0.3, 0.8])
    assert again.safety.joint_limits is FR3 and again.tick_hz == 500.0
    assert again.link.secret_key == original.link.secret_key  # written as an absolute path


@pytest.mark.parametrize("words, message", [
    (["safety.max_translaton=0.1"], "unknown config key 'safety.max_translaton' (did you mean 'max_translation'?)"),
    (["link.cmd_port=abc"], "link.cmd_port: expected an integer, got 'abc'"),
    (["watchdog.hold_after_s=2"], "watchdog: need 0 < hold_after_s < stop_after_s"),
    (["tick_hz=20"], "tick_hz must be at least 100"),
    (["home_q=[0, 1]"], "home_q needs 7 joint angles"),
    (["--config", str(LAUNCH / "panda.yaml"), "cameras.left.topik=/x"],
     "panda.yaml: unknown config key 'cameras.left.topik' (did you mean 'topic'?)"),
])
def test_bad_run_settings_are_usage_errors(words, message, capsys):
    assert main(["bridge", "run", "--print-config", *words]) == 2
    assert message in capsys.readouterr().err

