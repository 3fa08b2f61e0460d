"""Model cards: the planning settings that travel with a world-model checkpoint (application layer: it composes the
planner's, the simulator's and the robot limits' configurations; `planner/` itself reads no model card).

A model card is `<checkpoint stem>.json` beside the checkpoint (the embedded default model has one); it records the
crop, camera, frame rate, sim scene and planner settings the checkpoint is meant to be driven with. A checkpoint
without a card (e.g. Meta's `vjepa2-ac-vitg.pt`) gets the planner's paper defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

if TYPE_CHECKING:
    import torch

    from vjepa_ac.planner.mpc import MPCConfig

log = logging.getLogger(__name__)


@dataclass
class PlanningDefaults:
    """How a checkpoint is meant to be driven: its model card, or the paper defaults without one."""

    crop: str | None = "droid"
    """Crop before resizing frames; must be the one the predictor was trained with."""
    camera: str = "left"
    planner: dict[str, Any] = field(default_factory=dict)
    """`planner.CEMConfig` fields; "space" holds `SearchSpace` fields."""
    mpc: dict[str, Any] = field(default_factory=dict)
    """`planner.mpc.MPCConfig` fields other than the planner (e.g. switch_energy, stop_energy)."""
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-task `MPCConfig` overrides (e.g. a goal schedule for pick-and-place); a "planner" entry overrides planner
    fields (e.g. pinning Δgripper while reaching)."""
    sim: dict[str, Any] = field(default_factory=dict)
    """`sim.robot.SimConfig` fields for the scene the model was trained on (e.g. image_size, cameras), plus
    "workspace_min" / "workspace_max" (base-frame box for the flange, m) replacing those of the default
    `robot.limits.ActionLimits`."""
    fps: float = 4.0
    """Frame rate the predictor was trained at (open-loop clips are cut at this rate)."""
    card: dict[str, Any] = field(default_factory=dict)
    """The whole model card, for the report."""

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> PlanningDefaults:
        known = {f.name for f in dataclasses.fields(cls)} - {"card"}
        values = {k: v for k, v in card.items() if k in known}
        # JSON has no tuples; SimConfig's sequence fields (image_size, cameras) are tuples.
        values["sim"] = {k: tuple(v) if isinstance(v, list) else v for k, v in values.get("sim", {}).items()}
        return cls(**values, card=card)


def model_card_path(checkpoint: Path) -> Path:
    return checkpoint.with_suffix(".json")


def resolve_checkpoint(checkpoint: Path | None) -> Path:
    """The checkpoint to use: the given one or the embedded default (with a clear error if it is missing)."""
    if checkpoint is not None:
        return Path(checkpoint)
    # The default model is data shipped inside the application package; `vjepa_ac.default_model` holds nothing but
    # its path.
    from vjepa_ac.default_model import DEFAULT_CHECKPOINT

    if not DEFAULT_CHECKPOINT.is_file():
        raise FileNotFoundError(
            f"the embedded default model {DEFAULT_CHECKPOINT} is missing; rebuild it with recipes/default_model.sh "
            "or pass --checkpoint"
        )
    return DEFAULT_CHECKPOINT


def load_planning_defaults(checkpoint: Path) -> PlanningDefaults:
    card_path = model_card_path(checkpoint)
    if not card_path.is_file():
        log.info("no model card %s; using the planner's paper defaults", card_path)
        return PlanningDefaults()
    try:
        card = json.loads(card_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"model card {card_path} is not valid JSON: {exc}") from None
    return PlanningDefaults.from_card(card)


def sim_config_options(sim: dict[str, Any]) -> dict[str, Any]:
    """`make_env` options from a model card's "sim" section (workspace bounds become `ActionLimits`)."""
    options = dict(sim)
    bounds = {k: options.pop(k) for k in ("workspace_min", "workspace_max") if k in options}
    if bounds:
        from vjepa_ac.robot.limits import DEFAULT_ACTION_LIMITS

        arrays = {k: np.asarray(v, dtype=np.float64) for k, v in bounds.items()}
        for name, value in arrays.items():
            if value.shape != (3,) or not np.all(np.isfinite(value)):
                raise ValueError(f"model card sim.{name} must be 3 finite numbers (x, y, z in m), got {value.tolist()}")
        options["action_limits"] = dataclasses.replace(DEFAULT_ACTION_LIMITS, **arrays)
    return options


def sim_settings(defaults: PlanningDefaults, args: argparse.Namespace | None = None) -> dict[str, Any]:
    """The model card's "sim" section with the command line's `--camera-yaw` applied (for `sim_config_options`)."""
    camera_yaw = getattr(args, "camera_yaw", None)
    return dict(defaults.sim) if camera_yaw is None else {**defaults.sim, "camera_yaw": camera_yaw}


def pick_device(name: str | None) -> torch.device:
    import torch

    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_for_planning(checkpoint: Path | None, device: str | None = None):
    """(WorldModel, PlanningDefaults, checkpoint path) ready for `run_mpc`."""
    from vjepa_ac.worldmodel import load_world_model

    path = resolve_checkpoint(checkpoint)
    defaults = load_planning_defaults(path)
    world_model = load_world_model(path, device=pick_device(device), crop=defaults.crop)
    return world_model, defaults, path


@dataclass(frozen=True)
class PlanningOverrides:
    """Planning settings given for one run (None: not given), named as the library's fields; `mpc_config_for` merges
    them over the model card (and a sim task's entry in it), which is merged over the library's defaults.

    The command line fills them with `from_args`, in the one configuration style (`data.config`): a `--config` YAML
    file of these fields, then the options, then `KEY=VALUE` words. Every option is spelled as its field (`--topk`,
    `--translation-constraint`, `--reduce`), except `--planner-seed` (`seed`: `--seed` is an episode's seed wherever
    both exist) and `--schedule` (`goal_schedule`: `--goal-schedule` names a goal schedule file)."""

    # `planner.CEMConfig` / `planner.MPPIConfig`
    planner: Literal["cem", "mppi"] | None = None
    """"cem" or "mppi" (default: cem)."""
    samples: int | None = None
    iterations: int | None = None
    topk: int | None = None
    horizon: int | None = None
    seed: int | None = None
    max_batch: int | None = None
    warm_start: bool | None = None
    early_stop_std: float | None = None
    # `planner.SearchSpace`
    max_translation: float | None = None
    translation_constraint: Literal["l1_ball", "box"] | None = None
    max_yaw: float | None = None
    close_gripper: int | None = None
    # `planner.mpc.MPCConfig`
    max_steps: int | None = None
    goal_schedule: tuple[int, ...] | None = None
    goal_gripper: tuple[float | None, ...] | None = None
    goal_max_translation: tuple[float | None, ...] | None = None
    goal_reduce: tuple[Literal["last", "sum"] | None, ...] | None = None
    switch_energy: float | None = None
    switch_plateau: int | None = None
    plateau_drop: float | None = None
    plateau_floor: float | None = None
    regrasp: tuple[int, int] | None = None
    max_regrasps: int | None = None
    empty_gripper: float | None = None
    stop_energy: float | None = None
    context_frames: int | None = None
    camera: str | None = None
    reduce: Literal["last", "sum"] | None = None
    precision: Literal["auto", "float32", "bfloat16"] | None = None
    compile: bool | None = None
    max_frame_age_s: float | None = None
    action_frame_yaw: float | None = None
    surprise_gate: float | None = None
    threads: int | None = None

    PLANNER_FIELDS: ClassVar[tuple[str, ...]] = ("samples", "iterations", "topk", "horizon", "seed", "max_batch",
                                                 "warm_start", "early_stop_std")
    SPACE_FIELDS: ClassVar[tuple[str, ...]] = ("max_translation", "translation_constraint", "max_yaw",
                                               "close_gripper")
    _COUNTS: ClassVar[tuple[str, ...]] = ("samples", "iterations", "topk", "horizon", "max_batch", "max_steps",
                                          "context_frames", "threads")

    def __post_init__(self) -> None:
        for name in self._COUNTS:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.goal_schedule is not None and (not self.goal_schedule or min(self.goal_schedule) < 1):
            raise ValueError(f"goal_schedule must be positive step counts, got {list(self.goal_schedule)}")
        if any(v is not None and not -1.0 <= v <= 1.0 for v in self.goal_gripper or ()):
            raise ValueError(f"goal_gripper values must be in [-1, 1] or null, got {list(self.goal_gripper)}")

    @classmethod
    def from_args(cls, args: Any) -> PlanningOverrides:
        """The overrides a parsed command line gives: its `--config` file, then its options (an option it lacks or
        leaves unset is not given), then its `KEY=VALUE` words. A bad file or word is a usage error."""
        from vjepa_ac.data.config import ConfigError, load

        options = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(cls)}
        options["seed"] = getattr(args, "planner_seed", None)
        options["compile"] = getattr(args, "compile", None) or None  # a flag: off means "not given"
        settings = {name: value for name, value in options.items() if value is not None}
        try:
            return load(cls, getattr(args, "config", None), getattr(args, "overrides", None) or (), settings)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc

    def given(self, names: tuple[str, ...] | None = None) -> dict[str, Any]:
        """{field: value} of the given settings among `names` (default: the loop's, i.e. `MPCConfig` fields)."""
        if names is None:
            names = tuple(f.name for f in dataclasses.fields(self)
                          if f.name not in (*self.PLANNER_FIELDS, *self.SPACE_FIELDS, "planner"))
        return {name: value for name in names if (value := getattr(self, name)) is not None}


def mpc_config_for(defaults: PlanningDefaults, task: str | None,
                   overrides: PlanningOverrides | None = None) -> MPCConfig:
    """The `MPCConfig` for one task (None: no per-task overrides, e.g. a real arm): the library's defaults, then the
    model card's settings, then the task's entry in it, then the `overrides` that were given.

    The one place where `demo`, `eval`, `plan`, `run` and the studies turn a model card and options into planner
    settings."""
    from vjepa_ac.planner.action_space import SearchSpace
    from vjepa_ac.planner.cem import CEMConfig
    from vjepa_ac.planner.mpc import MPCConfig
    from vjepa_ac.planner.mppi import MPPIConfig

    task_overrides = dict(defaults.tasks.get(task, {})) if task is not None else {}
    task_planner = dict(task_overrides.pop("planner", {}))
    overrides = overrides or PlanningOverrides()
    space = {**defaults.planner.get("space", {}), **task_planner.pop("space", {}),
             **overrides.given(overrides.SPACE_FIELDS)}
    planner = {k: v for k, v in {**defaults.planner, **task_planner}.items() if k != "space"}
    planner.update(overrides.given(overrides.PLANNER_FIELDS))
    # JSON object keys are strings; SearchSpace pins action dimensions by integer index.
    space["fixed"] = {int(dim): float(value) for dim, value in space.get("fixed", {}).items()}
    space = SearchSpace(**space)
    samples = planner.get("samples", CEMConfig.samples)
    # Fewer samples than the default elite count is a legitimate quick setting; keep the elites inside the samples.
    planner.setdefault("topk", CEMConfig.topk)
    planner["topk"] = max(2, min(planner["topk"], samples))
    if overrides.planner == "mppi":
        # MPPI weights every sample; the elite count only sets how many best samples are reported.
        planner["log_topk"] = planner.pop("topk")
        mppi_fields = {f.name for f in dataclasses.fields(MPPIConfig)}
        planner_config = MPPIConfig(space=space, **{k: v for k, v in planner.items() if k in mppi_fields})
    else:
        planner_config = CEMConfig(space=space, **planner)
    mpc = {**defaults.mpc, **task_overrides, "camera": defaults.camera, **overrides.given()}
    return MPCConfig(planner=planner_config, **mpc)
