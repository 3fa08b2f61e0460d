"""The `vjepa-ac` command as a whole: every subcommand under bad input, the common error path, and fast --help."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from vjepa_ac.data.droid import CameraRecording, EpisodeRecording, write_episode
from vjepa_ac.cli import build_parser, describe_error, main

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "vjepa_ac" / "default_model" / "vjepa-ac-sim-tiny.pt"


@dataclass(frozen=True)
class BadInput:
    """One command line that must fail cleanly: `names` must appear in the error line."""

    argv: tuple[str, ...]
    names: str
    exit_code: int
    without: tuple[str, ...] = ()
    """Modules made unimportable for this case (an optional dependency that is not installed)."""
    environment: tuple[tuple[str, str], ...] = ()


def _episode(root: Path) -> Path:
    steps = 6
    frames = np.full((steps, 32, 32, 3), 90, np.uint8)
    recording = EpisodeRecording(
        cartesian_position=np.tile([0.5, 0.0, 0.3, np.pi, 0.0, 0.0], (steps, 1)),
        gripper_position=np.zeros(steps),
        joint_positions=np.zeros((steps, 7)),
        cameras={"11111111": CameraRecording(frames, np.tile([0.2, 0.5, 0.5, -2.0, 0.0, 1.5], (steps, 1)),
                                             "exterior")},
    )
    return write_episode(root, recording)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Every kind of bad input the table below names, in one folder."""
    ws = tmp_path_factory.mktemp("bad_inputs")
    (ws / "truncated.pt").write_bytes(DEFAULT_MODEL.read_bytes()[:3000])
    (ws / "notes.pt").write_text("these are my notes, not a checkpoint\n")
    cv2.imwrite(str(ws / "photo.png"), np.full((48, 64, 3), 120, np.uint8))
    (ws / "empty").mkdir()
    (ws / "not_droid").mkdir()
    (ws / "not_droid" / "readme.txt").write_text("holiday pictures\n")
    missing_mp4 = _episode(ws / "missing_mp4")
    for video in missing_mp4.rglob("*.mp4"):
        video.unlink()
    truncated_h5 = _episode(ws / "truncated_h5")
    h5 = truncated_h5 / "trajectory.h5"
    h5.write_bytes(h5.read_bytes()[:2000])
    (ws / "links.txt").write_text(f"{missing_mp4}\n{truncated_h5}\n")
    (ws / "unknown_key.yaml").write_text("data:\n  cache: cache\n  frames_per_clips: 8\n")
    (ws / "no_cache.yaml").write_text("data:\n  source: cache\noptim:\n  total_steps: 10\n")
    (ws / "schedule.yaml").write_text("data:\n  cache: cache\noptim:\n  total_steps: 100\n  warmup_steps: 80\n"
                                      "  anneal_steps: 40\n")
    (ws / "keys").mkdir()
    assert main(["bridge", "keygen", str(ws / "keys"), "--name", "bridge"]) == 0
    (ws / "no_keys_folder.yaml").write_text(
        f"link:\n  secret_key: {ws / 'keys' / 'bridge.key_secret'}\n  authorized_keys: {ws / 'absent_keys'}\n"
    )
    (ws / "run_out").mkdir()
    (ws / "future_lerobot" / "meta").mkdir(parents=True)
    (ws / "future_lerobot" / "meta" / "info.json").write_text(json.dumps(
        {"codebase_version": "v4.0", "fps": 15, "features": {}, "data_path": "data/{chunk_index}.parquet"}))
    (ws / "run_out" / "steps.jsonl").write_text('{"earlier": "run"}\n')
    return ws


_MISSING_MP4 = "missing_mp4/SIM/success/*/*"
_TRUNCATED_H5 = "truncated_h5/SIM/success/*/*"
_SIM_OPTIONS = ("--episodes", "1", "--open-loop-episodes", "0", "--landscape-goals", "0")

CASES: dict[str, BadInput] = {
    "info: truncated .pt": BadInput(("info", "{ws}/truncated.pt"), "truncated.pt", 1),
    "info: text file": BadInput(("info", "{ws}/notes.pt"), "notes.pt", 1),
    "info: no such file": BadInput(("info", "{ws}/nothing.pt"), "nothing.pt", 2),
    "plan: truncated .pt": BadInput(("plan", "--checkpoint", "{ws}/truncated.pt", "--obs", "{ws}/photo.png",
                                     "--goal", "{ws}/photo.png", "--state", "0.5,0,0.3,3.14,0,0,0"),
                                    "truncated.pt", 1),
    "plan: text file as checkpoint": BadInput(("plan", "--checkpoint", "{ws}/notes.pt", "--obs", "{ws}/photo.png",
                                               "--goal", "{ws}/photo.png", "--state", "0.5,0,0.3,3.14,0,0,0"),
                                              "notes.pt", 1),
    "plan: text file as image": BadInput(("plan", "--obs", "{ws}/notes.pt", "--goal", "{ws}/photo.png", "--state",
                                          "0.5,0,0.3,3.14,0,0,0"), "notes.pt", 2),
    "plan: bad state": BadInput(("plan", "--obs", "{ws}/photo.png", "--goal", "{ws}/photo.png", "--state", "1,2"),
                                "--state", 2),
    "plan: no goal": BadInput(("plan", "--obs", "{ws}/photo.png", "--state", "0.5,0,0.3,3.14,0,0,0"),
                              "--goal or --goal-schedule", 2),
    "plan: no state": BadInput(("plan", "--obs", "{ws}/photo.png", "--goal", "{ws}/photo.png"), "--state", 2),
    "droid validate: image file": BadInput(("droid", "validate", "{ws}/photo.png", "--no-progress"), "photo.png", 1),
    "droid validate: empty folder": BadInput(("droid", "validate", "{ws}/empty", "--no-progress"), "empty", 1),
    "droid index: empty folder": BadInput(("droid", "index", "{ws}/empty", "--no-progress"), "empty", 1),
    "droid index: no such folder": BadInput(("droid", "index", "{ws}/nowhere", "--no-progress"), "nowhere", 2),
    "droid inspect: truncated h5": BadInput(("droid", "inspect", _TRUNCATED_H5), "trajectory.h5", 1),
    "lerobot export: --out exists": BadInput(("lerobot", "export", "{ws}/links.txt", "--out", "{ws}/empty",
                                              "--no-progress"), "empty", 2),
    "lerobot export: missing MP4": BadInput(("lerobot", "export", _MISSING_MP4, "--out", "{ws}/exported",
                                             "--no-progress"), "11111111.mp4", 1),
    "lerobot info: newer codebase_version": BadInput(("lerobot", "info", "{ws}/future_lerobot", "--no-progress"),
                                                     "v4.0", 1),
    "encode: empty folder": BadInput(("encode", "{ws}/empty", "--out", "{ws}/cache", "--encoder-checkpoint",
                                      "{ws}/truncated.pt"), "empty", 1),
    "encode: text file as checkpoint": BadInput(("encode", "{ws}/links.txt", "--out", "{ws}/cache",
                                                 "--encoder-checkpoint", "{ws}/notes.pt"), "notes.pt", 1),
    "encode: no checkpoint": BadInput(("encode", "{ws}/links.txt", "--out", "{ws}/cache"),
                                      "--encoder-checkpoint", 2),
    "train: unknown key": BadInput(("train", "{ws}/unknown_key.yaml"), "frames_per_clips", 2),
    "train: missing data.cache": BadInput(("train", "{ws}/no_cache.yaml"), "data.cache", 2),
    "train: missing YAML": BadInput(("train", "{ws}/absent.yaml"), "absent.yaml", 2),
    "train: warmup + anneal > total": BadInput(("train", "{ws}/schedule.yaml"), "optim.warmup_steps", 2),
    "train: override without =": BadInput(("train", "{ws}/schedule.yaml", "optim.total_steps"),
                                          "optim.total_steps", 2),
    "pretrain: empty folder": BadInput(("pretrain", "{ws}/empty", "--out", "{ws}/pretrain_out"), "empty", 1),
    "sim replay: missing MP4": BadInput(("sim", "replay", _MISSING_MP4, "--no-progress"), "11111111.mp4", 1),
    "sim replay: truncated h5": BadInput(("sim", "replay", _TRUNCATED_H5, "--no-progress"), "trajectory.h5", 1),
    "sim replay: not a DROID folder": BadInput(("sim", "replay", "{ws}/not_droid", "--no-progress"), "not_droid", 1),
    "sim collect: negative episodes": BadInput(("sim", "collect", "--task", "reach", "--episodes", "-1", "--out",
                                                "{ws}/collected"), "--episodes", 2),
    "sim show: image size": BadInput(("sim", "show", "--image-size", "4x4", "--out", "{ws}/show"), "4x4", 2),
    "run: no bridge running": BadInput(("run", "--robot", "bridge", "--goal", "{ws}/photo.png", "--port-base",
                                        "{port}", "--out", "{ws}/run_out", "--no-video"), "127.0.0.1", 1),
    "run: bridge without goal": BadInput(("run", "--robot", "bridge", "--out", "{ws}/run_out"), "--goal", 2),
    "run: unknown task": BadInput(("run", "--robot", "sim", "--task", "juggle", "--out", "{ws}/run_out"),
                                  "juggle", 2),
    "bridge run: 0.0.0.0 without keys": BadInput(("bridge", "run", "--host", "0.0.0.0", "--port-base", "{port}"),
                                                 "0.0.0.0", 1),
    "bridge run: no ROS installed": BadInput(("bridge", "run", "--backend", "ros1", "--port-base", "{port}"),
                                             "python3-rospy", 1, without=("rospy",)),
    "bridge run: no ROS master": BadInput(("bridge", "run", "--backend", "ros1", "--port-base", "{port}"),
                                          "ROS", 1, environment=(("ROS_MASTER_URI", "http://127.0.0.1:{port}"),)),
    "bridge run: missing authorised-keys folder": BadInput(("bridge", "run", "--config", "{ws}/no_keys_folder.yaml",
                                                            "--port-base", "{port}"), "absent_keys", 1),
    "bridge run: missing config": BadInput(("bridge", "run", "--config", "{ws}/absent_bridge.yaml"),
                                           "absent_bridge.yaml", 2),
    "bridge keygen: keys exist": BadInput(("bridge", "keygen", "{ws}/keys", "--name", "bridge"), "bridge.key", 1),
    "bridge status: no bridge": BadInput(("bridge", "status", "--port-base", "{port}", "--timeout", "0.3"),
                                         "127.0.0.1", 1),
    "bridge fake-franka-ros: no ROS installed": BadInput(("bridge", "fake-franka-ros",), "python3-rospy", 1,
                                                         without=("rospy",)),
    "demo: text file as checkpoint": BadInput(("demo", "--checkpoint", "{ws}/notes.pt", "--out", "{ws}/demo_out",
                                               "--no-video", *_SIM_OPTIONS[:2]), "notes.pt", 1),
    "eval: truncated .pt": BadInput(("eval", "--checkpoint", "{ws}/truncated.pt", "--out", "{ws}/eval_out",
                                     *_SIM_OPTIONS), "truncated.pt", 1),
    "eval: unknown task": BadInput(("eval", "--task", "juggle", *_SIM_OPTIONS), "juggle", 2),
    "goal capture: no bridge running": BadInput(("goal", "capture", "--robot", "bridge", "--port-base", "{port}",
                                                 "--out", "{ws}/goals_out", "--commands", "capture finish"),
                                                "127.0.0.1", 1),
    "calibrate: no bridge running": BadInput(("calibrate", "--robot", "bridge", "--port-base", "{port}", "--out",
                                              "{ws}/frame.json"), "127.0.0.1", 1),
    "bridge home: no bridge": BadInput(("bridge", "home", "--port-base", "{port}", "--timeout", "0.3"),
                                       "127.0.0.1", 1),
    "bridge recover: no bridge": BadInput(("bridge", "recover", "--port-base", "{port}", "--timeout", "0.3"),
                                          "127.0.0.1", 1),
    "teleop: no bridge running": BadInput(("teleop", "--robot", "bridge", "--port-base", "{port}", "--record",
                                           "{ws}/teleop_out", "--commands", "x+ success"), "127.0.0.1", 1),
    "goal show: image instead of a schedule": BadInput(("goal", "show", "{ws}/photo.png"), "photo.png", 1),
}


@pytest.fixture
def port_base() -> int:
    """A loopback port nobody listens on (the cases only connect to it, or fail before binding)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under `root` with a hash of its content."""
    found = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        found[key] = "dir" if path.is_dir() else hashlib.sha1(path.read_bytes()).hexdigest()
    return found


def _expand(argument: str, workspace: Path, port: int) -> str:
    argument = argument.replace("{ws}", str(workspace)).replace("{port}", str(port))
    if "*" in argument:
        (match,) = workspace.glob(argument)
        return str(match)
    return argument


def test_every_subcommand_is_driven_by_the_table():
    parser = build_parser()
    commands = set()
    for action in parser._subparsers._group_actions:
        for name, sub in action.choices.items():
            nested = [a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction"]
            commands |= {f"{name} {inner}" for a in nested for inner in a.choices} or {name}
    driven = {" ".join(case.argv[:2]) if " ".join(case.argv[:2]) in commands else case.argv[0]
              for case in CASES.values()}
    assert commands <= driven, f"subcommands without a bad-input case: {sorted(commands - driven)}"


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_fails_cleanly_and_touches_nothing(case, workspace, port_base, monkeypatch, capsys):
    bad = CASES[case]
    monkeypatch.chdir(workspace)  # default output files would land here and be seen
    for module in bad.without:
        monkeypatch.setitem(sys.modules, module, None)  # `import rospy` raises ImportError, as when not installed
    for name, value in bad.environment:
        monkeypatch.setenv(name, _expand(value, workspace, port_base))
    argv = [_expand(a, workspace, port_base) for a in bad.argv]
    before = _snapshot(workspace)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    out, err = capsys.readouterr()
    assert code == bad.exit_code, err
    assert "Traceback" not in out + err
    error_lines = [line for line in err.splitlines() if "error:" in line]
    assert error_lines and bad.names in " ".join(error_lines), err
    assert _snapshot(workspace) == before


def test_traceback_only_with_verbose(workspace, capsys):
    assert main(["info", str(workspace / "notes.pt")]) == 1
    assert "Traceback" not in capsys.readouterr().err
    assert main(["info", str(workspace / "notes.pt"), "-v"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().splitlines()[-1].startswith("vjepa-ac info: error: ")


def test_describe_error_names_inputs_and_labels_bugs():
    missing = FileNotFoundError(2, "No such file or directory", "/x/y.pt")
    assert describe_error(missing) == "/x/y.pt: No such file or directory"
    assert describe_error(KeyError("unknown config key 'a'")) == "unknown config key 'a'"
    assert describe_error(TypeError("bad operand")).startswith("internal error (TypeError: bad operand)")


HEAVY_MODULES = ("torch", "tensorstore", "h5py")


def test_help_of_every_subcommand_imports_no_heavy_module():
    parser = build_parser()
    commands: list[list[str]] = [[]]
    for action in parser._subparsers._group_actions:
        for name, sub in action.choices.items():
            commands.append([name])
            for inner in (a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction"):
                commands += [[name, nested] for nested in inner.choices]
    script = (
        "import json, sys\n"
        "from vjepa_ac.cli import main\n"
        "loaded = {}\n"
        "for argv in json.loads(sys.argv[1]):\n"
        "    try:\n"
        "        main([*argv, '--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"    loaded[' '.join(argv)] = [m for m in {HEAVY_MODULES!r} if m in sys.modules]\n"
        "print(json.dumps(loaded), file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, json.dumps(commands)], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
                            timeout=300)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stderr.strip().splitlines()[-1])
    assert len(loaded) == len(commands) > 20
    assert {command: modules for command, modules in loaded.items() if modules} == {}
    assert "usage: vjepa-ac" in result.stdout
