"""A structured description of a checkpoint, checked against our architectures on the meta device (no allocation)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vjepa_ac.worldmodel.checkpoints import (
    CheckpointError,
    encoder_state,
    infer_encoder_config,
    infer_predictor_config,
    predictor_state,
    read_checkpoint,
    state_problems,
    stored_config,
)
from vjepa_ac.worldmodel.encoder import ENCODER_PRESETS, VisionTransformer
from vjepa_ac.worldmodel.predictor import PREDICTOR_PRESETS, ACPredictor


def _entry_summary(value: Any) -> str:
    if isinstance(value, Mapping):
        tensors = sum(isinstance(v, Tensor) for v in value.values())
        return f"{tensors} tensors" if tensors == len(value) else f"dict of {len(value)}"
    if isinstance(value, Tensor):
        return f"tensor {tuple(value.shape)}"
    if isinstance(value, (int, float, str, bool)) or value is None:
        return repr(value)
    return type(value).__name__


def _check(build, config, state: Mapping[str, Tensor], presets: Mapping[str, Any]) -> dict[str, Any]:
    with torch.device("meta"):
        module = build(config)
    problems = state_problems(module, state)
    if problems:
        return {"error": "; ".join(problems), "config": config.to_dict()}
    return {
        "config": config.to_dict(),
        "preset": next((name for name, preset in presets.items() if preset == config), None),
        "num_params": sum(p.numel() for p in module.parameters()),
    }


def describe_checkpoint(
    path: str | os.PathLike, *, preset: str | None = None, checkpoint_key: str | None = None,
    img_size: int | None = None, num_heads: int | None = None,
) -> dict[str, Any]:
    """Kind, entries, and for the encoder and AC predictor: entry, key prefix, config, preset, parameter count and
    whether a strict load would succeed (else the error). Raises `CheckpointError` if the file cannot be read."""
    data = read_checkpoint(path)
    arch = {name: value for name, value in (("img_size", img_size), ("num_heads", num_heads)) if value}
    report: dict[str, Any] = {
        "path": str(path),
        "entries": {name: _entry_summary(value) for name, value in data.items()},
    }
    encoder_img_size = img_size
    try:
        entry, state, prefix, ignored = encoder_state(data, source=str(path), checkpoint_key=checkpoint_key)
        config = infer_encoder_config(state, preset=preset, stored=stored_config(data, "encoder"), **arch)
        encoder_img_size = config.img_size
        report["encoder"] = {"entry": entry, "prefix": prefix, "ignored_keys": ignored,
                             **_check(VisionTransformer, config, state, ENCODER_PRESETS)}
    except CheckpointError as exc:
        report["encoder"] = {"error": str(exc)}
    try:
        entry, state, prefix = predictor_state(data, source=str(path))
        config = infer_predictor_config(
            state, stored=stored_config(data, "predictor"), img_size_hint=encoder_img_size
        )
        report["predictor"] = {"entry": entry, "prefix": prefix, **_check(ACPredictor, config, state, PREDICTOR_PRESETS)}
    except CheckpointError as exc:
        report["predictor"] = {"error": str(exc)}

    loads = {part: "error" not in report[part] for part in ("encoder", "predictor")}
    report["loads"] = any(loads.values())
    encoder_config = report["encoder"].get("config")
    generation = "V-JEPA 2.1" if encoder_config and encoder_config["hierarchical_layers"] else "V-JEPA 2"
    if loads["encoder"] and loads["predictor"]:
        kind = f"{generation} action-conditioned world model (encoder + AC predictor)"
        views = report["predictor"]["config"]["img_size"][1] // encoder_config["img_size"][1]
        if views > 1:
            kind += f", {views} camera views side by side"
    elif loads["encoder"]:
        kind = f"{generation} encoder" + (" (Hugging Face snapshot)" if Path(path).is_dir() else "")
    elif loads["predictor"]:
        kind = "AC predictor only"
    else:
        kind = "not a checkpoint our models load"
    report["kind"] = kind
    return report
