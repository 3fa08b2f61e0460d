"""What every sampling planner shares: the rollout / objective interfaces, batched evaluation and the result object.

A planner never sees a model. It is given
* a rollout function: candidate action sequences [S, H, 7] -> imagined latents [S, H, N, D] (one per step), and
* an objective: imagined latents [S, H, N, D] -> energies [S] (lower is better),
so the same CEM / MPPI code runs against the world model, a naive reference rollout or a synthetic test problem.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch


class RolloutFn(Protocol):
    def __call__(self, actions: torch.Tensor) -> torch.Tensor:
        """Imagined latents [S, H, N, D] for candidate action sequences [S, H, 7] (float32, CPU)."""


class Objective(Protocol):
    def __call__(self, predictions: torch.Tensor) -> torch.Tensor:
        """Energies [S] (lower is better) of imagined latents [S, H, N, D]."""


class PlanningError(RuntimeError):
    """The planner could not produce a trustworthy action (e.g. every candidate's energy was non-finite)."""


@dataclass
class PlanResult:
    """The outcome of one planning call."""

    actions: torch.Tensor
    """Planned action sequence [H, 7] (float32, CPU); execute `actions[0]` and re-plan."""
    energies: torch.Tensor
    """Per iteration: [iterations, 3] = best, elite-mean and all-sample-mean energy."""
    elite_actions: torch.Tensor
    """Elites of the last iteration [K, H, 7], best first."""
    elite_energies: torch.Tensor
    """Their energies [K], ascending."""
    means: torch.Tensor
    """Sampling mean after each iteration [iterations, H, F] (the free dimensions: Δx, Δy, Δz, Δgripper, then Δyaw
    when searched)."""
    stds: torch.Tensor
    """Sampling std after each iteration [iterations, H, F]."""
    seconds: float = 0.0
    """Wall time of the whole call."""
    rollout_seconds: float = 0.0
    """Part of `seconds` spent in rollouts and the objective."""
    num_rollouts: int = 0
    """Candidate sequences evaluated."""
    iteration_seconds: list[float] = field(default_factory=list)
    imagined: torch.Tensor | None = None
    """Imagined latents [H, N, D] of the planned sequence `actions`, when the caller asked for them (surprise gating
    compares them with what the camera then shows)."""

    @property
    def first_action(self) -> np.ndarray:
        """The action to execute now, as a float64 7-vector."""
        return self.actions[0].double().numpy().copy()

    @property
    def energy(self) -> float:
        """Best energy found in the last iteration."""
        return float(self.energies[-1, 0])

    def summary(self) -> dict:
        """JSON-friendly digest for logs."""
        return {
            "action": self.first_action.tolist(),
            "actions": self.actions.tolist(),
            "energy": self.energy,
            "iteration_energies": self.energies.tolist(),
            "seconds": self.seconds,
            "rollout_seconds": self.rollout_seconds,
            "num_rollouts": self.num_rollouts,
        }


def evaluate(rollout: RolloutFn, objective: Objective, actions: torch.Tensor, max_batch: int | None) -> torch.Tensor:
    """Energies [S] (float32, CPU) of action sequences [S, H, 7], in chunks of `max_batch` to bound memory.

    Non-finite energies become +inf so a diverging candidate can never be chosen as an elite.
    """
    chunk = actions.shape[0] if not max_batch else max_batch
    # no_grad rather than inference_mode: tensors a model caches during planning (e.g. RoPE tables) must stay usable
    # by later autograd code in the same process.
    energies = []
    with torch.no_grad():
        for part in actions.split(chunk):
            energy = objective(rollout(part)).float().cpu()
            if energy.shape != (part.shape[0],):
                raise ValueError(f"objective returned shape {tuple(energy.shape)}, expected ({part.shape[0]},)")
            energies.append(energy)
    out = torch.cat(energies)
    return torch.where(torch.isfinite(out), out, torch.full_like(out, float("inf")))


def lowest(energies: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the `k` lowest energies, ascending; raises PlanningError when none is finite."""
    if not torch.isfinite(energies).any():
        raise PlanningError("every candidate's energy is non-finite; the world model output is unusable")
    return energies.topk(k, largest=False, sorted=True).indices


def finite_mean(energies: torch.Tensor) -> torch.Tensor:
    """Mean over the finite entries (the +inf marks of diverged candidates excluded)."""
    return energies[torch.isfinite(energies)].mean()


class PlanTrace:
    """Collects per-iteration records of a planning call and assembles its `PlanResult`."""

    def __init__(self) -> None:
        self._start = time.perf_counter()
        self._iteration_start = self._start
        self.rollout_time = Stopwatch()
        self._energies: list[list[float]] = []
        self._means: list[torch.Tensor] = []
        self._stds: list[torch.Tensor] = []
        self._iteration_seconds: list[float] = []

    @property
    def iteration_seconds(self) -> list[float]:
        """Wall time of each recorded iteration."""
        return self._iteration_seconds

    def record(self, energies: tuple[torch.Tensor, ...], mean: torch.Tensor, std: torch.Tensor) -> None:
        """Close one iteration: (best, elite-mean, all-mean) energies and the updated distribution."""
        now = time.perf_counter()
        self._energies.append([float(e) for e in energies])
        self._means.append(mean.clone())
        self._stds.append(std.clone())
        self._iteration_seconds.append(now - self._iteration_start)
        self._iteration_start = now

    def result(
        self, actions: torch.Tensor, elite_actions: torch.Tensor, elite_energies: torch.Tensor, num_rollouts: int
    ) -> PlanResult:
        return PlanResult(
            actions=actions,
            energies=torch.tensor(self._energies),
            elite_actions=elite_actions,
            elite_energies=elite_energies,
            means=torch.stack(self._means),
            stds=torch.stack(self._stds),
            seconds=time.perf_counter() - self._start,
            rollout_seconds=self.rollout_time.seconds,
            num_rollouts=num_rollouts,
            iteration_seconds=self._iteration_seconds,
        )


class Stopwatch:
    """Accumulates elapsed wall time over several `with` blocks."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.seconds += time.perf_counter() - self._start
