"""Action-frame calibration without markers: the yaw between the robot base frame and the frame the world model reads
actions in, from a few small probe motions and the world model's own predictions.

The arm makes K small horizontal probe motions through the normal `robot.interface.Robot` (so every limit and safety
filter applies), out and back along directions spread over a half turn. Each probe gives a frame before and after,
the state before and the executed action (the observed pose difference, the training definition). For every
candidate yaw θ the probes' states and actions are rotated into the frame turned by θ (`planner.action_frame`) and the
predictor predicts, from the frame before, the latent change the probe causes (its prediction with the action minus
its prediction without one, which takes out what the predictor changes regardless of the action); the estimate is the
θ whose predicted changes best match the observed ones (mean L1, the training loss), found on a 1-degree grid over
[-180, 180) and refined around the best point. The report gives the residual there, at θ = 0 (no correction) and
for a predicted change of zero (for scale), the contrast of the residual curve and the spread of the
leave-one-probe-out estimates as a confidence measure.

Calibration refuses (`CalibrationError`, nothing written) when there are too few probes, the arm did not move, the
camera saw nothing change, a value is NaN, or the residual does not depend on θ.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vjepa_ac.data.droid.poses import states_to_actions
from vjepa_ac.planner.action_frame import rotate_actions, rotate_states, wrap_degrees
from vjepa_ac.planner.mpc import camera_frame, check_state
from vjepa_ac.robot.interface import ActionStatus, Robot

Predict = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""One world-model step: (latents [B, N, D], actions [B, 7], states [B, 7]) -> predicted latents [B, N, D]."""

CALIBRATION_KEY = "action_frame_yaw"
"""Key of the estimated yaw (degrees) in a calibration file."""


UNSTABLE_SPREAD = 10.0
"""Leave-one-probe-out spread (degrees) above which the estimate is reported as poorly determined."""


class CalibrationError(ValueError):
    """The probes cannot give a trustworthy action frame; the message says why."""


@dataclass
class CalibrationConfig:
    """How to probe and fit (defaults suit a Franka and a DROID-rate world model)."""

    probes: int = 16
    """Probe motions, in out-and-back pairs along directions spread over half a turn."""
    step: float = 0.06
    """Length of each probe motion in metres (one world-model step; within DROID's 0.075 m per step)."""
    seed: int = 0
    """Seed of the probes' first direction."""
    camera: str = "left"
    """Camera role whose frames are encoded."""
    max_frame_age_s: float | None = 0.5
    """Refuse a camera frame captured more than this long before the arm state it comes with (as the planner does)."""
    min_probes: int = 3
    """Fewer usable probes than this is an error."""
    min_motion: float = 0.01
    """A probe whose flange moved less than this horizontally (m) is not used."""
    min_image_change: float = 0.5
    """A probe whose frames differ by less than this (mean absolute difference, 0..255 grey levels) is not used."""
    min_contrast: float = 1e-3
    """Refuse when the residual curve's relative depth, (median - min) / median, is below this."""
    grid_step: float = 1.0
    """Degrees between candidate yaws of the coarse search."""
    refine_step: float = 0.1
    """Degrees between candidates of the refinement around the coarse minimum."""
    max_batch: int = 64
    """Candidate yaws per predictor call (bounds memory for large predictors)."""

    def __post_init__(self) -> None:
        if self.min_probes < 1 or self.probes < self.min_probes:
            raise ValueError(f"need probes >= min_probes >= 1, got probes={self.probes}, min_probes={self.min_probes}")
        for name in ("step", "min_motion", "grid_step", "refine_step"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value}")
        if self.min_motion >= self.step:
            raise ValueError(f"min_motion ({self.min_motion} m) must be below the probe step ({self.step} m)")


def probe_actions(config: CalibrationConfig) -> np.ndarray:
    """The commanded probe actions [K, 7]: horizontal steps of `config.step`, each direction out and then back, the
    directions spread over half a turn from a seeded start angle."""
    first = np.random.default_rng(config.seed).uniform(0.0, 180.0)
    pairs = (config.probes + 1) // 2
    actions = np.zeros((config.probes, 7))
    for i in range(config.probes):
        angle = np.radians(first + (i // 2) * 180.0 / pairs + (i % 2) * 180.0)
        actions[i, :2] = config.step * np.cos(angle), config.step * np.sin(angle)
    return actions


@dataclass
class ProbeSet:
    """What the probes recorded: frames [K, H, W, 3] uint8 before and after, base-frame states [K, 7] before and
    after each probe."""

    frames_before: np.ndarray
    frames_after: np.ndarray
    states_before: np.ndarray
    states_after: np.ndarray

    @property
    def actions(self) -> np.ndarray:
        """The executed actions [K, 7] (observed pose differences)."""
        return np.stack([states_to_actions(np.stack([a, b]))[0] for a, b in
                         zip(self.states_before, self.states_after)])

    def __len__(self) -> int:
        return len(self.states_before)


def collect_probes(robot: Robot, config: CalibrationConfig) -> ProbeSet:
    """Run the probe motions on a connected `robot` (each `send_action` one world-model step, e.g. an
    `robot.action_repeat.ActionRepeatRobot`); the robot is held afterwards. A refused probe is an error."""
    def observe() -> tuple[np.ndarray, np.ndarray]:
        observation = robot.get_observation()
        return camera_frame(observation, config.camera, config.max_frame_age_s), check_state(observation.state)

    frames_before, frames_after, states_before, states_after = [], [], [], []
    try:
        frame, state = observe()
        for i, action in enumerate(probe_actions(config)):
            outcome = robot.send_action(action)
            if outcome.status is ActionStatus.REJECTED:
                raise CalibrationError(f"the robot refused probe {i} ({action[:2].round(3).tolist()} m): "
                                       f"{outcome.reason}")
            frames_before.append(frame)
            states_before.append(state)
            frame, state = observe()
            frames_after.append(frame)
            states_after.append(state)
    finally:
        robot.hold()
    return ProbeSet(np.stack(frames_before), np.stack(frames_after), np.stack(states_before), np.stack(states_after))


@dataclass
class CalibrationResult:
    """The estimated action frame and how well it is determined."""

    yaw: float
    """Estimated yaw of the model's action frame, degrees in [-180, 180) (`MPCConfig.action_frame_yaw`)."""
    residual: float
    """Mean L1 error between the predicted and the observed latent change of the probes at `yaw`."""
    residual_unrotated: float
    """The same at yaw 0 (no correction)."""
    residual_still: float
    """The same for a predicted change of zero (the observed change's mean size), for scale."""
    contrast: float
    """(median - min) / median of the residual curve: how sharply the probes single out one yaw."""
    loo_spread: float
    """Largest deviation (degrees) of the estimate when one probe is left out."""
    probes_used: int
    probes_total: int
    grid: list[float] = field(default_factory=list)
    """Candidate yaws of the coarse search (degrees)."""
    curve: list[float] = field(default_factory=list)
    """Mean residual at each of `grid`."""
    excluded: list[str] = field(default_factory=list)
    """Why probes were left out."""

    @property
    def warnings(self) -> list[str]:
        """Signs that the estimate should not be trusted far (the fit still ran)."""
        out = []
        if self.residual >= self.residual_still:
            out.append("the world model predicts the probes worse than 'nothing changes' at any yaw: this camera view "
                       "is probably far from its training views, so expect the correction to help little")
        if self.loo_spread > UNSTABLE_SPREAD:
            out.append(f"leaving out one probe moves the estimate by up to {self.loo_spread:.0f} deg: it is poorly "
                       "determined; probe more (--probes) or with longer steps (--probe-step)")
        return out

    def summary(self) -> dict:
        """JSON-friendly digest without the curve."""
        digest = {k: v for k, v in self.__dict__.items() if k not in ("grid", "curve")}
        return {**digest, "warnings": self.warnings}

    def format(self) -> str:
        lines = [
            f"action-frame yaw: {self.yaw:+.1f} deg (leave-one-probe-out spread {self.loo_spread:.1f} deg)",
            f"residual: {self.residual:.4f} at the estimate, {self.residual_unrotated:.4f} unrotated, "
            f"{self.residual_still:.4f} predicting no change; contrast {self.contrast:.3f}",
            f"probes: {self.probes_used} of {self.probes_total} used",
        ]
        lines += [f"  left out: {reason}" for reason in self.excluded]
        lines += [f"warning: {warning}" for warning in self.warnings]
        return "\n".join(lines)


def usable_probes(probes: ProbeSet, config: CalibrationConfig) -> tuple[np.ndarray, list[str]]:
    """Indices of the probes that moved and changed the image, and why the others are left out; raises
    `CalibrationError` when fewer than `config.min_probes` remain or values are not finite."""
    if len(probes) < config.min_probes:
        raise CalibrationError(f"{len(probes)} probe(s) given; calibration needs at least {config.min_probes}")
    for name in ("states_before", "states_after"):
        if not np.all(np.isfinite(getattr(probes, name))):
            raise CalibrationError(f"probe {name.replace('_', ' ')} contain NaN or infinite values")
    motion = np.linalg.norm(probes.states_after[:, :2] - probes.states_before[:, :2], axis=-1)
    change = np.abs(probes.frames_after.astype(np.float32) - probes.frames_before.astype(np.float32)).mean(
        axis=(1, 2, 3))
    keep, excluded = [], []
    for i in range(len(probes)):
        if not motion[i] >= config.min_motion:
            excluded.append(
                f"probe {i}: the flange moved {motion[i] * 1000:.1f} mm (< {config.min_motion * 1000:g} mm)")
        elif not change[i] >= config.min_image_change:
            excluded.append(f"probe {i}: the image changed by {change[i]:.2f} grey levels "
                            f"(< {config.min_image_change:g})")
        else:
            keep.append(i)
    if len(keep) >= config.min_probes:
        return np.array(keep), excluded
    if np.sum(motion >= config.min_motion) < config.min_probes:
        raise CalibrationError(
            f"the arm did not move: {int(np.sum(motion >= config.min_motion))} of {len(probes)} probes moved the "
            f"flange at least {config.min_motion * 1000:g} mm horizontally (largest: {motion.max() * 1000:.1f} mm); "
            "check that the arm is enabled, not at a workspace limit and that the bridge forwards commands")
    raise CalibrationError(
        f"camera {config.camera!r} saw nothing change while the arm moved (mean image change at most "
        f"{change.max():.2f} grey levels); check that it sees the arm and is not frozen")


def fit_action_frame(
    latents_before: torch.Tensor,
    latents_after: torch.Tensor,
    states: np.ndarray,
    actions: np.ndarray,
    predict: Predict,
    config: CalibrationConfig | None = None,
) -> CalibrationResult:
    """The yaw that makes the world model's one-step predictions match the probes best.

    Args:
        latents_before, latents_after: normalized latents [K, N, D] of the frames before and after each probe.
        states, actions: base-frame states before the probes and executed actions, [K, 7].
        predict: one world-model step (`predictor_step`).
    """
    config = config or CalibrationConfig()
    k = len(states)
    if k < config.min_probes:
        raise CalibrationError(f"{k} probe(s) given; calibration needs at least {config.min_probes}")
    for name, value in (("latents before", latents_before), ("latents after", latents_after),
                        ("states", torch.as_tensor(states)), ("actions", torch.as_tensor(actions))):
        if not torch.all(torch.isfinite(value)):
            raise CalibrationError(f"probe {name} contain NaN or infinite values")
    states_t = torch.as_tensor(states, dtype=torch.float64)
    actions_t = torch.as_tensor(actions, dtype=torch.float64)

    def residuals(yaws: torch.Tensor) -> torch.Tensor:
        """Mean L1 error [K, len(yaws)] between each probe's predicted and observed latent change, in the frame
        turned by each yaw."""
        out = torch.empty(k, len(yaws))
        for i in range(k):
            observed = (latents_after[i] - latents_before[i]).float()
            for part in torch.arange(len(yaws)).split(config.max_batch):
                # A frame turned by θ sees the base-frame state s as Rz(-θ) s (planner.action_frame).
                turned = -yaws[part]
                frame = latents_before[i].expand(len(part), -1, -1)
                state = rotate_states(states_t[i].expand(len(part), 7), turned).float()
                moved = predict(frame, rotate_actions(actions_t[i].expand(len(part), 7), turned).float(), state)
                # The prediction for "no action" from the same frame and state takes out what the predictor changes
                # regardless of the action (e.g. pulling an unfamiliar view toward its training views).
                still = predict(frame, torch.zeros(len(part), 7), state)
                change = (moved.float() - still.float()).cpu()
                if not torch.all(torch.isfinite(change)):
                    raise CalibrationError("the world model predicted NaN or infinite values")
                out[i, part] = (change - observed.cpu()).abs().mean(dim=(-1, -2))
        return out

    grid = torch.arange(-180.0, 180.0, config.grid_step, dtype=torch.float64)
    coarse = residuals(grid)
    curve = coarse.mean(0)
    best = int(curve.argmin())
    fine = grid[best] + torch.arange(-config.grid_step, config.grid_step + 1e-9, config.refine_step,
                                     dtype=torch.float64)
    fine_curve = residuals(fine).mean(0)
    yaw = wrap_degrees(float(fine[int(fine_curve.argmin())]))
    median = float(curve.median())
    contrast = (median - float(curve.min())) / median if median > 0 else 0.0
    if not (math.isfinite(contrast) and contrast >= config.min_contrast):
        raise CalibrationError(
            f"the world model's predictions hardly depend on the action direction (residual contrast {contrast:.2g} "
            f"< {config.min_contrast:g}); the probes cannot determine the action frame")
    loo = []
    for i in range(k):
        others = torch.cat([coarse[:i], coarse[i + 1:]]).mean(0) if k > 1 else curve
        loo.append(abs(wrap_degrees(float(grid[int(others.argmin())]) - yaw)))
    no_change = (latents_after.float() - latents_before.float()).abs().mean(dim=(-1, -2))
    return CalibrationResult(
        yaw=yaw,
        residual=float(fine_curve.min()),
        residual_unrotated=float(residuals(torch.zeros(1, dtype=torch.float64)).mean()),
        residual_still=float(no_change.mean()),
        contrast=contrast,
        loo_spread=max(loo),
        probes_used=k,
        probes_total=k,
        grid=grid.tolist(),
        curve=curve.tolist(),
    )


def predictor_step(world_model) -> Predict:
    """`Predict` of a `worldmodel.WorldModel`: one block-causal predictor step from a single context frame,
    normalized like the planner's rollouts."""
    from vjepa_ac.worldmodel import normalize_reps

    predictor = world_model.predictor
    param = next(predictor.parameters())

    def predict(latents: torch.Tensor, actions: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            raw, _ = predictor.step(latents.to(param.device, param.dtype), actions.to(param.device, param.dtype),
                                    states.to(param.device, param.dtype))
        return normalize_reps(raw.float(), world_model.num_levels)

    return predict


def calibrate_probes(world_model, probes: ProbeSet, config: CalibrationConfig | None = None) -> CalibrationResult:
    """Fit the action frame to recorded probes with a `worldmodel.WorldModel` (the usable probes only)."""
    config = config or CalibrationConfig()
    keep, excluded = usable_probes(probes, config)
    frames = np.concatenate([probes.frames_before[keep], probes.frames_after[keep]])
    latents = world_model.encode(frames[:, None])[:, 0]
    result = fit_action_frame(latents[: len(keep)], latents[len(keep):], probes.states_before[keep],
                              probes.actions[keep], predictor_step(world_model), config)
    result.probes_total, result.excluded = len(probes), excluded
    return result


def calibrate(robot: Robot, world_model, config: CalibrationConfig | None = None) -> CalibrationResult:
    """Probe a connected `robot` and fit its action frame (see the module docstring)."""
    config = config or CalibrationConfig()
    return calibrate_probes(world_model, collect_probes(robot, config), config)


def write_calibration(path: str | Path, result: CalibrationResult, meta: dict | None = None) -> Path:
    """Write the calibration file (JSON, which YAML readers accept too) atomically: the yaw under
    `action_frame_yaw`, the fit's digest under "calibration" and `meta` (how it was made)."""
    path = Path(path)
    document = {CALIBRATION_KEY: round(result.yaw, 3), "calibration": result.summary(), **(meta or {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def read_action_frame_yaw(path: str | Path) -> float:
    """The yaw (degrees) stored in a calibration file written by `write_calibration` (JSON or YAML)."""
    import yaml

    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ValueError(f"cannot read calibration file {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"calibration file {path} is not valid JSON/YAML: {exc}") from None
    if not isinstance(document, dict) or CALIBRATION_KEY not in document:
        raise ValueError(f"calibration file {path} has no {CALIBRATION_KEY!r} entry; write it with `vjepa-ac "
                         "calibrate --out`")
    value = document[CALIBRATION_KEY]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"calibration file {path}: {CALIBRATION_KEY} must be a finite number of degrees, "
                         f"got {value!r}")
    return float(value)

