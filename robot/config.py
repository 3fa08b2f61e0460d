"""Bridge configuration: one dataclass tree with working loopback defaults, loadable from the per-robot YAML files
in `launch/` (see `launch/panda.yaml`) with dotted `key=value` overrides (`data.config`, the style of every command).
Unknown keys are an error so that a typo never silently keeps a default."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vjepa_ac.data.config import ConfigError, build, codec, from_dict, read_yaml, to_dict, unknown_key_error
from vjepa_ac.robot.backends import BACKEND_NAMES
from vjepa_ac.robot.cameras import CameraConfig, cameras_from_mapping, cameras_to_mapping
from vjepa_ac.robot.kinematics import DROID_HOME_Q
from vjepa_ac.robot.limits import JOINT_LIMITS, ActionLimits
from vjepa_ac.robot.protocol import LinkAddress
from vjepa_ac.robot.safety import SafetyConfig
from vjepa_ac.robot.watchdog import WatchdogConfig


def _safety_from_yaml(values: Any, where: str) -> SafetyConfig:
    """The `safety:` section: `SafetyConfig` fields and `ActionLimits` fields side by side in one flat mapping (the
    joint limits follow `robot`)."""
    if values is None:
        return SafetyConfig()
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of safety settings, got {values!r}")
    action_keys = {f.name for f in dataclasses.fields(ActionLimits)}
    safety_keys = {f.name for f in dataclasses.fields(SafetyConfig)} - {"joint_limits", "action_limits"}
    for key in values:
        if key not in action_keys | safety_keys:
            raise unknown_key_error(key, sorted(action_keys | safety_keys), where)
    action = from_dict(ActionLimits, {k: v for k, v in values.items() if k in action_keys}, where)
    safety = from_dict(SafetyConfig, {k: v for k, v in values.items() if k in safety_keys}, where)
    return dataclasses.replace(safety, action_limits=action)


def _safety_to_yaml(safety: SafetyConfig) -> dict[str, Any]:
    flat = {**to_dict(safety.action_limits), **to_dict(safety)}
    del flat["joint_limits"], flat["action_limits"]
    return flat


@dataclass(frozen=True)
class LinkConfig(LinkAddress):
    """Where the bridge listens (`LinkAddress`: host and ports; tests use loopback only) and which keys it trusts."""

    secret_key: str | None = None
    """The bridge's CurveZMQ secret key file (`vjepa-ac bridge keygen`); None runs unencrypted on loopback only."""
    authorized_keys: str | None = None
    """Folder of client public key files the bridge accepts."""

    @property
    def curve(self) -> bool:
        return self.secret_key is not None


@dataclass(frozen=True)
class BridgeConfig:
    robot: str = "panda"
    """"panda" or "fr3": selects the joint limit table."""
    backend: str = "mujoco"
    """One of `robot.backends.BACKEND_NAMES`."""
    backend_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Backend name -> keyword options of that backend (one YAML can serve several backends)."""
    control_mode: str = "joint"
    """"joint": IK in the bridge, joint set-points; "cartesian": stream flange equilibrium poses (impedance)."""
    link: LinkConfig = field(default_factory=LinkConfig)
    watchdog: WatchdogConfig = field(default_factory=lambda: WatchdogConfig(hold_after_s=0.12, stop_after_s=0.85))
    """Defaults stay below the 250 ms / 1 s guarantees even when the last heartbeat came just before a failure."""
    safety: SafetyConfig = field(default_factory=SafetyConfig, metadata=codec(_safety_from_yaml, _safety_to_yaml))
    """In YAML one flat mapping of `SafetyConfig` and `ActionLimits` fields (see `launch/panda.yaml`)."""
    tick_hz: float = 250.0
    """Bridge loop and set-point rate (>= 100 Hz)."""
    state_hz: float = 100.0
    camera_hz: float = 10.0
    jpeg_quality: int = 90
    cameras: tuple[CameraConfig, ...] = field(default=(), metadata=codec(cameras_from_mapping, cameras_to_mapping))
    """Cameras read by the bridge and published on its camera stream beside the backend's own (MuJoCo renders
    "left", "right", "wrist"); in YAML a mapping role -> settings (`robot.cameras.CameraConfig`)."""
    home_q: tuple[float, ...] = tuple(DROID_HOME_Q.tolist())

    def __post_init__(self) -> None:
        if self.robot not in JOINT_LIMITS:
            raise ValueError(f"unknown robot {self.robot!r}; choose one of {sorted(JOINT_LIMITS)}")
        if self.backend not in BACKEND_NAMES:
            raise ValueError(f"unknown backend {self.backend!r}; choose one of {list(BACKEND_NAMES)}")
        if self.control_mode not in ("joint", "cartesian"):
            raise ValueError(f"control_mode must be 'joint' or 'cartesian', got {self.control_mode!r}")
        if self.tick_hz < 100:
            raise ValueError(f"tick_hz must be at least 100 (set-point rate), got {self.tick_hz}")
        if self.cameras and not self.camera_hz > 0:
            raise ValueError(f"cameras {[c.role for c in self.cameras]} are declared but camera_hz is {self.camera_hz}")
        if len(self.home_q) != 7:
            raise ValueError(f"home_q needs 7 joint angles, got {len(self.home_q)}")
        unknown = set(self.backend_options) - set(BACKEND_NAMES)
        if unknown:
            raise ValueError(f"backend_options has sections {sorted(unknown)}; backends are {list(BACKEND_NAMES)}")
        if self.safety.joint_limits is not JOINT_LIMITS[self.robot]:
            object.__setattr__(self, "safety", dataclasses.replace(self.safety, joint_limits=JOINT_LIMITS[self.robot]))


def bridge_config_from_dict(data: dict[str, Any]) -> BridgeConfig:
    """A `BridgeConfig` from the nested mapping a bridge YAML holds."""
    return from_dict(BridgeConfig, data)


def load_bridge_config(path: str | Path | None = None, overrides: Sequence[str] = (),
                       settings: dict[str, Any] | None = None, **top_level: Any) -> BridgeConfig:
    """A bridge YAML (None: the defaults), then typed `settings` {dotted key: value} and keyword `top_level` keys
    (e.g. backend="mujoco"; None values are ignored), then `section.key=value` `overrides`."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        values = read_yaml(path)
        # Relative key paths are relative to the config file, so a config folder can be moved as a whole.
        link = values.get("link")
        if isinstance(link, dict):
            for key in ("secret_key", "authorized_keys"):
                if link.get(key):
                    link[key] = str((path.parent / Path(link[key]).expanduser()).resolve())
    settings = {**(settings or {}), **{k: v for k, v in top_level.items() if v is not None}}
    return build(BridgeConfig, values, overrides, settings, source=path)
