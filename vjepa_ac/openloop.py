"""Open-loop prediction error of a world model: roll the predictor out on recorded actions and compare each imagined
frame with the encoding of the frame that was actually recorded.

The rollout is the planner's own (`planner.rollout.WorldModelRollout`): it starts from one encoded frame, feeds its
normalised predictions back and integrates the state from the actions, so a low error here means the energies the
planner ranks are trustworthy over that horizon.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

from vjepa_ac.report import OpenLoopError


@torch.no_grad()
def open_loop_error(world_model, clips: Iterable[Mapping[str, torch.Tensor]], *, horizon: int) -> OpenLoopError:
    """Mean L1 per horizon step over clips shaped like `data.droid.DroidClipDataset` items (frames [T,H,W,3] uint8,
    actions [T-1,7], states [T,7]) with T >= horizon + 1; the copy-context baseline is computed on the same frames."""
    from vjepa_ac.planner.rollout import WorldModelRollout

    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    model_sum = torch.zeros(horizon, dtype=torch.float64)
    copy_sum = torch.zeros(horizon, dtype=torch.float64)
    count = 0
    for clip in clips:
        frames = torch.as_tensor(clip["frames"])
        if frames.shape[0] < horizon + 1:
            raise ValueError(f"clip has {frames.shape[0]} frames, horizon {horizon} needs at least {horizon + 1}")
        actions = torch.as_tensor(clip["actions"], dtype=torch.float32)[:horizon]
        state0 = torch.as_tensor(clip["states"], dtype=torch.float64)[0]
        z = world_model.encode(frames[: horizon + 1].unsqueeze(0))[0].float().cpu()  # [H+1, N, D], normalised
        rollout = WorldModelRollout(world_model.predictor, z[0], state0, num_levels=world_model.num_levels,
                                    precision="float32")
        imagined = rollout(actions.unsqueeze(0))[0].float().cpu()  # [H, N, D]
        target = z[1:]
        model_sum += (imagined - target).abs().mean(dim=(1, 2)).double()
        copy_sum += (z[:1] - target).abs().mean(dim=(1, 2)).double()
        count += 1
    if count == 0:
        raise ValueError("no clips to measure open-loop error on")
    return OpenLoopError(
        horizon=horizon,
        clips=count,
        model_l1=tuple((model_sum / count).tolist()),
        copy_l1=tuple((copy_sum / count).tolist()),
    )
