"""Collect simulated episodes in the raw DROID layout, three cameras (left/right exterior and wrist), written through
`data.droid.write_episode`.

Each episode is driven in one motion mode (`MOTION_MODES`), drawn with the configured proportions: the scripted
expert (action noise, sometimes a burst of random actions), a much noisier expert, a deliberately failed attempt
(`sim.experts.FailedAttempt`) or random exploration ("explore"). With domain randomisation on (the default), every
episode also gets its own scene (`sim.randomization`). Each episode's `trajectory.h5` is self-describing: root
attributes `sim_policy` (its mode), `sim_failure`, `sim_motion_mix` (the proportions), `sim_scene` (the scene
variation, JSON; empty for the fixed scene) and `sim_config`, plus the pose of every object at every step under
`observation/sim_object_poses/<name>` ([T, 6] xyz + Euler "xyz", base frame) for `vjepa-ac sim replay`.

Collection is seeded per episode (episode i of a run with seed s always plays out the same) and resumable: every
finished episode is appended to `<out>/sim_collect.jsonl`, and a rerun skips the (task, seed, index) triples listed
there. An episode's recording time, and with it its folder, DROID uuid and episode id, comes from (task, seed,
index) as well (`recording_time`), not from the clock: a collection run again is the same dataset under the same
names, so training's held-out split (a hash of the episode ids) is the same too.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vjepa_ac.data.droid.poses import apply_actions
from vjepa_ac.data.droid.writer import CameraRecording, EpisodeRecording, write_episode
from vjepa_ac.sim.collect_config import CollectConfig
from vjepa_ac.sim.experts import FailedAttempt, RandomExplorer, ScriptedExpert
from vjepa_ac.sim.robot import SimRobot
from vjepa_ac.sim.scene import SceneConfig, cube_color_name, cube_shape_name
from vjepa_ac.sim.tasks import TASKS, Task, make_env

MANIFEST_NAME = "sim_collect.jsonl"
MOTION_MODES = ("explore", "noisy_expert", "failed", "expert")
"""How an episode is driven; drawn in this order from the configured fractions (the expert takes the rest)."""
OBJECT_POSES_GROUP = "observation/sim_object_poses"
CAMERA_SERIALS = {"left": "20000001", "right": "20000002", "wrist": "10000001"}
"""Made-up ZED serials; DROID tells cameras apart by serial and derives left/right from the extrinsics."""
TASK_INSTRUCTIONS = {
    "reach": "move the gripper to the goal position",
    "grasp": "pick up the {color} {shape}",
    "reach_with_object": "carry the {color} {shape} to the goal position",
    "pick_and_place": "put the {color} {shape} on the mat",
}


@dataclass
class CollectSummary:
    written: int = 0
    skipped: int = 0
    successes: int = 0
    paths: list[Path] = field(default_factory=list)


def _episode_rng(config: CollectConfig, index: int) -> tuple[int, np.random.Generator]:
    seq = np.random.SeedSequence([config.seed, index])
    task_seed = int(seq.generate_state(1)[0])
    return task_seed, np.random.default_rng(seq.spawn(1)[0])


SIM_EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)
"""Recording times of collected episodes lie in the year from this date."""
EPISODE_SPACING = timedelta(seconds=20)
"""Recording times of consecutive episodes of one run lie this far apart (longer than any episode)."""


def recording_time(task: str, seed: int, index: int) -> datetime:
    """The recording time written for episode `index` of a (task, seed) run: a day of the year after `SIM_EPOCH`
    drawn from a hash of (task, seed), plus `index` x `EPISODE_SPACING`."""
    day = int(hashlib.sha1(f"{task}/{seed}".encode()).hexdigest()[:8], 16) % 365
    return SIM_EPOCH + timedelta(days=day) + index * EPISODE_SPACING


def _read_manifest(path: Path) -> set[tuple[str, int, int]]:
    done = set()
    if path.exists():
        for line_number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                done.add((entry["task"], int(entry["seed"]), int(entry["index"])))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path}:{line_number}: not a collection record ({exc})") from None
    return done


def collect(out: str | Path, config: CollectConfig, *, progress: bool = True) -> CollectSummary:
    """Collect `config.episodes` episodes of `config.task` into `out` (a DROID root folder)."""
    if config.task not in TASKS:
        raise ValueError(f"unknown task {config.task!r}; choose from {list(TASKS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / MANIFEST_NAME
    done = _read_manifest(manifest)
    summary = CollectSummary()
    robot: SimRobot | None = None
    bar = tqdm(range(config.episodes), desc=f"sim collect {config.task}", unit="ep", disable=not progress)
    try:
        for index in bar:
            if (config.task, config.seed, index) in done:
                summary.skipped += 1
                continue
            task_seed, rng = _episode_rng(config, index)
            if robot is None:
                robot, task = make_env(config.task, seed=task_seed, image_size=config.image_size,
                                       randomize_appearance=config.randomize_appearance,
                                       randomization=config.randomization, camera_yaw=config.camera_yaw,
                                       scene=SceneConfig(robot=config.robot))
            else:
                robot, task = make_env(config.task, seed=task_seed, robot=robot)
            mode = config.motion_mode(float(rng.random()))
            recording = record_episode(task, rng, config, mode=mode)
            path = write_episode(out, recording, when=recording_time(config.task, config.seed, index))
            # Recorded right after the episode folder appears, so a rerun redoes at most the interrupted episode.
            entry = {"task": config.task, "seed": config.seed, "index": index, "task_seed": task_seed,
                     "mode": mode, "success": recording.success, "steps": recording.num_steps,
                     "path": str(path.relative_to(out))}
            with manifest.open("a") as f:
                f.write(json.dumps(entry) + "\n")
            summary.written += 1
            summary.successes += int(recording.success)
            summary.paths.append(path)
            bar.set_postfix(success=f"{summary.successes}/{summary.written}")
    finally:
        if robot is not None:
            robot.close()
    return summary


def record_episode(task: Task, rng: np.random.Generator, config: CollectConfig, *, mode: str) -> EpisodeRecording:
    """Run one episode in motion `mode` (see `MOTION_MODES`) on an already reset task and return its recording."""
    if mode not in MOTION_MODES:
        raise ValueError(f"unknown motion mode {mode!r}; choose from {MOTION_MODES}")
    robot = task.robot
    explore = mode == "explore"
    # Each expert episode moves at its own speed, so the data holds a range of action sizes.
    speed = float(rng.uniform(config.min_speed_factor, 1.0))
    base = config.noisy_expert if mode == "noisy_expert" else config.expert
    expert_config = replace(base, max_translation=base.max_translation * speed)
    if explore:
        policy = RandomExplorer(rng)
    elif mode == "failed":
        policy = FailedAttempt(task, rng, expert_config)
    else:
        policy = ScriptedExpert(task, rng, expert_config)
    explorer = RandomExplorer(rng)
    perturbed = mode in ("expert", "noisy_expert") and rng.random() < config.perturb_probability
    perturb_at = int(rng.integers(5, task.max_steps // 2)) if perturbed else -1
    perturb_steps = int(rng.integers(5, 15))
    min_steps = min(config.min_steps, task.max_steps)
    num_steps = int(rng.integers(min_steps, task.max_steps + 1)) if explore else task.max_steps

    frames = {role: [] for role in CAMERA_SERIALS}
    extrinsics = {role: [] for role in CAMERA_SERIALS}
    states, joints, velocities, targets, gripper_targets, joint_targets = [], [], [], [], [], []
    object_poses = {name: [] for name in robot.object_names}
    success_step = None
    for step in range(num_steps + 1):
        state = robot.droid_state()
        for name, pose in robot.object_poses().items():
            object_poses[name].append(pose)
        for role, image in robot.render(tuple(CAMERA_SERIALS)).items():
            frames[role].append(image)
            extrinsics[role].append(robot.camera_extrinsics(role))
        states.append(state)
        joints.append(robot.joint_positions)
        velocities.append(robot.joint_velocities)
        settled = success_step is not None and step - success_step >= config.steps_after_success
        if step == num_steps or (settled and step >= min_steps):
            # DROID's last step has an action too; the robot would hold where it is.
            targets.append(state[:6])
            gripper_targets.append(state[6])
            joint_targets.append(robot.joint_positions)
            break
        # After success, short episodes continue with free play until they are long enough for clip sampling.
        use_explorer = perturb_at <= step < perturb_at + perturb_steps or settled
        result = robot.send_action((explorer if use_explorer else policy).act(state))
        applied = result.applied if result.ok else np.zeros(7)
        target = apply_actions(state, applied)
        targets.append(target[:6])
        gripper_targets.append(target[6])
        joint_targets.append(robot.last_joint_target)
        if success_step is None and task.success():
            success_step = step

    color, shape = cube_color_name(robot.model), cube_shape_name(robot.model)
    cameras = {
        CAMERA_SERIALS[role]: CameraRecording(
            frames=np.stack(frames[role]), extrinsics=np.stack(extrinsics[role]),
            kind="wrist" if role == "wrist" else "exterior")
        for role in CAMERA_SERIALS
    }
    states_arr = np.stack(states)
    return EpisodeRecording(
        cartesian_position=states_arr[:, :6],
        gripper_position=states_arr[:, 6],
        joint_positions=np.stack(joints),
        joint_velocities=np.stack(velocities),
        cameras=cameras,
        action_cartesian_position=np.stack(targets),
        action_gripper_position=np.asarray(gripper_targets),
        action_joint_position=np.stack(joint_targets),
        task=TASK_INSTRUCTIONS[task.name].format(color=color, shape=shape),
        success=success_step is not None,
        lab=config.lab,
        scene_id=f"sim-{task.name}",
        extra_attrs={"sim_task": task.name, "sim_policy": mode,
                     "sim_failure": policy.failure if isinstance(policy, FailedAttempt) else "",
                     "sim_motion_mix": json.dumps(config.motion_mix),
                     "sim_scene": robot.variation.to_json() if robot.variation is not None else "",
                     "sim_config": json.dumps(asdict(config), default=str)},
        extra_datasets={f"{OBJECT_POSES_GROUP}/{name}": np.stack(poses) for name, poses in object_poses.items()},
    )

