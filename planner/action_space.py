"""The space the sampling planners search: which action dimensions are free, how samples are kept in bounds, and how
the final plan is turned into safe 7-D DROID actions.

Like the V-JEPA 2-AC reference planner, only Δxyz and Δgripper are searched (4 free dimensions per step); the
rotation delta is fixed to 0. Every sample and every returned action lies inside the constraint set, so a planner
built on this class can never emit an out-of-bounds action.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch

from vjepa_ac.data.conventions import ACTION_DIM
SEARCH_DIMS: tuple[int, ...] = (0, 1, 2, 6)
"""Indices of the searched dimensions in a 7-D action: Δx, Δy, Δz, Δgripper."""
NUM_FREE = len(SEARCH_DIMS)
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
    gripper_limit: float = 0.75
    """Sampled Δgripper is clipped to ±gripper_limit."""
    gripper_round: float = 0.25
    """A planned Δgripper with |value| below this is sent as 0 (keeps the gripper still unless clearly wanted)."""
    init_std_translation: float | None = None
    """Initial sampling std of Δxyz; None = max_translation (as the reference)."""
    init_std_gripper: float = 1.0
    fixed: dict[int, float] = field(default_factory=dict)
    """Pin action dimensions (7-D indices among 0, 1, 2, 6) to a value, like the reference's `axis`."""
    close_gripper: int | None = None
    """From this horizon step on, Δgripper is forced to 1.0 (close), like the reference's `close_gripper`."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_translation) and self.max_translation >= 0):
            raise ValueError(f"max_translation must be finite and >= 0, got {self.max_translation}")
        if self.translation_constraint not in ("l1_ball", "box"):
            raise ValueError(f"translation_constraint must be 'l1_ball' or 'box', got {self.translation_constraint!r}")
        if not (math.isfinite(self.gripper_limit) and 0 <= self.gripper_limit <= 1):
            raise ValueError(f"gripper_limit must be in [0, 1], got {self.gripper_limit}")
        for dim, value in self.fixed.items():
            if dim not in SEARCH_DIMS:
                raise ValueError(f"fixed dimension {dim} is not searched; choose among {SEARCH_DIMS}")
            if not math.isfinite(value):
                raise ValueError(f"fixed value for dimension {dim} must be finite, got {value}")
        if self.close_gripper is not None and self.close_gripper < 0:
            raise ValueError(f"close_gripper must be >= 0, got {self.close_gripper}")

    def initial_distribution(self, horizon: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sampling mean and std [horizon, 4] before the first iteration."""
        std_xyz = self.max_translation if self.init_std_translation is None else self.init_std_translation
        mean = torch.zeros(horizon, NUM_FREE)
        std = torch.tensor([std_xyz] * 3 + [self.init_std_gripper]).expand(horizon, NUM_FREE).clone()
        for dim, value in self.fixed.items():
            mean[:, SEARCH_DIMS.index(dim)] = value
        return mean, std

    def constrain(self, free: torch.Tensor) -> torch.Tensor:
        """Free-dimension vectors [..., 4] moved into the constraint set (pinned dimensions set)."""
        xyz = free[..., :3]
        if self.translation_constraint == "box":
            xyz = xyz.clamp(-self.max_translation, self.max_translation)
        else:
            xyz = project_l1_ball(xyz, self.max_translation)
        gripper = free[..., 3:].clamp(-self.gripper_limit, self.gripper_limit)
        out = torch.cat([xyz, gripper], dim=-1)
        for dim, value in self.fixed.items():
            out[..., SEARCH_DIMS.index(dim)] = value
        return out

    def sample(self, mean: torch.Tensor, std: torch.Tensor, samples: int, generator: torch.Generator) -> torch.Tensor:
        """`samples` constrained draws [samples, H, 4] from N(mean, std) with mean/std [H, 4].

        Draws step by step (one [samples, 4] normal block per horizon step), the reference's order of random numbers.
        """
        steps = [torch.randn(samples, NUM_FREE, generator=generator) * std[h] + mean[h] for h in range(len(mean))]
        return self.constrain(torch.stack(steps, dim=1))

    def to_actions(self, free: torch.Tensor) -> torch.Tensor:
        """7-D actions [..., H, 7] from free dimensions [..., H, 4]: rotation 0, `close_gripper` applied."""
        actions = free.new_zeros(*free.shape[:-1], ACTION_DIM)
        actions[..., list(SEARCH_DIMS)] = free
        if self.close_gripper is not None:
            actions[..., self.close_gripper :, 6] = 1.0
        return actions

    @staticmethod
    def free_dims(actions: torch.Tensor) -> torch.Tensor:
        return actions[..., list(SEARCH_DIMS)]

    def finalize(self, mean: torch.Tensor) -> torch.Tensor:
        """The planned actions [H, 7] from a sampling mean [H, 4]: constrained, small gripper values rounded to 0.

        Raises if the mean is not finite, so a corrupted distribution is never turned into a command.
        """
        if not torch.all(torch.isfinite(mean)):
            raise FloatingPointError(f"planner distribution mean is not finite: {mean.tolist()}")
        free = self.constrain(mean.clone())
        gripper = free[..., _GRIPPER_FREE]
        free[..., _GRIPPER_FREE] = torch.where(gripper.abs() < self.gripper_round, torch.zeros_like(gripper), gripper)
        return self.to_actions(free)
