"""AdamW parameter groups and the warmup-stable-decay schedule."""

from __future__ import annotations

import pytest

from vjepa_ac.worldmodel import build_predictor
from vjepa_ac.worldmodel.training.config import OptimConfig
from vjepa_ac.worldmodel.training.optim import WSDSchedule, build_optimizer, wsd_learning_rate


def test_schedule_shape():
    c = OptimConfig(total_steps=100, warmup_steps=10, anneal_steps=20, start_lr=1.0, lr=3.0, final_lr=0.0)
    assert wsd_learning_rate(0, c) == 1.0
    assert wsd_learning_rate(5, c) == pytest.approx(2.0)
    assert wsd_learning_rate(10, c) == wsd_learning_rate(79, c) == 3.0
    assert wsd_learning_rate(90, c) == pytest.approx(1.5)
    assert wsd_learning_rate(100, c) == 0.0


def test_weight_decay_groups_and_schedule_state():
    model = build_predictor("vit_ac_tiny")
    model.extrinsics_encoder.requires_grad_(False)
    opt = build_optimizer(model, OptimConfig(weight_decay=0.04))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.04 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == trained
    schedule = WSDSchedule(opt, OptimConfig(total_steps=10, warmup_steps=4, anneal_steps=2))
    lrs = [schedule.step() for _ in range(3)]
    resumed = WSDSchedule(opt, OptimConfig(total_steps=10, warmup_steps=4, anneal_steps=2))
    resumed.load_state_dict(schedule.state_dict())
    assert resumed.step() == schedule.step() and opt.param_groups[0]["lr"] == lrs[-1] + (lrs[1] - lrs[0])
