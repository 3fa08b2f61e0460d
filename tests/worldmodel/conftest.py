"""Fixtures for the world-model tests: the reference checkpoint and cases made with Meta's code (random weights)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

FIXTURE_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "vjepa2_reference"
# The reference itself differs from float64 by ~1.2e-5 (see config.json); 1e-4 is the agreed fp32 bound.
REFERENCE_ATOL = 1e-4


@pytest.fixture(scope="session")
def reference_checkpoint() -> Path:
    return FIXTURE_DIR / "vjepa2-ac-tiny.pt"


@pytest.fixture(scope="session")
def reference_cases() -> dict[str, torch.Tensor]:
    return torch.load(FIXTURE_DIR / "cases.pt", map_location="cpu", weights_only=True)


@pytest.fixture(scope="session")
def reference_config() -> dict:
    return json.loads((FIXTURE_DIR / "config.json").read_text())

