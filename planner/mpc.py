"""Receding-horizon control over a `robot.interface.Robot`: observe, encode, plan, send the first action, repeat.

The current camera frame is encoded once per control step; the planner then scores candidate action sequences by
imagining their outcome with the AC predictor (`planner.rollout.WorldModelRollout`) and comparing it with the encoded
goal image. Several goal images are visited in order (pick-and-place sub-goals), switching after a fixed number of
steps per goal (the paper's 4/10/4 schedule), or on the observed frame's energy to the current goal: once it is low
enough (reached) or stops falling (plateaued), with the per-goal step counts as caps (`GoalSwitcher`).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from vjepa_ac.data.conventions import camera_views, join_views
from vjepa_ac.data.droid.poses import states_to_actions
from vjepa_ac.planner.action_frame import ActionFrame
from vjepa_ac.planner.action_space import GRIPPER_DIM
from vjepa_ac.planner.base import PlanResult, RolloutFn
from vjepa_ac.planner.cem import CEMConfig, CEMPlanner, shift_plan
from vjepa_ac.planner.mppi import MPPIConfig, MPPIPlanner
from vjepa_ac.planner.objectives import GoalObjective, Metric, Reduction, latent_distance
from vjepa_ac.planner.report import JsonlWriter
from vjepa_ac.planner.threads import ThreadChoice, choose_threads
from vjepa_ac.planner.rollout import Precision, WorldModelRollout, candidate_memory_bytes
from vjepa_ac.robot.interface import ActionStatus, Robot

log = logging.getLogger(__name__)

PlannerConfig = CEMConfig | MPPIConfig

_THREAD_CHOICES: dict[tuple[int, int, int], ThreadChoice] = {}
"""Measured thread choices per (predictor, samples, horizon) in this process."""

RolloutFactory = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], RolloutFn]
"""(context latents [K, N, D], context states [K, 7], the K-1 actions between them or None; both in the model's action
frame) -> the rollout a plan scores its candidates with. The default is the world model's predictor
(`planner.rollout.WorldModelRollout`); a study may imagine candidates another way (e.g. by rendering a simulator)."""


@dataclass
class MPCConfig:
    """Closed-loop settings. The planner defaults are the paper's CEM (800 x 10, top 10, horizon 1)."""

    planner: PlannerConfig = field(default_factory=CEMConfig)
    max_steps: int | None = None
    """Control-step budget; None = the sum of `goal_schedule`, or 50 without a schedule."""
    goal_schedule: tuple[int, ...] | None = None
    """Steps spent on each goal image, e.g. (4, 10, 4); leftover budget stays on the last goal."""
    goal_gripper: tuple[float | None, ...] | None = None
    """Δgripper pinned while each goal image is in force (None = searched), e.g. (-0.5, 0.5) to approach with the
    fingers open and then close them; goals beyond the tuple are searched. For a world model that plans the arm well
    but hardly sees its fingers."""
    goal_max_translation: tuple[float | None, ...] | None = None
    """Bound on Δxyz per step while each goal image is in force (None = the search space's `max_translation`), e.g.
    (None, 0.03, 0.0, None) to approach freely, straddle an object in small steps and close the fingers in place;
    goals beyond the tuple use the search space's bound. Near its goal a planner that cannot resolve the last
    centimetres moves the hand at random by up to the bound each step, which pushes a small object aside."""
    goal_reduce: tuple[Reduction | None, ...] | None = None
    """The energy's reduction over the imagined steps while each goal image is in force (None = `reduce`), e.g.
    ("last", "sum", "sum", "sum"): "last" lets a far goal be reached by any route (the search looks past ridges);
    "sum" also scores the steps on the way, so near a goal the plan moves there at once and stays, instead of sending
    an arbitrary first step that later steps of the plan would have undone."""
    switch_energy: float | None = None
    """Move to the next goal once the observed frame's energy to the current goal is at most this (reached)."""
    switch_plateau: int | None = None
    """Move to the next goal once the observed energy to the current goal has not fallen below its best value from
    before by more than `plateau_drop` for this many steps (plateaued). With either energy rule, `goal_schedule`'s
    step counts become caps: a goal is left after that many steps even if its energy still falls."""
    plateau_drop: float = 0.02
    """Relative fall of the energy that counts as progress for `switch_plateau`."""
    plateau_floor: float | None = None
    """A plateau counts only once the energy is at most this (None: anywhere): an arm stuck far from the goal keeps
    trying until the goal's step cap instead of moving on."""
    regrasp: tuple[int, int] | None = None
    """(check goal, back-to goal), e.g. (3, 1) for approach / straddle / close / lift: while the check goal is in
    force and the gripper reads closed past `empty_gripper` (the fingers met: nothing between them), go back to the
    back-to goal and try again, at most `max_regrasps` times. The hand's width, not the energy, tells a missed grasp:
    a small object changes too few pixels for a small encoder's energy to show it."""
    empty_gripper: float = 0.95
    """Gripper reading (0 open .. 1 closed) above which the hand is taken to be empty."""
    max_regrasps: int = 2
    stop_energy: float | None = None
    """Stop once the observed frame's energy to the last goal is at most this."""
    camera: str = "left"
    """Camera role whose frames are encoded."""
    max_frame_age_s: float | None = 0.5
    """Refuse to plan from a frame captured longer than this before the state it comes with (seconds, on the
    producer's clock; None = no bound): a stalled camera must not make the arm chase an old view."""
    context_frames: int = 1
    """Observed frames the predictor sees as context (1 = only the current frame, as the reference)."""
    metric: Metric = "l1"
    reduce: Reduction = "last"
    precision: Precision = "auto"
    compile: bool = False
    threads: int | None = None
    """torch CPU threads for planning; None = chosen by measurement at the first plan on a CPU (`planner.threads`),
    between 1 and torch's thread count when planning starts."""
    max_rejections: int = 3
    """Stop after this many consecutive actions refused by the robot."""
    surprise_gate: float | None = None
    """Skip re-planning while the observed frame's latent is within this distance (the planner's metric) of the latent
    the last plan imagined for it: the next action of that plan is sent instead, at most until the plan's horizon is
    used up. None = re-plan at every step."""
    action_frame_yaw: float = 0.0
    """Degrees the world model's action frame is turned from the robot base frame about the vertical
    (`planner.action_frame.ActionFrame`, estimated by `vjepa-ac calibrate`): states and context actions are rotated
    into the model's frame before planning, and planned actions back into the base frame before they are sent. The
    plan's sampling means / stds stay in the model's frame."""

    def __post_init__(self) -> None:
        if self.goal_schedule is not None:
            self.goal_schedule = tuple(int(n) for n in self.goal_schedule)
            if not self.goal_schedule or min(self.goal_schedule) < 1:
                raise ValueError(f"goal_schedule must hold positive step counts, got {self.goal_schedule}")
        if self.goal_gripper is not None:
            self.goal_gripper = tuple(None if g is None else float(g) for g in self.goal_gripper)
            if any(g is not None and not -1.0 <= g <= 1.0 for g in self.goal_gripper):
                raise ValueError(f"goal_gripper values must be in [-1, 1] or None, got {self.goal_gripper}")
        if self.goal_max_translation is not None:
            self.goal_max_translation = tuple(None if m is None else float(m) for m in self.goal_max_translation)
            if any(m is not None and not (math.isfinite(m) and m >= 0) for m in self.goal_max_translation):
                raise ValueError(f"goal_max_translation values must be finite and >= 0 or None, got "
                                 f"{self.goal_max_translation}")
        if self.goal_reduce is not None:
            self.goal_reduce = tuple(self.goal_reduce)
            if any(r not in (None, "last", "sum") for r in self.goal_reduce):
                raise ValueError(f"goal_reduce values must be 'last', 'sum' or None, got {self.goal_reduce}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {self.threads}")
        if self.context_frames < 1:
            raise ValueError(f"context_frames must be >= 1, got {self.context_frames}")
        if self.max_frame_age_s is not None and not self.max_frame_age_s > 0:
            raise ValueError(f"max_frame_age_s must be > 0 or None, got {self.max_frame_age_s}")
        if self.surprise_gate is not None and not (math.isfinite(self.surprise_gate) and self.surprise_gate > 0):
            raise ValueError(f"surprise_gate must be a finite distance > 0 or None, got {self.surprise_gate}")
        for name in ("switch_energy", "stop_energy"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value}")
        if self.switch_plateau is not None and self.switch_plateau < 1:
            raise ValueError(f"switch_plateau must be >= 1 steps, got {self.switch_plateau}")
        if not 0.0 <= self.plateau_drop < 1.0:
            raise ValueError(f"plateau_drop must be in [0, 1), got {self.plateau_drop}")
        if self.plateau_floor is not None and not (math.isfinite(self.plateau_floor) and self.plateau_floor > 0):
            raise ValueError(f"plateau_floor must be finite and > 0, got {self.plateau_floor}")
        if self.regrasp is not None:
            self.regrasp = (int(self.regrasp[0]), int(self.regrasp[1]))
            if not 0 <= self.regrasp[1] < self.regrasp[0]:
                raise ValueError(f"regrasp must be (check goal, earlier goal to go back to), got {self.regrasp}")
        if self.max_regrasps < 0:
            raise ValueError(f"max_regrasps must be >= 0, got {self.max_regrasps}")
        self.action_frame_yaw = ActionFrame(float(self.action_frame_yaw)).yaw

    @property
    def step_budget(self) -> int:
        if self.max_steps is not None:
            return self.max_steps
        return sum(self.goal_schedule) if self.goal_schedule else 50


def make_planner(config: PlannerConfig) -> CEMPlanner | MPPIPlanner:
    if isinstance(config, CEMConfig):
        return CEMPlanner(config)
    if isinstance(config, MPPIConfig):
        return MPPIPlanner(config)
    raise TypeError(f"planner config must be a CEMConfig or MPPIConfig, got {type(config).__name__}")


def check_goal_images(
    goal_images: Sequence[np.ndarray], frame_shape: tuple[int, ...] | None = None
) -> list[np.ndarray]:
    """The goal images as a list of uint8 [H, W, 3] arrays, or ValueError naming the problem.

    With `frame_shape`, each goal must have the camera frame's size: the crop and resize before encoding depend on
    it, so a goal of another size would be compared with a differently framed view.
    """
    goals = list(goal_images)
    if not goals:
        raise ValueError("no goal image given; planning needs at least one")
    for i, goal in enumerate(goals):
        goal = np.asarray(goal)
        if goal.dtype != np.uint8 or goal.ndim != 3 or goal.shape[2] != 3:
            raise ValueError(f"goal image {i} must be uint8 [H, W, 3] RGB, got {goal.dtype} {goal.shape}")
        if frame_shape is not None and goal.shape != tuple(frame_shape):
            raise ValueError(
                f"goal image {i} is {goal.shape[1]}x{goal.shape[0]} but the camera frames are "
                f"{frame_shape[1]}x{frame_shape[0]}; take goal images with the same camera and resolution"
            )
        goals[i] = goal
    return goals


def check_state(state: np.ndarray | Sequence[float]) -> np.ndarray:
    """A DROID state as a float64 7-vector, or ValueError (wrong size, NaN / infinite values)."""
    arr = np.asarray(state, dtype=np.float64)
    if arr.shape != (7,):
        raise ValueError(f"state must have 7 values (xyz, euler xyz, gripper), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"state has non-finite values: {arr.tolist()}")
    return arr


class LatentPlanner:
    """A world model, a planner and encoded goals: plans one action from one or more observed frames.

    `world_model` is a `worldmodel.WorldModel` (encoder + predictor + crop); `rollout_factory` replaces its predictor
    as the imagination of candidates (see `RolloutFactory`), the encoder and goals staying the world model's.
    """

    def __init__(self, world_model, goal_images: Sequence[np.ndarray], config: MPCConfig | None = None, *,
                 rollout_factory: RolloutFactory | None = None) -> None:
        self.world_model = world_model
        self.config = config or MPCConfig()
        self.rollout_factory = rollout_factory
        self.action_frame = ActionFrame(self.config.action_frame_yaw)
        self.planner = make_planner(self._fit_batch(self.config.planner))
        self._goal_planners: dict[int, CEMPlanner | MPPIPlanner] = {}
        self.goal_images = check_goal_images(goal_images)
        shapes = {g.shape for g in self.goal_images}
        if len(shapes) > 1:
            raise ValueError(f"goal images must share one size, got {sorted(shapes)}")
        self.goal_latents = self.encode(self.goal_images)
        self.thread_choice: ThreadChoice | None = None
        """How many CPU threads plans run on and why; set at the first plan."""

    def _choose_threads(self, rollout: RolloutFn, objective: GoalObjective) -> None:
        """Set the thread count once: the configured one, or the fastest on a probe of this model (a rollout of up to
        64 candidates over the planning horizon)."""
        if self.config.threads is not None:
            torch.set_num_threads(self.config.threads)
            self.thread_choice = ThreadChoice(self.config.threads)
        elif self.world_model.device.type != "cpu":
            self.thread_choice = ThreadChoice(torch.get_num_threads())
        else:
            planner = self.planner.config
            key = (id(self.world_model.predictor), planner.samples, planner.horizon)
            if key not in _THREAD_CHOICES:  # once per model and budget in a process, not once per episode
                probe_actions = torch.zeros(min(planner.samples, 64), planner.horizon, 7)
                with torch.no_grad():
                    _THREAD_CHOICES[key] = choose_threads(lambda: objective(rollout(probe_actions)))
            self.thread_choice = _THREAD_CHOICES[key]
            torch.set_num_threads(self.thread_choice.threads)

    def _fit_batch(self, planner: PlannerConfig) -> PlannerConfig:
        """On CUDA without an explicit `max_batch`, chunk the candidates so their caches fill at most half of the free
        memory (800 candidates of the ViT-g predictor would need ~40 GB in fp32)."""
        device = self.world_model.device
        if planner.max_batch is not None or device.type != "cuda":
            return planner
        predictor = self.world_model.predictor
        dtype = torch.bfloat16 if self.config.precision != "float32" else next(predictor.parameters()).dtype
        steps = self.config.context_frames + planner.horizon
        per_candidate = candidate_memory_bytes(predictor, steps, dtype)
        free, _ = torch.cuda.mem_get_info(device)
        fitting = max(1, int(free // 2 // per_candidate))
        if fitting >= planner.samples:
            return planner
        log.info("evaluating %d candidates per predictor call to fit GPU memory", fitting)
        return dataclasses.replace(planner, max_batch=fitting)

    @property
    def num_goals(self) -> int:
        return len(self.goal_images)

    def planner_for(self, goal_index: int) -> CEMPlanner | MPPIPlanner:
        """The planner used toward goal `goal_index`: the configured one, with Δgripper pinned where `goal_gripper`
        says so and Δxyz bounded where `goal_max_translation` does."""
        gripper = _per_goal(self.config.goal_gripper, goal_index)
        bound = _per_goal(self.config.goal_max_translation, goal_index)
        if gripper is None and bound is None:
            return self.planner
        if goal_index not in self._goal_planners:
            config = self.planner.config
            space = config.space
            if gripper is not None:
                space = dataclasses.replace(space, fixed={**space.fixed, GRIPPER_DIM: gripper})
            if bound is not None:
                space = dataclasses.replace(space, max_translation=bound, init_std_translation=(
                    None if space.init_std_translation is None else min(space.init_std_translation, bound)))
            self._goal_planners[goal_index] = make_planner(dataclasses.replace(config, space=space))
        return self._goal_planners[goal_index]

    def encode(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Normalized latents [K, N, D] of K RGB frames, each encoded on its own."""
        return self.world_model.encode(np.stack(images)[None])[0]

    def goal_energy(self, latent: torch.Tensor, goal_index: int) -> float:
        """Energy between an observed latent [N, D] and a goal (the same metric as the planner's)."""
        goal = self.goal_latents[goal_index].to(latent.device)
        return float(latent_distance(latent, goal, self.config.metric))

    def plan(
        self,
        latents: torch.Tensor,
        states: np.ndarray,
        actions: np.ndarray | None = None,
        *,
        goal_index: int = 0,
        seed: int | None = None,
        initial_mean: torch.Tensor | None = None,
        imagine: bool = False,
    ) -> PlanResult:
        """Plan from context latents [K, N, D], their states [K, 7] and the K-1 actions between them (base frame);
        the result's actions are in the base frame (see `MPCConfig.action_frame_yaw`).

        `initial_mean` warm-starts a CEM plan (`planner.cem.shift_plan`); with `imagine` the result carries the latents
        the model imagines for the planned sequence (`PlanResult.imagined`)."""
        states = np.stack([check_state(s) for s in np.asarray(states).reshape(-1, 7)])
        cfg = self.config
        frame = self.action_frame
        model_states = torch.from_numpy(frame.to_model_states(states))
        model_actions = None if actions is None else torch.as_tensor(
            frame.to_model_actions(np.asarray(actions, dtype=np.float64)), dtype=torch.float32)
        if self.rollout_factory is not None:
            rollout = self.rollout_factory(latents, model_states, model_actions)
        else:
            rollout = WorldModelRollout(self.world_model.predictor, latents, model_states, model_actions,
                                        num_levels=self.world_model.num_levels, precision=cfg.precision,
                                        compile=cfg.compile)
        objective = GoalObjective(self.goal_latents[goal_index], metric=cfg.metric,
                                  reduce=_per_goal(cfg.goal_reduce, goal_index) or cfg.reduce)
        if self.thread_choice is None:
            self._choose_threads(rollout, objective)
        planner = self.planner_for(goal_index)
        if initial_mean is not None:
            result = planner.plan(rollout, objective, seed=seed, initial_mean=initial_mean)
        else:
            result = planner.plan(rollout, objective, seed=seed)
        if imagine:
            with torch.no_grad():
                result.imagined = rollout(result.actions[None])[0].cpu()
        if frame.is_identity:
            return result
        return dataclasses.replace(
            result,
            actions=frame.to_base_actions(result.actions).float(),
            elite_actions=frame.to_base_actions(result.elite_actions).float(),
        )


@dataclass
class StepRecord:
    """What happened at one control step (one JSONL line)."""

    step: int
    goal_index: int
    observed_energy: float
    """Energy between the observed frame and the current goal (no prediction involved)."""
    planned_energy: float
    """Best imagined energy of the plan's last iteration."""
    iteration_energies: list[list[float]]
    """Per planner iteration: best, elite-mean, all-sample-mean energy."""
    action: list[float]
    status: str
    applied: list[float] | None
    reason: str
    state: list[float]
    plan_seconds: float
    encode_seconds: float
    replanned: bool = True
    """False when surprise gating sent the previous plan's next action instead of planning."""
    surprise: float | None = None
    """Distance between the observed latent and the one the last plan imagined for this step (surprise gating)."""

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class EpisodeLog:
    """A closed-loop run: per-step records, the frames seen, and why it ended."""

    steps: list[StepRecord] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)
    """Camera frames: the first observation, then one after every executed action."""
    frame_goals: list[int] = field(default_factory=list)
    """Goal index in force at each of `frames`."""
    goal_images: list[np.ndarray] = field(default_factory=list)
    outcome: str = ""
    goal_reached: bool = False
    seconds: float = 0.0
    threads: str = ""
    """The CPU thread count plans ran on and how it was chosen."""


def _per_goal(values: tuple | None, goal_index: int):
    """The entry of a per-goal setting for `goal_index` (None where the tuple is unset or too short)."""
    return values[goal_index] if values is not None and goal_index < len(values) else None


class GoalSwitcher:
    """Which goal image is in force at each control step.

    * Steps only (`goal_schedule` without an energy rule): goal i holds for its scheduled steps, whatever happens.
    * Energy rules (`switch_energy`, `switch_plateau`): the next goal takes over once the observed energy to the
      current one is at most `switch_energy`, or has not beaten its earlier best by `plateau_drop` (relative) for
      `switch_plateau` steps while at most `plateau_floor`; `goal_schedule`, when given, caps the steps on each
      goal. The last goal keeps the rest of the budget.
    * `regrasp`: an empty hand while the check goal is in force sends the loop back to an earlier goal; the steps
      on each goal then count from its latest start.
    """

    def __init__(self, config: MPCConfig, num_goals: int) -> None:
        self.config = config
        self.num_goals = num_goals
        self.by_state = (config.switch_energy is not None or config.switch_plateau is not None
                         or config.regrasp is not None)
        self.index = 0
        self.regrasps = 0
        self._energies: list[float] = []

    def update(self, step: int, energy_to: Callable[[int], float], gripper: float = 0.0) -> tuple[int, float]:
        """(goal index, observed energy to it) at control step `step`; `energy_to(i)` scores the current frame
        against goal i, `gripper` is the hand's reading (0 open .. 1 closed)."""
        cfg = self.config
        if cfg.goal_schedule is not None and not self.by_state:
            bounds = np.cumsum(cfg.goal_schedule)
            self.index = int(min(np.searchsorted(bounds, step, side="right"), len(cfg.goal_schedule) - 1))
            return self.index, energy_to(self.index)
        self._energies.append(energy_to(self.index))
        while self.index < self.num_goals - 1 and self._should_leave():
            self.index += 1
            self._energies = [energy_to(self.index)]
        if (cfg.regrasp is not None and self.index == cfg.regrasp[0] and gripper > cfg.empty_gripper
                and self.regrasps < cfg.max_regrasps):
            self.regrasps += 1
            log.info("hand empty (gripper %.2f) at goal %d: back to goal %d (regrasp %d of %d)", gripper,
                     self.index, cfg.regrasp[1], self.regrasps, cfg.max_regrasps)
            self.index = cfg.regrasp[1]
            self._energies = [energy_to(self.index)]
        return self.index, self._energies[-1]

    def _should_leave(self) -> bool:
        cfg, energies = self.config, self._energies
        caps = cfg.goal_schedule
        if caps is not None and self.index < len(caps) and len(energies) > caps[self.index]:
            return True
        if cfg.switch_energy is not None and energies[-1] <= cfg.switch_energy:
            return True
        window = cfg.switch_plateau
        below_floor = cfg.plateau_floor is None or energies[-1] <= cfg.plateau_floor
        if window is not None and len(energies) > window and below_floor:
            best_before = min(energies[:-window])
            return min(energies[-window:]) > best_before * (1.0 - cfg.plateau_drop)
        return False


def run_mpc(
    robot: Robot,
    world_model,
    goal_images: Sequence[np.ndarray],
    config: MPCConfig | None = None,
    *,
    log_path: str | Path | None = None,
    done: Callable[[], bool] | None = None,
    progress: bool = True,
    rollout_factory: RolloutFactory | None = None,
) -> EpisodeLog:
    """Drive `robot` towards the goal images; returns the `EpisodeLog`.

    Args:
        robot: a connected or connectable `Robot` (sim or bridge); it is held (not stopped) when the loop ends.
        world_model: a `worldmodel.WorldModel`.
        goal_images: one RGB image per sub-goal, same camera and size as the robot's `config.camera` frames.
        log_path: append one JSON line per control step here (written as it happens, so a crash keeps the log).
        done: optional external success check (e.g. a simulator task), polled after every action.
        rollout_factory: imagine candidates with this instead of the world model's predictor (`RolloutFactory`).
    """
    config = config or MPCConfig()
    start = time.perf_counter()
    goals = check_goal_images(goal_images)
    controller = LatentPlanner(world_model, goals, config, rollout_factory=rollout_factory)
    episode = EpisodeLog(goal_images=goals)
    writer = JsonlWriter(log_path) if log_path is not None else None
    history: collections.deque = collections.deque(maxlen=config.context_frames)
    rejections, goal_index = 0, 0
    switcher = GoalSwitcher(config, controller.num_goals)
    # The plan whose first action was sent last (its steps not yet executed), and the goal it was made for.
    previous: PlanResult | None = None
    previous_goal = -1
    robot.connect()
    try:
        observation, frame = observe(robot, config.camera, config.max_frame_age_s)
        check_goal_images(goals, frame.shape)
        bar = tqdm(range(config.step_budget), desc="mpc", unit="step", disable=not progress)
        for step in bar:
            state = check_state(observation.state)
            encode_start = time.perf_counter()
            latent = controller.encode([frame])[0]
            encode_seconds = time.perf_counter() - encode_start
            goal_index, energy = switcher.update(step, lambda index: controller.goal_energy(latent, index),
                                                 gripper=float(state[6]))
            episode.frames.append(frame)
            episode.frame_goals.append(goal_index)
            final_goal = goal_index == controller.num_goals - 1
            if final_goal and config.stop_energy is not None and energy <= config.stop_energy:
                episode.outcome, episode.goal_reached = "goal energy reached", True
                break
            history.append((latent, state))
            context_states = np.stack([h[1] for h in history])
            # Between context frames, the actions are the observed pose differences (the training definition), not
            # the commands sent, which the arm may have clamped or not fully reached.
            surprise = None
            if config.surprise_gate is not None and previous is not None and len(previous.actions) > 1:
                surprise = float(latent_distance(latent, previous.imagined[0].to(latent.device), config.metric))
            replanned = not (surprise is not None and surprise <= config.surprise_gate and previous_goal == goal_index)
            if not replanned:
                result = _remaining_plan(previous)
            else:
                warm = getattr(config.planner, "warm_start", False) and previous is not None
                result = controller.plan(
                    torch.stack([h[0] for h in history]),
                    context_states,
                    states_to_actions(context_states) if len(history) > 1 else None,
                    goal_index=goal_index,
                    seed=config.planner.seed + step,
                    initial_mean=shift_plan(previous, config.planner.horizon) if warm else None,
                    imagine=config.surprise_gate is not None,
                )
            action = result.first_action
            outcome = robot.send_action(action)
            record = StepRecord(
                step=step,
                goal_index=goal_index,
                observed_energy=energy,
                planned_energy=result.energy,
                iteration_energies=result.energies.tolist(),
                action=action.tolist(),
                status=outcome.status.value,
                applied=None if outcome.applied is None else np.asarray(outcome.applied, dtype=float).tolist(),
                reason=outcome.reason,
                state=state.tolist(),
                plan_seconds=result.seconds,
                encode_seconds=encode_seconds,
                replanned=replanned,
                surprise=surprise,
            )
            previous, previous_goal = result, goal_index
            episode.steps.append(record)
            if writer is not None:
                writer.write(record.to_dict())
            bar.set_postfix(goal=goal_index, energy=f"{energy:.4f}", plan_s=f"{result.seconds:.2f}")
            rejections = rejections + 1 if outcome.status is ActionStatus.REJECTED else 0
            if rejections >= config.max_rejections:
                episode.outcome = f"robot rejected {rejections} actions in a row: {outcome.reason}"
                break
            observation, frame = observe(robot, config.camera, config.max_frame_age_s)
            if done is not None and done():
                episode.frames.append(frame)
                episode.frame_goals.append(goal_index)
                episode.outcome, episode.goal_reached = "task reports success", True
                break
        else:
            episode.frames.append(frame)
            episode.frame_goals.append(goal_index)
            episode.outcome = f"step budget of {config.step_budget} used"
    finally:
        robot.hold()
        if writer is not None:
            writer.close()
    episode.seconds = time.perf_counter() - start
    if controller.thread_choice is not None:
        episode.threads = controller.thread_choice.describe()
    log.info("mpc finished after %d steps: %s", len(episode.steps), episode.outcome)
    return episode


def _remaining_plan(plan: PlanResult) -> PlanResult:
    """`plan` without its first step (already executed): what surprise gating sends next, at no planning cost."""
    return dataclasses.replace(
        plan,
        actions=plan.actions[1:],
        means=plan.means[:, 1:],
        stds=plan.stds[:, 1:],
        elite_actions=plan.elite_actions[:, 1:],
        imagined=None if plan.imagined is None else plan.imagined[1:],
        seconds=0.0,
        rollout_seconds=0.0,
        num_rollouts=0,
        iteration_seconds=[],
    )


class StaleFrameError(ValueError):
    """The camera's newest frame is older than the planner accepts."""


def camera_frame(observation, camera: str, max_age_s: float | None = None) -> np.ndarray:
    """The observation's frame of `camera`, or ValueError: the camera is missing, or (with `max_age_s`) its frame
    was captured more than `max_age_s` before the observation's state (`StaleFrameError`). A multi-view camera
    ("left+wrist") gives its views' frames side by side (`data.conventions.join_views`), each checked so."""
    views = camera_views(camera)
    for view in views:
        if view not in observation.images:
            raise ValueError(f"camera {view!r} not in the observation; available: {sorted(observation.images)}")
        if max_age_s is not None and view in observation.image_timestamps:
            age = observation.timestamp - observation.image_timestamps[view]
            if not age <= max_age_s:
                raise StaleFrameError(
                    f"camera {view!r}: the newest frame is {age:.2f} s old, more than the {max_age_s:.2f} s the "
                    "planner accepts (max_frame_age_s / --max-frame-age); is the camera still streaming?"
                )
    return join_views([observation.images[view] for view in views], camera)


def observe(robot: Robot, camera: str, max_age_s: float | None, *, sleep=time.sleep):
    """(observation, frame of `camera`): a stale frame is waited on for up to `max_age_s` more (a frame may be late
    on a loaded link), then refused with `StaleFrameError`."""
    deadline = None
    while True:
        observation = robot.get_observation()
        try:
            return observation, camera_frame(observation, camera, max_age_s)
        except StaleFrameError:
            now = time.monotonic()
            deadline = now + max_age_s if deadline is None else deadline
            if now >= deadline:
                raise
            sleep(0.02)
