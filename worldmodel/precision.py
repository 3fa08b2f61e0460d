"""Mixed precision in one place: when the encoder, the predictor and their training run under bf16 autocast."""

from __future__ import annotations

import contextlib
from typing import Literal

import torch

Precision = Literal["auto", "float32", "bfloat16"]
"""auto = bf16 autocast on CUDA and fp32 elsewhere; float32 = always fp32; bfloat16 = always bf16 autocast."""


def autocast(device: torch.device, precision: Precision = "auto") -> contextlib.AbstractContextManager:
    """bf16 autocast on `device` when `precision` asks for it (or is "auto" on CUDA); plain fp32 otherwise."""
    if precision not in ("auto", "float32", "bfloat16"):
        raise ValueError(f"precision must be 'auto', 'float32' or 'bfloat16', got {precision!r}")
    if precision == "bfloat16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
