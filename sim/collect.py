"""Collect simulated episodes in the raw DROID layout: scripted experts with noise, perturbations and pure random
exploration, three cameras (left/right exterior and wrist), written through `data.droid.write_episode`.

Collection is seeded per episode (episode i of a run with seed s always plays out the same) and resumable: every
finished episode is appended to `<out>/sim_collect.jsonl`, and a rerun skips the (task, seed, index) triples listed
there.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data.droid.poses import apply_actions
from data.droid.writer import CameraRecording, EpisodeRecording, write_episode
from sim.experts import ExpertConfig, RandomExplorer, ScriptedExpert
from sim.robot import SimRobot
from sim.scene import SceneConfig, cube_color_name
from sim.tasks import TASKS, Task, make_env

MANIFEST_NAME = "sim_collect.jsonl"
CAMERA_SERIALS = {"left": "20000001", "right": "20000002", "wrist": "10000001"}
"""Made-up ZED serials; DROID tells cameras apart by serial and derives left/right from the extrinsics."""
TASK_INSTRUCTIONS = {
    "reach": "move the gripper to the goal position",
    "grasp": "pick up the {color} cube",
    "reach_with_object": "carry the {color} cube to the goal position",
    "pick_and_place": "put the {color} cube on the mat",
}


@dataclass(frozen=True)
class CollectConfig:
    task: str = "pick_and_place"
    episodes: int = 10
    seed: int = 0
    image_size: tuple[int, int] = (180, 320)
    """(height, width) of every camera's frames; DROID's raw videos are 720x1280."""
    explore_fraction: float = 0.2
    """Share of episodes driven by the random explorer instead of the expert."""
    perturb_probability: float = 0.3
    """Chance that an expert episode gets a burst of random actions at a random time."""
    steps_after_success: int = 8
    """Keep recording this many steps after the task succeeds (the operator's reaction time)."""
    min_steps: int = 48
    """Shortest episode (capped at the task's step budget): V-JEPA 2-AC's 8-frame clips at 4 fps span 32 steps."""
    min_speed_factor: float = 0.4
    """Expert episodes move at a random fraction in [min_speed_factor, 1] of the expert's top speed."""
    randomize_appearance: bool = True
    camera_yaw: float = 0.0
    """Degrees the exterior cameras orbit the robot base (`sim.robot.SimConfig.camera_yaw`)."""
    robot: str = "panda"
    """Robot model, see `sim.scene.SceneConfig.robot`."""
    expert: ExpertConfig = field(default_factory=ExpertConfig)
    lab: str = "SIM"


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
    if not 0.0 <= config.explore_fraction <= 1.0:
        raise ValueError(f"explore_fraction must be in [0, 1], got {config.explore_fraction}")
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
                                       camera_yaw=config.camera_yaw, scene=SceneConfig(robot=config.robot))
            else:
                robot, task = make_env(config.task, seed=task_seed, robot=robot)
            explore = bool(rng.random() < config.explore_fraction)
            recording = record_episode(task, rng, config, explore=explore)
            path = write_episode(out, recording)
            # Recorded right after the episode folder appears, so a rerun redoes at most the interrupted episode.
            entry = {"task": config.task, "seed": config.seed, "index": index, "task_seed": task_seed,
                     "explore": explore, "success": recording.success, "steps": recording.num_steps,
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


def record_episode(task: Task, rng: np.random.Generator, config: CollectConfig, *, explore: bool) -> EpisodeRecording:
    """Run one episode on an already reset task and return its DROID recording."""
    robot = task.robot
    # Each expert episode moves at its own speed, so the data holds a range of action sizes.
    speed = float(rng.uniform(config.min_speed_factor, 1.0))
    expert_config = replace(config.expert, max_translation=config.expert.max_translation * speed)
    policy = RandomExplorer(rng) if explore else ScriptedExpert(task, rng, expert_config)
    explorer = RandomExplorer(rng)
    perturbed = not explore and rng.random() < config.perturb_probability
    perturb_at = int(rng.integers(5, task.max_steps // 2)) if perturbed else -1
    perturb_steps = int(rng.integers(5, 15))
    min_steps = min(config.min_steps, task.max_steps)
    num_steps = int(rng.integers(min_steps, task.max_steps + 1)) if explore else task.max_steps

    frames = {role: [] for role in CAMERA_SERIALS}
    extrinsics = {role: [] for role in CAMERA_SERIALS}
    states, joints, velocities, targets, gripper_targets, joint_targets = [], [], [], [], [], []
    success_step = None
    for step in range(num_steps + 1):
        state = robot.droid_state()
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

    color = cube_color_name(robot.model)
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
        task=TASK_INSTRUCTIONS[task.name].format(color=color),
        success=success_step is not None,
        lab=config.lab,
        scene_id=f"sim-{task.name}",
        extra_attrs={"sim_task": task.name, "sim_policy": "explore" if explore else "expert",
                     "sim_config": json.dumps(asdict(config), default=str)},
    )

