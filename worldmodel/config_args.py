"""Resolving architecture configs from presets and Meta-named keyword arguments (shared by encoder and predictor).

Meta's constructors take arguments that have no config field here (`num_frames`, `use_rope`, ...); they are accepted
when their value matches what we implement, so hub and training-config kwargs can be passed as they are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

ConfigT = TypeVar("ConfigT")

_ANY = object()
# Argument -> the only value we implement (_ANY: the argument does not change the inference model).
_REFERENCE_ONLY_ARGS: dict[str, Any] = {
    "num_frames": _ANY,  # sized Meta's pre-built mask / position tables; ours are built for the actual length
    "uniform_power": _ANY,  # only shaped the unused sin-cos position embedding
    "wide_silu": _ANY,
    "init_std": _ANY,
    "use_sdpa": True,
    "use_rope": True,
    "use_silu": False,
    "is_frame_causal": True,
    "handle_nonsquare_inputs": True,
    "qk_scale": None,
    "drop_rate": 0.0,
    "attn_drop_rate": 0.0,
    "drop_path_rate": 0.0,
}


def drop_reference_only_args(overrides: dict[str, Any]) -> dict[str, Any]:
    """`overrides` without Meta-only arguments; a value we do not implement (e.g. use_rope=False) is an error."""
    kept = {}
    for name, value in overrides.items():
        if name not in _REFERENCE_ONLY_ARGS:
            kept[name] = value
            continue
        supported = _REFERENCE_ONLY_ARGS[name]
        if supported is not _ANY and value != supported:
            raise ValueError(f"{name}={value!r} is not supported (only {supported!r})")
    return kept


def resolve_config(
    preset_or_config: str | ConfigT, presets: Mapping[str, ConfigT], config_type: type[ConfigT], kind: str,
    overrides: dict[str, Any],
) -> ConfigT:
    """A fresh `config_type` from a preset name or an existing config, with fields overridden by Meta's names."""
    if isinstance(preset_or_config, config_type):
        base = preset_or_config
    elif preset_or_config in presets:
        base = presets[preset_or_config]
    else:
        raise ValueError(f"unknown {kind} preset {preset_or_config!r}; known: {', '.join(presets)}")
    overrides = drop_reference_only_args(overrides)
    unknown = set(overrides) - {f.name for f in dataclasses.fields(config_type)}
    if unknown:
        raise TypeError(f"unknown {kind} config field(s): {', '.join(sorted(unknown))}")
    return dataclasses.replace(base, **overrides)


def as_size_pair(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """(height, width) from Meta's `img_size`, which is an int or a pair."""
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)
