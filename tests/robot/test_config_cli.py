"""Bridge configs from the launch/ YAML files, and the `vjepa-ac bridge` commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

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
                             "--task", "pick_and_place", "--seed", "3", "--port-base", str(base)],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "bridge running" in line, line
        assert main(["bridge", "status", "--port-base", str(base), "--timeout", "10"]) == 0
        config = json.loads(capsys.readouterr().out)["config"]
        assert config["backend_options"]["mujoco"] == {"task": "pick_and_place", "seed": 3}

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
