"""The shipped default model: it loads without arguments, matches its model card, and (slow) plans a reach."""

import hashlib
import json

import pytest

from vjepa_ac.default_model import DEFAULT_CHECKPOINT

pytestmark = pytest.mark.vjepa_ac  # the embedded model through vjepa-ac's pytest plugin

# A reach episode of the evaluation seeds that the shipped model solves (see EVALUATION.md).
DEMO_REACH_SEED = 1002


def test_checkpoint_matches_its_card(vjepa_world_model):
    card = json.loads(DEFAULT_CHECKPOINT.with_suffix(".json").read_text())
    assert card["checkpoint"] == DEFAULT_CHECKPOINT.name
    assert hashlib.sha256(DEFAULT_CHECKPOINT.read_bytes()).hexdigest() == card["sha256"]
    # A few MB at most, so it can live in the repository.
    assert DEFAULT_CHECKPOINT.stat().st_size < 5_000_000
    world_model, defaults, path = vjepa_world_model.world_model, vjepa_world_model.defaults, vjepa_world_model.path
    assert path == DEFAULT_CHECKPOINT
    assert world_model.tokens_per_frame == card["tokens_per_frame"]
    assert sum(p.numel() for p in world_model.predictor.parameters()) == card["parameters"]["predictor"]
    assert defaults.fps == card["fps"] and defaults.camera == card["camera"]


def test_checkpoint_is_in_metas_layout():
    import torch

    data = torch.load(DEFAULT_CHECKPOINT, map_location="cpu", weights_only=True)
    assert {"encoder", "target_encoder", "predictor", "epoch"} <= set(data)
    assert all(k.startswith("module.backbone.") for k in data["encoder"])
    assert all(k.startswith("module.") and not k.startswith("module.backbone.") for k in data["predictor"])
    assert "opt" not in data  # exported without optimizer state


def test_demo_reaches_on_a_fixed_seed(tmp_path):
    from vjepa_ac.cli import main

    assert main(["demo", "--task", "reach", "--episodes", "1", "--seed", str(DEMO_REACH_SEED),
                 "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    (outcome,) = summary["outcomes"]
    assert outcome["task"] == "reach" and outcome["success"], outcome
    assert outcome["final_distance"] <= 0.03
    assert (tmp_path / "demo.mp4").stat().st_size > 10_000
