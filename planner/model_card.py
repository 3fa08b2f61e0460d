"""Model cards: the planning settings that travel with a world-model checkpoint.

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
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from planner.mpc import MPCConfig

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
    # its path, so this is the planner's only reference to `vjepa_ac` and it imports no application code.
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
        from robot.limits import DEFAULT_ACTION_LIMITS

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
    from worldmodel import load_world_model

    path = resolve_checkpoint(checkpoint)
    defaults = load_planning_defaults(path)
    world_model = load_world_model(path, device=pick_device(device), crop=defaults.crop)
    return world_model, defaults, path


# Command-line options `mpc_config_for` reads (attribute name -> config field); a missing or None option keeps the
# model card's value. `demo`/`eval` define a few of them, `plan`/`run` all.
_PLANNER_OPTIONS = {"samples": "samples", "iterations": "iterations", "horizon": "horizon", "elites": "topk",
                    "planner_seed": "seed", "max_batch": "max_batch", "warm_start": "warm_start",
                    "early_stop_std": "early_stop_std"}
_SPACE_OPTIONS = {"max_translation": "max_translation", "constraint": "translation_constraint",
                  "close_gripper": "close_gripper"}
_LOOP_OPTIONS = ("max_steps", "goal_schedule", "goal_gripper", "switch_energy", "stop_energy", "context_frames",
                 "camera", "precision", "max_frame_age_s", "action_frame_yaw", "surprise_gate", "threads")


def _given(args: argparse.Namespace | None, names) -> dict[str, Any]:
    """{config field: value} of the options in `names` (attribute -> field) that were given (not None)."""
    if args is None:
        return {}
    pairs = names.items() if isinstance(names, dict) else ((n, n) for n in names)
    return {key: value for option, key in pairs if (value := getattr(args, option, None)) is not None}


def mpc_config_for(defaults: PlanningDefaults, task: str | None, args: argparse.Namespace | None = None) -> MPCConfig:
    """The `MPCConfig` for one task (None: no per-task overrides, e.g. a real arm): the model card's settings, then the
    task's overrides, then the command-line options that were given, else the paper defaults.

    The one place where `demo`, `eval`, `plan` and `run` turn a model card and options into planner settings; options
    are read by attribute name (see `_PLANNER_OPTIONS`, `_SPACE_OPTIONS`, `_LOOP_OPTIONS`, plus `planner` ("cem" or
    "mppi"), `sum_energy` and `compile`).
    """
    from planner.action_space import SearchSpace
    from planner.cem import CEMConfig
    from planner.mpc import MPCConfig
    from planner.mppi import MPPIConfig

    task_overrides = dict(defaults.tasks.get(task, {})) if task is not None else {}
    task_planner = dict(task_overrides.pop("planner", {}))
    space = {**defaults.planner.get("space", {}), **task_planner.pop("space", {}), **_given(args, _SPACE_OPTIONS)}
    planner = {k: v for k, v in {**defaults.planner, **task_planner}.items() if k != "space"}
    planner.update(_given(args, _PLANNER_OPTIONS))
    # JSON object keys are strings; SearchSpace pins action dimensions by integer index.
    space["fixed"] = {int(dim): float(value) for dim, value in space.get("fixed", {}).items()}
    space = SearchSpace(**space)
    samples = planner.get("samples", CEMConfig.samples)
    # Fewer samples than the default elite count is a legitimate quick setting; keep the elites inside the samples.
    planner.setdefault("topk", CEMConfig.topk)
    planner["topk"] = max(2, min(planner["topk"], samples))
    if getattr(args, "planner", None) == "mppi":
        # MPPI weights every sample; the elite count only sets how many best samples are reported.
        planner["log_topk"] = planner.pop("topk")
        mppi_fields = {f.name for f in dataclasses.fields(MPPIConfig)}
        planner_config = MPPIConfig(space=space, **{k: v for k, v in planner.items() if k in mppi_fields})
    else:
        planner_config = CEMConfig(space=space, **planner)
    mpc = {**defaults.mpc, **task_overrides, "camera": defaults.camera, **_given(args, _LOOP_OPTIONS)}
    if getattr(args, "sum_energy", False):
        mpc["reduce"] = "sum"
    if getattr(args, "compile", False):
        mpc["compile"] = True
    return MPCConfig(planner=planner_config, **mpc)
