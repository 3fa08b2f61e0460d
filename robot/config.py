"""Bridge configuration: one dataclass tree with working loopback defaults, loadable from the per-robot YAML files
in `launch/` (see `launch/panda.yaml`). Unknown keys are an error so that a typo never silently keeps a default."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from vjepa_ac.robot.backends import BACKEND_NAMES
from vjepa_ac.robot.cameras import CameraConfig, cameras_from_mapping
from vjepa_ac.robot.kinematics import DROID_HOME_Q
from vjepa_ac.robot.limits import JOINT_LIMITS, ActionLimits
from vjepa_ac.robot.protocol import LinkAddress
from vjepa_ac.robot.safety import SafetyConfig
from vjepa_ac.robot.watchdog import WatchdogConfig


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
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    tick_hz: float = 250.0
    """Bridge loop and set-point rate (>= 100 Hz)."""
    state_hz: float = 100.0
    camera_hz: float = 10.0
    jpeg_quality: int = 90
    cameras: tuple[CameraConfig, ...] = ()
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


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"unknown keys in {where}: {sorted(unknown)} (allowed: {sorted(names)})")
    return cls(**values)


def bridge_config_from_dict(data: dict[str, Any]) -> BridgeConfig:
    data = dict(data)
    if "link" in data:
        data["link"] = _build(LinkConfig, data["link"] or {}, "link")
    if "watchdog" in data:
        data["watchdog"] = _build(WatchdogConfig, data["watchdog"] or {}, "watchdog")
    if "safety" in data:
        safety = dict(data["safety"] or {})
        action_keys = {f.name for f in dataclasses.fields(ActionLimits)}
        action = {k: safety.pop(k) for k in list(safety) if k in action_keys}
        for key in ("workspace_min", "workspace_max"):
            if key in action:
                action[key] = np.asarray(action[key], dtype=np.float64)
        if "rest_q" in safety:
            safety["rest_q"] = np.asarray(safety["rest_q"], dtype=np.float64)
        safety["action_limits"] = _build(ActionLimits, action, "safety")
        data["safety"] = _build(SafetyConfig, safety, "safety")
    if "home_q" in data:
        data["home_q"] = tuple(float(x) for x in data["home_q"])
    if "cameras" in data:
        data["cameras"] = cameras_from_mapping(data["cameras"])
    return _build(BridgeConfig, data, "the bridge config")


def load_bridge_config(path: str | Path, **overrides: Any) -> BridgeConfig:
    """Read a YAML bridge config; `overrides` replace top-level keys (e.g. backend="mujoco")."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"bridge config not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise TypeError(f"{path}: the top level must be a mapping")
    data.update({k: v for k, v in overrides.items() if v is not None})
    # Relative key paths are relative to the config file, so a config folder can be moved as a whole.
    link = data.get("link") or {}
    for key in ("secret_key", "authorized_keys"):
        if link.get(key):
            link[key] = str((path.parent / Path(link[key]).expanduser()).resolve())
    if link:
        data["link"] = link
    return bridge_config_from_dict(data)
