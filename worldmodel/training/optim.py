"""AdamW and the warmup-stable-decay learning-rate schedule of the reference (`src/utils/schedulers.py`)."""

from __future__ import annotations

from torch import nn
from torch.optim import AdamW, Optimizer

from .config import OptimConfig


def build_optimizer(model: nn.Module, config: OptimConfig) -> AdamW:
    """AdamW with weight decay on weight matrices only; biases and 1-D parameters (norms) get none, as the reference.

    Frozen parameters (requires_grad False) are left out.
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if name.endswith("bias") or param.ndim == 1 else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return AdamW(groups, lr=config.start_lr, betas=tuple(config.betas), eps=config.eps)


def wsd_learning_rate(step: int, config: OptimConfig) -> float:
    """Learning rate of optimizer step `step` (1-based, as the reference counts): linear warmup from start_lr to
    lr over warmup_steps, constant, then linear decay to final_lr over the last anneal_steps."""
    stable_end = config.total_steps - config.anneal_steps
    if step < config.warmup_steps:
        return config.start_lr + step / max(1, config.warmup_steps) * (config.lr - config.start_lr)
    if step < stable_end:
        return config.lr
    progress = min(1.0, (step - stable_end) / max(1, config.anneal_steps))
    return config.lr + progress * (config.final_lr - config.lr)


class WSDSchedule:
    """Sets the optimizer's learning rate before each step; its whole state is the step count."""

    def __init__(self, optimizer: Optimizer, config: OptimConfig) -> None:
        self.optimizer = optimizer
        self.config = config
        self.steps_done = 0

    def step(self) -> float:
        self.steps_done += 1
        lr = wsd_learning_rate(self.steps_done, self.config)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def state_dict(self) -> dict:
        return {"steps_done": self.steps_done}

    def load_state_dict(self, state: dict) -> None:
        self.steps_done = int(state["steps_done"])
