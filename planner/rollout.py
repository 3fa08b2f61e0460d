"""Rollout functions that imagine the future latents of candidate action sequences with the AC predictor.

`WorldModelRollout` is the fast one: the context frames before the current one are run through the predictor once
per control step (batch 1) and their keys/values are shared by every candidate and every CEM iteration through
`PredictorCache.expand`; each imagined step then appends one block of tokens with `ACPredictor.step`, so step h
costs one block attending to the cache instead of a forward over the whole history. Imagined states are integrated
in torch for all candidates at once.

`NaiveRollout` does what the reference notebook does: for every imagined step it re-runs the predictor's `forward`
on the entire history of every candidate. It exists as the equivalence reference for tests and the baseline of
`bench/planner.py`.

Both return normalized latents (`normalize_reps` applied to every prediction, as the reference does before feeding
predictions back and before computing energies).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from vjepa_ac.data.droid.poses import apply_actions
from vjepa_ac.planner.compiled import compiled_step
from vjepa_ac.worldmodel import normalize_reps
from vjepa_ac.worldmodel.precision import Precision, autocast
from vjepa_ac.worldmodel.predictor import RolloutBuffer



def imagine_states(state: Tensor, actions: Tensor) -> Tensor:
    """States [S, H, 7] at which each action of [S, H, 7] is applied, starting from `state` [7] or [S, 7].

    Step 0 is `state` itself; step h is reached by applying actions 0..h-1 (gripper clipped to [0, 1]), in float64
    for all candidates at once.
    """
    samples, horizon = actions.shape[:2]
    current = state.double().expand(samples, -1)
    out = [current]
    for h in range(horizon - 1):
        current = apply_actions(current, actions[:, h].double())
        out.append(current)
    return torch.stack(out, dim=1)


def candidate_memory_bytes(predictor: torch.nn.Module, steps: int, dtype: torch.dtype = torch.float32) -> int:
    """Upper estimate of the memory one candidate holds during an incremental rollout over `steps` blocks (context
    frames + imagined steps): the key/value cache of every layer, plus one step's widest activations and the
    predicted latents. About 50 MB per step for the ViT-g predictor in fp32."""
    c = predictor.config
    element = torch.tensor([], dtype=dtype).element_size()
    tokens = predictor.tokens_per_step
    cache = c.depth * 2 * steps * tokens * c.predictor_embed_dim * element
    activations = 4 * tokens * int(c.predictor_embed_dim * c.mlp_ratio) * element
    predictions = steps * predictor.tokens_per_frame * c.embed_dim * 4
    return cache + activations + predictions


class _PredictorRollout:
    """Shared context handling: validates and stores the context on the predictor's device."""

    def __init__(
        self,
        predictor: torch.nn.Module,
        context_latents: Tensor,
        context_states: Tensor,
        context_actions: Tensor | None = None,
        *,
        context_extrinsics: Tensor | None = None,
        num_levels: int = 1,
        precision: Precision = "auto",
    ) -> None:
        self.predictor = predictor
        param = next(predictor.parameters())
        self.device, self.dtype = param.device, param.dtype
        n, d = predictor.tokens_per_frame, predictor.config.embed_dim
        latents = context_latents if context_latents.ndim == 3 else context_latents.unsqueeze(0)
        if latents.ndim != 3 or latents.shape[1:] != (n, d):
            raise ValueError(
                f"context latents must be [N={n}, D={d}] or [K, {n}, {d}] for this predictor, "
                f"got {tuple(context_latents.shape)}"
            )
        k = latents.shape[0]
        if context_states.numel() != k * 7:
            raise ValueError(
                f"context states must be [{k}, 7] (one per context frame), got {tuple(context_states.shape)}"
            )
        actions = context_actions if context_actions is not None else torch.zeros(0, 7)
        if actions.shape != (k - 1, 7):
            raise ValueError(
                f"context actions must be [{k - 1}, 7] (between context frames), got {tuple(actions.shape)}"
            )
        states = context_states.reshape(k, 7)
        for name, value in (("latents", latents), ("states", states), ("actions", actions)):
            if not torch.all(torch.isfinite(value)):
                raise ValueError(f"context {name} contain NaN or infinite values")
        if predictor.config.use_extrinsics:
            if context_extrinsics is None or context_extrinsics.reshape(-1, 6).shape[0] not in (1, k):
                raise ValueError("this predictor uses camera extrinsics: pass context_extrinsics [6] or [K, 6]")
            self.extrinsics = context_extrinsics.reshape(-1, 6).expand(k, 6).to(self.device, self.dtype)
        else:
            self.extrinsics = None
        self.latents = latents.to(self.device, self.dtype)
        self.states = states.to(self.device, torch.float64)
        self.actions = actions.to(self.device, self.dtype)
        autocast(self.device, precision)  # refuse an unknown precision now, not at the first rollout
        self.precision = precision
        self.num_levels = num_levels
        self._autocast = lambda: autocast(self.device, precision)

    @property
    def num_context_frames(self) -> int:
        return self.latents.shape[0]

    def _prepare(self, actions: Tensor) -> tuple[Tensor, Tensor]:
        """Candidate actions on device and the states they are applied at, both [S, H, 7] in the model dtype."""
        if actions.ndim != 3 or actions.shape[-1] != 7:
            raise ValueError(f"candidate actions must be [S, H, 7], got {tuple(actions.shape)}")
        actions = actions.to(self.device)
        states = imagine_states(self.states[-1], actions)
        return actions.to(self.dtype), states.to(self.dtype)

    def _normalize(self, raw: Tensor) -> Tensor:
        """Normalized prediction in the model dtype, computed in fp32 (the precision-critical part)."""
        return normalize_reps(raw.float(), self.num_levels).to(self.dtype)

    def _extrinsics(self, samples: int, steps: int) -> Tensor | None:
        """Camera extrinsics [S, steps, 6] for imagined steps: the camera stays where it was last seen."""
        if self.extrinsics is None:
            return None
        return self.extrinsics[-1].expand(samples, steps, 6)


class WorldModelRollout(_PredictorRollout):
    """Incremental rollout with a key/value cache; see the module docstring.

    The current frame's patch tokens are embedded once per rollout object and shared by all candidates, and each call
    writes the candidates' keys/values into a preallocated `RolloutBuffer` (kept between calls of the same size)
    instead of concatenating the history at every imagined step.

    Args:
        predictor: a `worldmodel.ACPredictor` (eval mode).
        context_latents: normalized latents of the context frames, [N, D] (current frame only, as the reference) or
            [K, N, D] (oldest first, current frame last).
        context_states: DROID states of the context frames, [7] or [K, 7].
        context_actions: actions executed between the context frames, [K-1, 7].
        context_extrinsics: camera extrinsics [6] or [K, 6], only for predictors built with `use_extrinsics`.
        num_levels: feature levels concatenated per token (4 for V-JEPA 2.1 hierarchical features), each normalized
            on its own; `WorldModel.num_levels`.
        precision: "auto" (bf16 autocast on CUDA, fp32 on CPU), "float32" or "bfloat16".
        compile: run the imagined steps through `torch.compile` (`planner.compiled.compiled_step`: fuses RoPE, bias +
            GELU and layer norms; falls back to eager, with a warning, where compilation fails).
    """

    def __init__(self, *args, compile: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._step: Callable = compiled_step(self.predictor) if compile else self.predictor.step
        self.prefix = None
        self._buffer: RolloutBuffer | None = None
        with torch.no_grad(), self._autocast():
            for j in range(self.num_context_frames - 1):
                ext = None if self.extrinsics is None else self.extrinsics[j : j + 1]
                _, self.prefix = self.predictor.step(
                    self.latents[j : j + 1],
                    self.actions[j : j + 1],
                    self.states[j : j + 1].to(self.dtype),
                    self.prefix,
                    extrinsics_t=ext,
                )
            # Every candidate starts from the same observed frame: embed its patches once, not once per candidate.
            self.frame_tokens = self.predictor.embed_frames(self.latents[-1:])

    def _buffer_for(self, samples: int, horizon: int) -> RolloutBuffer:
        """A buffer for `samples` x (context + horizon) steps holding the context prefix, reused between calls."""
        capacity = self.num_context_frames - 1 + horizon
        dtype = self.frame_tokens.dtype
        buffer = self._buffer
        if buffer is None or buffer.batch_size != samples or buffer.capacity != capacity or buffer.keys[0].dtype != dtype:
            buffer = RolloutBuffer.allocate(self.predictor, samples, capacity, prefix=self.prefix, dtype=dtype)
            self._buffer = buffer
        # Imagined steps only ever write after the prefix, so rewinding is enough to reuse the buffer.
        buffer.num_steps = self.num_context_frames - 1
        return buffer

    def __call__(self, actions: Tensor) -> Tensor:
        actions, states = self._prepare(actions)
        samples, horizon = actions.shape[:2]
        extrinsics = self._extrinsics(samples, horizon)
        predictions = []
        with torch.no_grad(), self._autocast():
            cache = self._buffer_for(samples, horizon)
            frame, embedded = self.frame_tokens, True
            for h in range(horizon):
                ext = None if extrinsics is None else extrinsics[:, h]
                raw, cache = self._step(frame, actions[:, h], states[:, h], cache, extrinsics_t=ext, embedded=embedded)
                frame, embedded = self._normalize(raw), False
                predictions.append(frame)
        return torch.stack(predictions, dim=1).float()


class NaiveRollout(_PredictorRollout):
    """Full-history recompute per imagined step (the reference notebook's method); same arguments as
    `WorldModelRollout` except `compile`."""

    def __call__(self, actions: Tensor) -> Tensor:
        actions, states = self._prepare(actions)
        samples, horizon = actions.shape[:2]
        k = self.num_context_frames
        frames = self.latents.expand(samples, -1, -1, -1)
        past_actions = self.actions.expand(samples, -1, -1)
        past_states = self.states[:-1].to(self.dtype).expand(samples, -1, -1)
        extrinsics = None
        if self.extrinsics is not None:
            extrinsics = torch.cat([self.extrinsics.expand(samples, k, 6), self._extrinsics(samples, horizon)], 1)
        n = self.predictor.tokens_per_frame
        predictions = []
        with torch.no_grad(), self._autocast():
            for h in range(horizon):
                steps = k + h
                raw = self.predictor(
                    frames.flatten(1, 2),
                    torch.cat([past_actions, actions[:, : h + 1]], dim=1),
                    torch.cat([past_states, states[:, : h + 1]], dim=1),
                    None if extrinsics is None else extrinsics[:, : steps],
                )[:, -n:]
                frame = self._normalize(raw)
                predictions.append(frame)
                frames = torch.cat([frames, frame.unsqueeze(1)], dim=1)
        return torch.stack(predictions, dim=1).float()
