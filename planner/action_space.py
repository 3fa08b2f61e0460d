"""The space the sampling planners search: which action dimensions are free, how samples are kept in bounds, and how
the final plan is turned into safe 7-D DROID actions.

Like the V-JEPA 2-AC reference planner, by default only Δxyz and Δgripper are searched (4 free dimensions per step)
and the rotation delta is fixed to 0; with `max_yaw` > 0, Δyaw (the rotation about the base's vertical) is searched as
a fifth free dimension, so the hand can turn to meet an object's faces. Every sample and every returned action lies
inside the constraint set, so a planner built on this class can never emit an out-of-bounds action.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch

from vjepa_ac.data.conventions import ACTION_DIM
SEARCH_DIMS: tuple[int, ...] = (0, 1, 2, 6)
"""Indices of the dimensions always searched in a 7-D action: Δx, Δy, Δz, Δgripper."""
YAW_DIM = 5
"""Index of Δyaw (Euler z of the rotation delta) in a 7-D action; searched after `SEARCH_DIMS` when `max_yaw` > 0."""
GRIPPER_DIM = 6
"""Index of Δgripper in a 7-D action."""
_GRIPPER_FREE = 3
"""Position of Δgripper among the free dimensions."""


def project_l1_ball(v: torch.Tensor, radius: float) -> torch.Tensor:
    """Euclidean projection of vectors [..., n] onto the L1 ball of `radius` (Duchi et al., 2008), batched."""
    if radius <= 0:
        return torch.zeros_like(v)
    dtype = v.dtype
    # float64 keeps the soft threshold exact for samples far outside the ball (float32 cancels in |v| - theta).
    v = v.double()
    magnitude = v.abs()
    inside = magnitude.sum(-1, keepdim=True) <= radius
    sorted_mag, _ = magnitude.sort(dim=-1, descending=True)
    cumulative = sorted_mag.cumsum(-1)
    ranks = torch.arange(1, v.shape[-1] + 1, device=v.device, dtype=v.dtype)
    # The largest rank whose sorted magnitude stays above the running threshold sets the soft-threshold level.
    active = sorted_mag - (cumulative - radius) / ranks > 0
    rho = active.to(v.dtype).cumsum(-1).argmax(-1, keepdim=True)
    theta = (cumulative.gather(-1, rho) - radius) / (rho + 1).to(v.dtype)
    projected = v.sign() * (magnitude - theta).clamp_min(0.0)
    out = torch.where(inside, v, projected).to(dtype)
    # Rounding to a narrower dtype may overshoot the radius by an ulp; pull such points back inside.
    norm = out.abs().sum(-1, keepdim=True).double()
    return torch.where(norm > radius, out * (radius / norm).to(dtype) * (1 - 4 * torch.finfo(dtype).eps), out)


@dataclass
class SearchSpace:
    """Bounds and conventions of the action search (defaults: the V-JEPA 2-AC paper's planner)."""

    max_translation: float = 0.075
    """Bound on Δxyz per step, in metres."""
    translation_constraint: Literal["l1_ball", "box"] = "l1_ball"
    """"l1_ball": |Δx|+|Δy|+|Δz| <= max_translation (paper); "box": each of Δx, Δy, Δz clipped to ±max_translation
    (the reference notebook's `maxnorm`)."""
    max_yaw: float = 0.0
    """Bound on Δyaw per step, in radians; 0 keeps the hand's yaw (the reference), > 0 searches Δyaw in ±max_yaw with
    initial std max_yaw. Mind the robot's per-action rotation limit (`robot.limits.Limits.max_rotation`) divided by
    the control periods each planned step is spread over."""
    gripper_limit: float = 0.75
    """Sampled Δgripper is clipped to ±gripper_limit."""
    gripper_round: float = 0.25
    """A planned Δgripper with |value| below this is sent as 0 (keeps the gripper still unless clearly wanted)."""
    init_std_translation: float | None = None
    """Initial sampling std of Δxyz; None = max_translation (as the reference)."""
    init_std_gripper: float = 1.0
    fixed: dict[int, float] = field(default_factory=dict)
    """Pin action dimensions (7-D indices among the searched ones: 0, 1, 2, 6, and 5 with `max_yaw`) to a value, like
    the reference's `axis`."""
    close_gripper: int | None = None
    """From this horizon step on, Δgripper is forced to 1.0 (close), like the reference's `close_gripper`."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_translation) and self.max_translation >= 0):
            raise ValueError(f"max_translation must be finite and >= 0, got {self.max_translation}")
        if self.translation_constraint not in ("l1_ball", "box"):
            raise ValueError(f"translation_constraint must be 'l1_ball' or 'box', got {self.translation_constraint!r}")
        if not (math.isfinite(self.max_yaw) and 0 <= self.max_yaw <= math.pi / 4):
            raise ValueError(f"max_yaw must be in [0, pi/4] radians, got {self.max_yaw}")
        if not (math.isfinite(self.gripper_limit) and 0 <= self.gripper_limit <= 1):
            raise ValueError(f"gripper_limit must be in [0, 1], got {self.gripper_limit}")
        for dim, value in self.fixed.items():
            if dim not in self.dims:
                raise ValueError(f"fixed dimension {dim} is not searched; choose among {self.dims}")
            if not math.isfinite(value):
                raise ValueError(f"fixed value for dimension {dim} must be finite, got {value}")
        if self.close_gripper is not None and self.close_gripper < 0:
            raise ValueError(f"close_gripper must be >= 0, got {self.close_gripper}")

    @property
    def searches_yaw(self) -> bool:
        return self.max_yaw > 0

    @property
    def dims(self) -> tuple[int, ...]:
        """7-D indices of the free dimensions, in their order: Δx, Δy, Δz, Δgripper, then Δyaw when searched."""
        return (*SEARCH_DIMS, YAW_DIM) if self.searches_yaw else SEARCH_DIMS

    @property
    def num_free(self) -> int:
        return len(self.dims)

    def per_dimension(self, translation: float, gripper: float, yaw: float) -> torch.Tensor:
        """A value per free dimension [num_free]: `translation` for Δxyz, then `gripper`, then `yaw` if searched."""
        return torch.tensor([translation] * 3 + [gripper] + ([yaw] if self.searches_yaw else []))

    def initial_distribution(self, horizon: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sampling mean and std [horizon, num_free] before the first iteration."""
        std_xyz = self.max_translation if self.init_std_translation is None else self.init_std_translation
        mean = torch.zeros(horizon, self.num_free)
        std = self.per_dimension(std_xyz, self.init_std_gripper, self.max_yaw).expand(horizon, -1).clone()
        for dim, value in self.fixed.items():
            mean[:, self.dims.index(dim)] = value
        return mean, std

    def constrain(self, free: torch.Tensor) -> torch.Tensor:
        """Free-dimension vectors [..., num_free] moved into the constraint set (pinned dimensions set)."""
        xyz = free[..., :3]
        if self.translation_constraint == "box":
            xyz = xyz.clamp(-self.max_translation, self.max_translation)
        else:
            xyz = project_l1_ball(xyz, self.max_translation)
        gripper = free[..., 3:4].clamp(-self.gripper_limit, self.gripper_limit)
        out = torch.cat([xyz, gripper, free[..., 4:].clamp(-self.max_yaw, self.max_yaw)], dim=-1)
        for dim, value in self.fixed.items():
            out[..., self.dims.index(dim)] = value
        return out

    def sample(self, mean: torch.Tensor, std: torch.Tensor, samples: int, generator: torch.Generator) -> torch.Tensor:
        """`samples` constrained draws [samples, H, num_free] from N(mean, std) with mean/std [H, num_free].

        Draws step by step (one [samples, num_free] normal block per horizon step), the reference's order of random
        numbers.
        """
        steps = [torch.randn(samples, self.num_free, generator=generator) * std[h] + mean[h]
                 for h in range(len(mean))]
        return self.constrain(torch.stack(steps, dim=1))

    def to_actions(self, free: torch.Tensor) -> torch.Tensor:
        """7-D actions [..., H, 7] from free dimensions [..., H, num_free]: unsearched rotation 0, `close_gripper`
        applied."""
        actions = free.new_zeros(*free.shape[:-1], ACTION_DIM)
        actions[..., list(self.dims)] = free
        if self.close_gripper is not None:
            actions[..., self.close_gripper :, 6] = 1.0
        return actions

    def free_dims(self, actions: torch.Tensor) -> torch.Tensor:
        """The free dimensions [..., num_free] of 7-D actions [..., 7]."""
        return actions[..., list(self.dims)]

    def finalize(self, mean: torch.Tensor) -> torch.Tensor:
        """The planned actions [H, 7] from a sampling mean [H, num_free]: constrained, small gripper values rounded
        to 0.

        Raises if the mean is not finite, so a corrupted distribution is never turned into a command.
        """
        if not torch.all(torch.isfinite(mean)):
            raise FloatingPointError(f"planner distribution mean is not finite: {mean.tolist()}")
        free = self.constrain(mean.clone())
        gripper = free[..., _GRIPPER_FREE]
        free[..., _GRIPPER_FREE] = torch.where(gripper.abs() < self.gripper_round, torch.zeros_like(gripper), gripper)
        return self.to_actions(free)
