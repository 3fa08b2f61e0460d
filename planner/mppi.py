"""Model-predictive path integral (MPPI) planning on the same interface and search space as CEM.

Instead of a hard elite set, every sample contributes to the new mean with weight softmax(-E / λ). λ is expressed in
units of the energy spread of the current batch (`temperature` × std of the energies), so the same setting works for
any latent size or energy scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from vjepa_ac.planner.action_space import SearchSpace
from vjepa_ac.planner.base import Objective, PlanResult, PlanTrace, RolloutFn, evaluate, finite_mean, lowest


@dataclass
class MPPIConfig:
    samples: int = 800
    iterations: int = 10
    horizon: int = 1
    temperature: float = 0.1
    """λ relative to the std of the batch's energies; smaller = greedier."""
    momentum: float = 0.0
    """new_mean = (1 - m) * weighted_mean + m * old_mean."""
    adapt_std: bool = True
    """Shrink the sampling std to the weighted spread of the samples (False: classic MPPI, fixed noise)."""
    min_std: float = 1e-3
    """Floor on the sampling std so the search never collapses to a point before the last iteration."""
    log_topk: int = 10
    """How many best samples to report as elites in the result."""
    space: SearchSpace = field(default_factory=SearchSpace)
    seed: int = 0
    max_batch: int | None = None

    def __post_init__(self) -> None:
        for name in ("samples", "iterations", "horizon", "log_topk"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {self.momentum}")


class MPPIPlanner:
    """MPPI planner; `plan(rollout, objective)` returns a `PlanResult` like `CEMPlanner.plan`."""

    def __init__(self, config: MPPIConfig | None = None) -> None:
        self.config = config or MPPIConfig()

    def plan(self, rollout: RolloutFn, objective: Objective, *, seed: int | None = None) -> PlanResult:
        cfg, space = self.config, self.config.space
        trace = PlanTrace()
        generator = torch.Generator().manual_seed(cfg.seed if seed is None else seed)
        mean, std = space.initial_distribution(cfg.horizon)
        top = min(cfg.log_topk, cfg.samples)
        for _ in range(cfg.iterations):
            actions = space.to_actions(space.sample(mean, std, cfg.samples, generator))
            with trace.rollout_time:
                energies = evaluate(rollout, objective, actions, cfg.max_batch)
            best_idx = lowest(energies, top)
            weights = _path_weights(energies, cfg.temperature)
            free = space.free_dims(actions)
            weighted_mean = torch.einsum("s,shd->hd", weights, free)
            if cfg.adapt_std:
                spread = torch.einsum("s,shd->hd", weights, (free - weighted_mean) ** 2).sqrt()
                std = spread.clamp_min(cfg.min_std)
            mean = (1.0 - cfg.momentum) * weighted_mean + cfg.momentum * mean
            weighted_energy = (weights * torch.where(weights > 0, energies, torch.zeros_like(energies))).sum()
            trace.record((energies[best_idx[0]], weighted_energy, finite_mean(energies)), mean, std)
        return trace.result(space.finalize(mean), actions[best_idx], energies[best_idx], cfg.samples * cfg.iterations)


def _path_weights(energies: torch.Tensor, temperature: float) -> torch.Tensor:
    """Softmax weights of -E / (temperature * spread); non-finite energies get weight 0."""
    finite = torch.isfinite(energies)
    spread = energies[finite].std() if finite.sum() > 1 else torch.tensor(0.0)
    scale = temperature * float(spread) if float(spread) > 0 else temperature
    logits = torch.where(finite, -(energies - energies[finite].min()) / scale, torch.full_like(energies, -torch.inf))
    return torch.softmax(logits, dim=0)
