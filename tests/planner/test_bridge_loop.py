"""The closed loop over real ZMQ sockets: `run_mpc` driving a `BridgeClient` connected to a bridge (in a thread) on
the MuJoCo Panda backend, with a tiny random-weight world model."""

import cv2
import numpy as np
import pytest

from vjepa_ac.planner.cem import CEMConfig
from vjepa_ac.planner.mpc import MPCConfig, run_mpc
from vjepa_ac.planner.report import read_jsonl
from vjepa_ac.cli import main
from vjepa_ac.pytest_plugin import assert_no_safety_rejections
from vjepa_ac.worldmodel import save_ac_checkpoint


pytestmark = pytest.mark.vjepa_ac(task="reach", seed=0)  # the bridge comes from vjepa-ac's pytest plugin


@pytest.fixture
def bridge_client(vjepa_bridge):
    # A generous timeout: the first camera frame waits for the renderer to start on a busy machine.
    return vjepa_bridge.client(camera_roles=("left",), rpc_timeout_s=20.0)


def test_mpc_over_the_bridge(tiny_world_model, vjepa_bridge, bridge_client):
    bridge_client.connect()
    start = bridge_client.get_observation()
    goal = start.images["left"].copy()
    config = MPCConfig(planner=CEMConfig(samples=16, iterations=2, topk=4), max_steps=3)
    episode = run_mpc(bridge_client, tiny_world_model, [goal], config, progress=False)
    assert len(episode.steps) == 3 and episode.outcome == "step budget of 3 used"
    for record in episode.steps:
        assert record.status in ("accepted", "clamped"), record.reason
        assert np.all(np.isfinite(record.action)) and np.abs(record.action[:3]).sum() <= 0.075 + 1e-6
    assert episode.frames[-1].shape == goal.shape
    assert_no_safety_rejections(vjepa_bridge)


def test_run_cli_over_the_bridge(tiny_world_model, vjepa_bridge, bridge_client, tmp_path, capsys):
    bridge_client.connect()
    goal = tmp_path / "goal.png"
    cv2.imwrite(str(goal), cv2.cvtColor(bridge_client.get_observation().images["left"], cv2.COLOR_RGB2BGR))
    ckpt = save_ac_checkpoint(
        tmp_path / "tiny.pt", encoder=tiny_world_model.encoder, predictor=tiny_world_model.predictor
    )
    code = main(
        ["run", "--robot", "bridge", "--port-base", str(vjepa_bridge.port_base), "--goal", str(goal), "--checkpoint",
         str(ckpt), "--device", "cpu", "--fps", "15", "--max-steps", "2", "--samples", "16", "--iterations", "2",
         "--topk", "4", "--no-video", "--out", str(tmp_path / "run")]
    )
    assert code in (0, 1), capsys.readouterr().err
    assert "(1 control periods each)" in capsys.readouterr().out
    assert len(read_jsonl(tmp_path / "run" / "steps.jsonl")) == 2
