"""Cross-entropy method over action sequences, the V-JEPA 2-AC planner (spec vjepa2.md §5.2).

Each iteration draws `samples` action sequences from a per-step Gaussian over (Δx, Δy, Δz, Δgripper), keeps them in
bounds, scores them with the injected rollout + objective, and moves the Gaussian towards the `topk` lowest-energy
sequences with momentum (separate momenta for the gripper). The plan is the final mean, not the best sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from vjepa_ac.planner.action_space import SearchSpace
from vjepa_ac.planner.base import Objective, PlanResult, PlanTrace, RolloutFn, evaluate, finite_mean, lowest


@dataclass
class CEMConfig:
    """CEM settings; defaults are the paper's (800 samples, 10 iterations, top 10, horizon 1, L1 ball 0.075)."""

    samples: int = 800
    iterations: int = 10
    topk: int = 10
    horizon: int = 1
    momentum_mean: float = 0.15
    """new_mean = (1 - m) * elite_mean + m * old_mean for Δxyz."""
    momentum_std: float = 0.15
    momentum_mean_gripper: float = 0.15
    momentum_std_gripper: float = 0.15
    space: SearchSpace = field(default_factory=SearchSpace)
    seed: int = 0
    """Seed of the sampling generator; the same seed gives the same plan for the same rollout."""
    max_batch: int | None = None
    """Evaluate at most this many candidates per rollout call; None = all. Bounds memory on large models: the ViT-g
    predictor's key/value cache takes ~50 MB per candidate and imagined step in fp32."""
    warm_start: bool = False
    """In closed loop, start each plan from the previous plan's sampling mean shifted by one step (the last step
    repeated) instead of zero; the std starts from its initial value as usual (`shift_plan`)."""
    early_stop_std: float | None = None
    """Stop iterating once every Δxyz std of the sampling distribution is below this (metres): the elites have
    converged and further iterations would move the mean by less than that. None = always run `iterations`."""

    def __post_init__(self) -> None:
        for name in ("samples", "iterations", "horizon"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 2 <= self.topk <= self.samples:
            raise ValueError(f"topk must be in [2, samples={self.samples}] (the elite std needs 2), got {self.topk}")
        for name in ("momentum_mean", "momentum_std", "momentum_mean_gripper", "momentum_std_gripper"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.max_batch is not None and self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1 or None, got {self.max_batch}")
        if self.early_stop_std is not None and not self.early_stop_std > 0:
            raise ValueError(f"early_stop_std must be > 0 or None, got {self.early_stop_std}")


def shift_plan(previous: PlanResult, horizon: int) -> torch.Tensor:
    """Initial sampling mean [horizon, free dimensions] for the next control step: the previous plan's final mean
    without the step just executed, its last step repeated to fill the horizon (a horizon-1 plan is reused as it is)."""
    mean = previous.means[-1]
    rest = mean[1:] if len(mean) > 1 else mean
    return torch.cat([rest, rest[-1:].expand(horizon - len(rest), -1)])[:horizon].clone()


class CEMPlanner:
    """Cross-entropy-method planner; `plan(rollout, objective)` returns a `PlanResult`."""

    def __init__(self, config: CEMConfig | None = None) -> None:
        self.config = config or CEMConfig()

    def plan(
        self, rollout: RolloutFn, objective: Objective, *, seed: int | None = None, initial_mean: torch.Tensor | None = None
    ) -> PlanResult:
        """Plan; `initial_mean` [horizon, free dimensions] replaces the zero initial mean (warm start, see
        `shift_plan`)."""
        cfg, space = self.config, self.config.space
        trace = PlanTrace()
        generator = torch.Generator().manual_seed(cfg.seed if seed is None else seed)
        mean, std = space.initial_distribution(cfg.horizon)
        if initial_mean is not None:
            if initial_mean.shape != mean.shape or not torch.isfinite(initial_mean).all():
                raise ValueError(f"initial_mean must be finite {list(mean.shape)}, got {tuple(initial_mean.shape)}")
            mean = space.constrain(initial_mean.float())
        # Δyaw, when searched, moves with the translation's momentum.
        momentum_mean = space.per_dimension(cfg.momentum_mean, cfg.momentum_mean_gripper, cfg.momentum_mean)
        momentum_std = space.per_dimension(cfg.momentum_std, cfg.momentum_std_gripper, cfg.momentum_std)
        for _ in range(cfg.iterations):
            actions = space.to_actions(space.sample(mean, std, cfg.samples, generator))
            with trace.rollout_time:
                energies = evaluate(rollout, objective, actions, cfg.max_batch)
            elite_idx = lowest(energies, cfg.topk)
            elites = space.free_dims(actions[elite_idx])
            mean = (1.0 - momentum_mean) * elites.mean(0) + momentum_mean * mean
            # Unbiased std of the elites, as torch.std in the reference.
            std = (1.0 - momentum_std) * elites.std(0) + momentum_std * std
            elite_energies = energies[elite_idx]
            trace.record((elite_energies[0], elite_energies.mean(), finite_mean(energies)), mean, std)
            if cfg.early_stop_std is not None and bool((std[:, :3] < cfg.early_stop_std).all()):
                break
        iterations = len(trace.iteration_seconds)
        return trace.result(space.finalize(mean), actions[elite_idx], elite_energies, cfg.samples * iterations)
