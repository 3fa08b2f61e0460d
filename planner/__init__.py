"""Latent-space planning: CEM / MPPI over action sequences scored by the AC world model, and the MPC loop.

Public API (imported lazily so `vjepa-ac --help` stays fast): `CEMConfig`, `CEMPlanner`, `MPPIConfig`,
`MPPIPlanner`, `PlanResult`, `SearchSpace`, `GoalObjective`, `WorldModelRollout`, `NaiveRollout`, `MPCConfig`,
`LatentPlanner`, `run_mpc`, `EpisodeLog`.
"""

from __future__ import annotations

from data.lazy_exports import lazy_getattr

_EXPORTS = {
    "CEMConfig": "planner.cem",
    "CEMPlanner": "planner.cem",
    "MPPIConfig": "planner.mppi",
    "MPPIPlanner": "planner.mppi",
    "PlanResult": "planner.base",
    "PlanningError": "planner.base",
    "SearchSpace": "planner.action_space",
    "GoalObjective": "planner.objectives",
    "WorldModelRollout": "planner.rollout",
    "NaiveRollout": "planner.rollout",
    "MPCConfig": "planner.mpc",
    "LatentPlanner": "planner.mpc",
    "EpisodeLog": "planner.mpc",
    "run_mpc": "planner.mpc",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
