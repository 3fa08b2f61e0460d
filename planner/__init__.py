"""Latent-space planning: CEM / MPPI over action sequences scored by the AC world model, and the MPC loop.

Public API (imported lazily so `vjepa-ac --help` stays fast): `CEMConfig`, `CEMPlanner`, `MPPIConfig`,
`MPPIPlanner`, `PlanResult`, `SearchSpace`, `GoalObjective`, `WorldModelRollout`, `NaiveRollout`, `MPCConfig`,
`LatentPlanner`, `run_mpc`, `EpisodeLog`.
"""

from __future__ import annotations

from vjepa_ac.data.lazy_exports import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    ".cem": ("CEMConfig", "CEMPlanner"),
    ".mppi": ("MPPIConfig", "MPPIPlanner"),
    ".base": ("PlanResult", "PlanningError"),
    ".action_space": ("SearchSpace",),
    ".objectives": ("GoalObjective",),
    ".rollout": ("NaiveRollout", "WorldModelRollout"),
    ".mpc": ("EpisodeLog", "LatentPlanner", "MPCConfig", "run_mpc"),
})
