"""`vjepa-ac teleop`: jogs recorded as labelled raw DROID episodes (sim arm; the bridge path is the same `Robot`
interface, exercised by `goal capture`'s bridge test), command parsing, and a session that ends with an episode open."""

from __future__ import annotations

import numpy as np
import pytest

from vjepa_ac.data.droid import open_episode, resolve_episode_references
from vjepa_ac.cli import main
from vjepa_ac.teleop import TELEOP_KEYS, parse_teleop_command, parse_teleop_commands


def test_commands_and_keys():
    assert [c.kind for c in parse_teleop_commands("x+*3 close success # done\nfailure finish")] == \
        ["jog", "gripper", "success", "failure", "finish"]
    assert TELEOP_KEYS["y"] == "success" and TELEOP_KEYS["n"] == "failure" and " " not in TELEOP_KEYS
    with pytest.raises(ValueError, match="teleop records episodes"):
        parse_teleop_command("capture")
    with pytest.raises(ValueError, match="unknown command"):
        parse_teleop_command("dance")


def test_jogs_become_labelled_droid_episodes(tmp_path, capsys):
    record = tmp_path / "my_data"
    assert main(["teleop", "--robot", "sim", "--task", "reach", "--seed", "3", "--record", str(record),
                 "--instruction", "touch the goal", "--commands", "x+*3 z-*2 success y+*2 failure x-"]) == 0
    out = capsys.readouterr().out
    assert "recorded 3 episodes" in out
    references = resolve_episode_references(record)
    episodes = [open_episode(r) for r in references]
    labels = sorted((e.success, e.num_steps) for e in episodes)
    # 5 jogs + DROID's final hold step; 2 jogs + hold; the open episode at the end: 1 jog, closed without a final step.
    assert labels == [(False, 1), (False, 3), (True, 6)]
    first = next(e for e in episodes if e.success)
    assert first.task == "touch the goal" and first.metadata.get("current_task") == "touch the goal"
    states = first.states()
    moved = np.diff(states[:, :3], axis=0)
    np.testing.assert_allclose(moved[:3, 0], 0.02, atol=0.006)  # x+ jogs of 2 cm
    np.testing.assert_allclose(moved[3:5, 2], -0.02, atol=0.006)  # z- jogs
    assert first.read_frames("left", [0, 5]).shape[0] == 2
    for episode in episodes:
        episode.close()


def test_no_terminal_and_no_commands_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(["teleop", "--robot", "sim", "--record", str(tmp_path / "x")]) == 1
    assert "no terminal to read keys from" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
