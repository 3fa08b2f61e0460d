"""The settings of `vjepa-ac sim collect` (`CollectConfig`, with the scripted expert's `ExpertConfig`), in a module
that loads neither torch nor h5py: `sim collect --help` lists their defaults, and a YAML file plus dotted overrides fill
them (`data.config`, the style of every command). The collection itself is `sim.collect`."""

from __future__ import annotations

from dataclasses import dataclass, field

from vjepa_ac.sim.randomization import DomainRandomization


@dataclass(frozen=True)
class ExpertConfig:
    max_translation: float = 0.03
    """Largest commanded step in metres (0.45 m/s at 15 Hz)."""
    max_rotation: float = 0.1
    """Largest commanded rotation per step in radians."""
    position_tolerance: float = 0.008
    rotation_tolerance: float = 0.05
    translation_noise: float = 0.003
    """Standard deviation (m) of Gaussian noise added to every translation."""
    rotation_noise: float = 0.01
    gripper_wait: int = 6
    """Steps to wait with the gripper closing or opening before moving on."""


@dataclass(frozen=True)
class CollectConfig:
    task: str = "pick_and_place"
    episodes: int = 10
    seed: int = 0
    image_size: tuple[int, int] = (180, 320)
    """(height, width) of every camera's frames; DROID's raw videos are 720x1280."""
    explore_fraction: float = 0.2
    """Share of episodes driven by the random explorer (mode "explore")."""
    noisy_fraction: float = 0.15
    """Share of episodes driven by the expert with `noisy_expert`'s much larger action noise ("noisy_expert")."""
    failed_fraction: float = 0.1
    """Share of deliberately failed attempts ("failed", see `sim.experts.FailedAttempt`). The plain expert drives
    the remaining 1 - explore - noisy - failed."""
    perturb_probability: float = 0.3
    """Chance that an expert or noisy-expert episode gets a burst of random actions at a random time."""
    steps_after_success: int = 8
    """Keep recording this many steps after the task succeeds (the operator's reaction time)."""
    min_steps: int = 48
    """Shortest episode (capped at the task's step budget): V-JEPA 2-AC's 8-frame clips at 4 fps span 32 steps."""
    min_speed_factor: float = 0.4
    """Expert episodes move at a random fraction in [min_speed_factor, 1] of the expert's top speed."""
    randomize_appearance: bool = True
    """Domain randomisation: a new scene per episode, drawn from `randomization`; off: the fixed evaluation scene."""
    randomization: DomainRandomization = field(default_factory=DomainRandomization)
    camera_yaw: float = 0.0
    """Degrees the exterior cameras orbit the robot base (`sim.robot.SimConfig.camera_yaw`)."""
    robot: str = "panda"
    """Robot model, see `sim.scene.SceneConfig.robot`."""
    expert: ExpertConfig = field(default_factory=ExpertConfig)
    noisy_expert: ExpertConfig = field(
        default_factory=lambda: ExpertConfig(translation_noise=0.006, rotation_noise=0.03))
    """The expert of "noisy_expert" episodes: twice and three times the usual translation and rotation noise."""
    lab: str = "SIM"

    def __post_init__(self) -> None:
        if self.episodes < 0:
            raise ValueError(f"episodes must be >= 0, got {self.episodes}")
        for name in ("explore_fraction", "noisy_fraction", "failed_fraction", "perturb_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.explore_fraction + self.noisy_fraction + self.failed_fraction > 1.0 + 1e-9:
            raise ValueError(
                f"explore_fraction + noisy_fraction + failed_fraction must be <= 1, got {self.explore_fraction} + "
                f"{self.noisy_fraction} + {self.failed_fraction}")

    @property
    def motion_mix(self) -> dict[str, float]:
        """Share of each motion mode."""
        shares = {"explore": self.explore_fraction, "noisy_expert": self.noisy_fraction,
                  "failed": self.failed_fraction}
        return {**shares, "expert": max(0.0, 1.0 - sum(shares.values()))}

    def motion_mode(self, draw: float) -> str:
        """The mode of an episode whose uniform draw in [0, 1) is `draw`."""
        edge = 0.0
        for mode, share in self.motion_mix.items():
            edge += share
            if draw < edge:
                return mode
        return "expert"
