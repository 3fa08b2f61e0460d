"""Goal energies on imagined latents.

The reference energy is the mean absolute difference between the last imagined frame and the goal latent, over all
tokens and channels (spec vjepa2.md §5.2). Options: mean squared or cosine distance, and summing the energy over
every imagined step instead of scoring only the last one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

Metric = Literal["l1", "l2", "cosine"]
Reduction = Literal["last", "sum"]


def latent_distance(a: torch.Tensor, b: torch.Tensor, metric: Metric = "l1") -> torch.Tensor:
    """Distance between latents [..., N, D] (broadcast), reduced over tokens and channels -> [...] (float32)."""
    a, b = a.float(), b.float()
    if metric == "l1":
        return (a - b).abs().mean(dim=(-2, -1))
    if metric == "l2":
        return (a - b).square().mean(dim=(-2, -1))
    if metric == "cosine":
        return 1.0 - F.cosine_similarity(a, b.expand_as(a), dim=-1).mean(-1)
    raise ValueError(f"unknown metric {metric!r}; choose 'l1', 'l2' or 'cosine'")


@dataclass
class GoalObjective:
    """Energy of imagined latents [S, H, N, D] against one goal latent [N, D]."""

    goal: torch.Tensor
    metric: Metric = "l1"
    reduce: Reduction = "last"
    """"last": score the final imagined frame only (reference); "sum": add the energies of all steps."""

    def __post_init__(self) -> None:
        if self.goal.ndim == 3 and self.goal.shape[0] == 1:
            self.goal = self.goal[0]
        if self.goal.ndim != 2:
            raise ValueError(f"goal latent must have shape [N, D], got {tuple(self.goal.shape)}")
        if not torch.all(torch.isfinite(self.goal)):
            raise ValueError("goal latent has non-finite values")
        if self.metric not in ("l1", "l2", "cosine"):
            raise ValueError(f"unknown metric {self.metric!r}; choose 'l1', 'l2' or 'cosine'")
        if self.reduce not in ("last", "sum"):
            raise ValueError(f"unknown reduce {self.reduce!r}; choose 'last' or 'sum'")

    def __call__(self, predictions: torch.Tensor) -> torch.Tensor:
        if predictions.ndim != 4 or predictions.shape[-2:] != self.goal.shape:
            raise ValueError(
                f"imagined latents {tuple(predictions.shape)} do not match the goal latent {tuple(self.goal.shape)};"
                " expected [S, H, N, D] with the goal's N and D (was the goal encoded with the same encoder?)"
            )
        goal = self.goal.to(predictions.device)
        if self.reduce == "last":
            return latent_distance(predictions[:, -1], goal, self.metric)
        return latent_distance(predictions, goal, self.metric).sum(dim=1)
