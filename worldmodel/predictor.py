"""The V-JEPA 2-AC action-conditioned predictor: a block-causal transformer over per-step token blocks.

Every time step t contributes one block `[action_t, state_t, (extrinsics_t), patch_0 .. patch_{N-1}]`. Attention is
full inside a block and causal across blocks, so the output at step t (a prediction of frame t+1) depends only on
frames, actions and states up to t. Conditioning tokens are ordinary tokens at RoPE position (t, 0, 0), which rotates
only their time chunk, exactly as the reference's separate action-token path does.

Because earlier blocks never see later ones, their keys and values are final once computed: `ACPredictor.step`
appends one block at a time to a `PredictorCache` and gives the same outputs as `forward` on the whole sequence.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from vjepa_ac.worldmodel.config_args import as_size_pair, resolve_config
from vjepa_ac.worldmodel.layers import LAYER_NORM_EPS, Block, init_transformer_weights
from vjepa_ac.worldmodel.rope import grid_positions, rope_tables

_MASK_CACHE_SIZE = 4


@dataclass
class PredictorConfig:
    """Architecture of the AC predictor. Field names follow Meta's `vit_ac_predictor` constructor."""

    embed_dim: int = 1408
    """Width of the encoder features it reads and predicts (levels concatenated for hierarchical 2.1 features)."""
    predictor_embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    action_embed_dim: int = 7
    img_size: tuple[int, int] = (256, 256)
    patch_size: int = 16
    tubelet_size: int = 2
    use_extrinsics: bool = False
    use_activation_checkpointing: bool = False
    qkv_bias: bool = True

    def __post_init__(self) -> None:
        self.img_size = as_size_pair(self.img_size)
        if self.predictor_embed_dim % self.num_heads:
            raise ValueError(
                f"predictor_embed_dim {self.predictor_embed_dim} is not divisible by num_heads {self.num_heads}"
            )

    @property
    def grid(self) -> tuple[int, int]:
        return self.img_size[0] // self.patch_size, self.img_size[1] // self.patch_size

    @property
    def tokens_per_frame(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def cond_tokens(self) -> int:
        """Conditioning tokens per step: action, state (and extrinsics)."""
        return 3 if self.use_extrinsics else 2

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PREDICTOR_PRESETS: dict[str, PredictorConfig] = {
    # The released vjepa2-ac-vitg.pt predictor (Meta's class defaults after their fix dc73853).
    "vit_ac_giant": PredictorConfig(),
    # CPU test size, matching the reference fixture.
    "vit_ac_tiny": PredictorConfig(embed_dim=64, predictor_embed_dim=64, depth=2, num_heads=4, img_size=(64, 64)),
}


def predictor_config(preset_or_config: str | PredictorConfig, **overrides) -> PredictorConfig:
    """A fresh config from a preset name or an existing config, with Meta-named fields overridden (Meta's other
    constructor arguments, such as num_frames or use_rope=True, are accepted when they match what we implement)."""
    return resolve_config(preset_or_config, PREDICTOR_PRESETS, PredictorConfig, "predictor", overrides)


@dataclass(frozen=True)
class PredictorCache:
    """Rotated keys and values of every layer for the steps seen so far; immutable (`step` returns a new one).

    `keys[i]` / `values[i]` are [B, heads, num_steps * tokens_per_step, head_dim] for layer i.
    """

    keys: tuple[Tensor, ...]
    values: tuple[Tensor, ...]
    num_steps: int

    @property
    def batch_size(self) -> int:
        return self.keys[0].shape[0]

    def expand(self, batch_size: int) -> PredictorCache:
        """Broadcast a batch-1 cache to `batch_size` samples as views (no copy), e.g. one context for all CEM samples."""
        if self.batch_size == batch_size:
            return self
        if self.batch_size != 1:
            raise ValueError(f"only a batch-1 cache can be expanded, this one has batch {self.batch_size}")

        def grow(t: Tensor) -> Tensor:
            return t.expand(batch_size, *t.shape[1:])

        return PredictorCache(tuple(map(grow, self.keys)), tuple(map(grow, self.values)), self.num_steps)


class RolloutBuffer:
    """Preallocated keys and values of every layer for a rollout of at most `capacity` steps, filled in place by
    `ACPredictor.step` (mutable, unlike `PredictorCache`): each step writes its block once instead of copying the
    whole history into a new tensor. `keys[i]` / `values[i]` are [B, heads, capacity * tokens_per_step, head_dim]."""

    def __init__(self, keys: list[Tensor], values: list[Tensor], tokens_per_step: int, num_steps: int = 0) -> None:
        self.keys, self.values = keys, values
        self.tokens_per_step = tokens_per_step
        self.num_steps = num_steps

    @classmethod
    def allocate(
        cls,
        predictor: ACPredictor,
        batch_size: int,
        capacity: int,
        *,
        prefix: PredictorCache | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | None = None,
    ) -> RolloutBuffer:
        """Room for `capacity` steps of `batch_size` samples, starting with a copy of `prefix` (batch 1 or batch_size,
        e.g. the context frames every candidate shares)."""
        c = predictor.config
        weight = predictor.predictor_embed.weight
        dtype, device = dtype or weight.dtype, device or weight.device
        past = prefix.num_steps if prefix is not None else 0
        if capacity < past + 1:
            raise ValueError(f"capacity {capacity} leaves no room after the {past} prefix steps")
        per_step = predictor.tokens_per_step
        shape = (batch_size, c.num_heads, capacity * per_step, c.predictor_embed_dim // c.num_heads)
        keys = [torch.empty(shape, dtype=dtype, device=device) for _ in range(c.depth)]
        values = [torch.empty(shape, dtype=dtype, device=device) for _ in range(c.depth)]
        if prefix is not None:
            filled = past * per_step
            for dst, src in zip(keys + values, prefix.keys + prefix.values, strict=True):
                dst[:, :, :filled] = src
        return cls(keys, values, per_step, past)

    @property
    def batch_size(self) -> int:
        return self.keys[0].shape[0]

    @property
    def capacity(self) -> int:
        return self.keys[0].shape[2] // self.tokens_per_step


class ACPredictor(nn.Module):
    """V-JEPA 2-AC predictor; parameter names match Meta's `VisionTransformerPredictorAC` state dict."""

    def __init__(self, config: PredictorConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        width = c.predictor_embed_dim
        self.predictor_embed = nn.Linear(c.embed_dim, width)
        self.action_encoder = nn.Linear(c.action_embed_dim, width)
        self.state_encoder = nn.Linear(c.action_embed_dim, width)
        # Present in the released checkpoint even though it is unused there.
        self.extrinsics_encoder = nn.Linear(c.action_embed_dim - 1, width)
        self.predictor_blocks = nn.ModuleList(
            [Block(width, c.num_heads, c.mlp_ratio, qkv_bias=c.qkv_bias) for _ in range(c.depth)]
        )
        self.predictor_norm = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.predictor_proj = nn.Linear(width, c.embed_dim)
        self._rope_cache: dict[str, tuple[Tensor, Tensor]] = {}
        self._mask_cache: dict[tuple[int, str, torch.dtype], Tensor] = {}
        init_transformer_weights(self, self.predictor_blocks)

    @property
    def tokens_per_frame(self) -> int:
        return self.config.tokens_per_frame

    @property
    def tokens_per_step(self) -> int:
        return self.config.cond_tokens + self.config.tokens_per_frame

    # ------------------------------------------------------------------ positions and masks
    def _rope(self, first_step: int, num_steps: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """Tables for steps [first_step, first_step + num_steps); one table per device grown by doubling."""
        key = str(device)
        per_step = self.tokens_per_step
        needed = (first_step + num_steps) * per_step
        cached = self._rope_cache.get(key)
        if cached is None or cached[0].shape[0] < needed:
            steps = max(first_step + num_steps, 2 * (cached[0].shape[0] // per_step) if cached is not None else 8)
            # One step's (h, w): conditioning tokens at (0, 0), then the patches row-major.
            patches = grid_positions(1, *self.config.grid, device=device)[:, 1:]
            spatial = torch.cat([patches.new_zeros(self.config.cond_tokens, 2), patches])
            t = torch.arange(steps, dtype=torch.float32, device=device).repeat_interleave(per_step)
            positions = torch.cat([t[:, None], spatial.repeat(steps, 1)], dim=-1)
            head_dim = self.config.predictor_embed_dim // self.config.num_heads
            # V-JEPA 2-AC's tiled tables: the released predictor was trained with them. Built outside inference
            # mode so that a table first made while planning still serves a later training forward.
            with torch.inference_mode(False):
                self._rope_cache[key] = cached = rope_tables(positions.clone(), head_dim, interleaved=False)
        start, stop = first_step * per_step, needed
        return cached[0][start:stop], cached[1][start:stop]

    def _block_causal_mask(self, num_steps: int, device: torch.device) -> Tensor | None:
        """Additive mask [L, L]: 0 where the key's step <= the query's step, -inf elsewhere; built for this length
        only, in the dtype attention runs in (a float mask spares SDPA a bool conversion in every layer)."""
        if num_steps == 1:
            return None
        weight = self.predictor_embed.weight
        dtype = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else weight.dtype
        key = (num_steps, str(device), dtype)
        if key not in self._mask_cache:
            step_of_token = torch.arange(num_steps, device=device).repeat_interleave(self.tokens_per_step)
            visible = step_of_token[:, None] >= step_of_token[None, :]
            if len(self._mask_cache) >= _MASK_CACHE_SIZE:
                self._mask_cache.pop(next(iter(self._mask_cache)))
            with torch.inference_mode(False):  # cached across planning and training calls, see `_rope`
                mask = torch.zeros(visible.shape, dtype=dtype, device=device).masked_fill_(~visible, float("-inf"))
            self._mask_cache[key] = mask
        return self._mask_cache[key]

    # ------------------------------------------------------------------ input checks
    def _check_inputs(
        self, x: Tensor, actions: Tensor, states: Tensor, extrinsics: Tensor | None, num_steps: int,
        batch: int | None = None,
    ) -> None:
        """`batch` defaults to x's (a shared batch-1 x is checked against the conditions' batch)."""
        c = self.config
        batch = x.shape[0] if batch is None else batch
        for name, value, width in (("actions", actions, c.action_embed_dim), ("states", states, c.action_embed_dim)):
            if value.shape != (batch, num_steps, width):
                raise ValueError(f"{name} must be [B={batch}, T={num_steps}, {width}], got {tuple(value.shape)}")
            if not torch.isfinite(value).all():
                raise ValueError(f"{name} contain NaN or infinite values")
        if c.use_extrinsics:
            if extrinsics is None:
                raise ValueError("this predictor was built with use_extrinsics=True; pass extrinsics [B, T, 6]")
            if extrinsics.shape != (batch, num_steps, c.action_embed_dim - 1):
                raise ValueError(
                    f"extrinsics must be [B={batch}, T={num_steps}, {c.action_embed_dim - 1}], "
                    f"got {tuple(extrinsics.shape)}"
                )
            if not torch.isfinite(extrinsics).all():
                raise ValueError("extrinsics contain NaN or infinite values")
        # One reduction instead of an elementwise test: NaN/inf anywhere makes the sum non-finite.
        if not torch.isfinite(x.sum()):
            raise ValueError("frame features contain NaN or infinite values")

    def _embed_steps(
        self, x: Tensor, actions: Tensor, states: Tensor, extrinsics: Tensor | None, *, embedded: bool = False
    ) -> Tensor:
        """[B, T, N, D] features (or [B or 1, T, N, P] tokens from `embed_frames` when `embedded`) + [B, T, 7]
        conditions -> [B, T * tokens_per_step, P] token sequence."""
        parts = [self.action_encoder(actions).unsqueeze(2), self.state_encoder(states).unsqueeze(2)]
        if self.config.use_extrinsics:
            parts.append(self.extrinsics_encoder(extrinsics).unsqueeze(2))
        frames = x if embedded else self.predictor_embed(x)
        parts.append(frames.expand(actions.shape[0], *frames.shape[1:]))
        return torch.cat(parts, dim=2).flatten(1, 2)

    def embed_frames(self, x: Tensor) -> Tensor:
        """Frame features [..., N, D] -> the predictor's patch tokens [..., N, P]. A frame shared by many samples
        (the current observation in planning) is embedded once and passed to `step` with `embedded=True`."""
        return self.predictor_embed(x)

    def _readout(self, tokens: Tensor, num_steps: int) -> Tensor:
        """Drop the conditioning tokens, then final norm and projection back to the encoder width."""
        tokens = tokens.unflatten(1, (num_steps, self.tokens_per_step))[:, :, self.config.cond_tokens:]
        return self.predictor_proj(self.predictor_norm(tokens.flatten(1, 2)))

    # ------------------------------------------------------------------ public API
    def forward(self, x: Tensor, actions: Tensor, states: Tensor, extrinsics: Tensor | None = None) -> Tensor:
        """x [B, T * N, D] frame features (already `normalize_reps`-ed), actions/states [B, T, 7], extrinsics
        [B, T, 6] (only with `use_extrinsics`; ignored otherwise, as in the reference).

        Returns raw predictions [B, T * N, D]; the block of step t predicts frame t + 1.
        """
        c = self.config
        if x.ndim != 3 or x.shape[-1] != c.embed_dim:
            raise ValueError(f"x must be [B, T*{self.tokens_per_frame}, {c.embed_dim}], got {tuple(x.shape)}")
        if x.shape[1] == 0 or x.shape[1] % self.tokens_per_frame:
            raise ValueError(
                f"x has {x.shape[1]} tokens, not a positive multiple of {self.tokens_per_frame} tokens per frame "
                f"({c.img_size[0]}x{c.img_size[1]} px, patch {c.patch_size})"
            )
        num_steps = x.shape[1] // self.tokens_per_frame
        self._check_inputs(x, actions, states, extrinsics, num_steps)
        frames = x.unflatten(1, (num_steps, self.tokens_per_frame))
        tokens = self._embed_steps(frames, actions, states, extrinsics)
        rope = self._rope(0, num_steps, x.device)
        mask = self._block_causal_mask(num_steps, x.device)
        for block in self.predictor_blocks:
            if c.use_activation_checkpointing and self.training and torch.is_grad_enabled():
                tokens = checkpoint(block, tokens, rope, attn_mask=mask, use_reentrant=False)[0]
            else:
                tokens = block(tokens, rope, attn_mask=mask)[0]
        return self._readout(tokens, num_steps)

    def step(
        self,
        x_t: Tensor,
        action_t: Tensor,
        state_t: Tensor,
        cache: PredictorCache | RolloutBuffer | None = None,
        extrinsics_t: Tensor | None = None,
        *,
        embedded: bool = False,
    ) -> tuple[Tensor, PredictorCache | RolloutBuffer]:
        """Append one step: x_t [B, N, D], action_t / state_t [B, 7] -> (prediction of the next frame [B, N, D],
        the cache extended by this step). Equal to the last block of `forward` on the whole history.

        A `PredictorCache` is not modified, so one context cache can seed many rollouts (see
        `PredictorCache.expand`); a `RolloutBuffer` is filled in place and returned. With `embedded`, x_t holds patch
        tokens [B or 1, N, P] from `embed_frames` (batch 1 is shared by all samples).
        """
        c = self.config
        width = c.predictor_embed_dim if embedded else c.embed_dim
        if x_t.ndim != 3 or x_t.shape[1:] != (self.tokens_per_frame, width):
            raise ValueError(f"x_t must be [B, {self.tokens_per_frame}, {width}], got {tuple(x_t.shape)}")
        batch = action_t.shape[0] if embedded else x_t.shape[0]
        if x_t.shape[0] not in (1, batch):
            raise ValueError(f"x_t has batch {x_t.shape[0]} but the actions have {batch}")
        if cache is not None and cache.batch_size != batch:
            raise ValueError(
                f"cache holds batch {cache.batch_size} but x_t has batch {batch}; use cache.expand({batch}) "
                "to share a batch-1 context"
            )
        if cache is not None and len(cache.keys) != c.depth:
            raise ValueError(f"cache has {len(cache.keys)} layers, this predictor has {c.depth}")
        if isinstance(cache, RolloutBuffer) and cache.num_steps >= cache.capacity:
            raise ValueError(f"the rollout buffer is full ({cache.capacity} steps)")
        actions, states = action_t.unsqueeze(1), state_t.unsqueeze(1)
        extrinsics = extrinsics_t.unsqueeze(1) if extrinsics_t is not None else None
        self._check_inputs(x_t, actions, states, extrinsics, 1, batch)
        past_steps = cache.num_steps if cache is not None else 0
        tokens = self._embed_steps(x_t.unsqueeze(1), actions, states, extrinsics, embedded=embedded)
        rope = self._rope(past_steps, 1, x_t.device)
        if isinstance(cache, RolloutBuffer):
            filled = past_steps * self.tokens_per_step
            for layer, block in enumerate(self.predictor_blocks):
                tokens = block(tokens, rope, buffer=(cache.keys[layer], cache.values[layer], filled))[0]
            cache.num_steps += 1
            return self._readout(tokens, 1), cache
        new_keys, new_values = [], []
        for layer, block in enumerate(self.predictor_blocks):
            past = (cache.keys[layer], cache.values[layer]) if cache is not None else None
            tokens, k, v = block(tokens, rope, past=past)
            new_keys.append(k)
            new_values.append(v)
        next_cache = PredictorCache(tuple(new_keys), tuple(new_values), past_steps + 1)
        return self._readout(tokens, 1), next_cache


def build_predictor(config: str | PredictorConfig = "vit_ac_giant", **overrides) -> ACPredictor:
    """A randomly initialised predictor from a config or preset name (see `PREDICTOR_PRESETS`), with overrides."""
    return ACPredictor(predictor_config(config, **overrides))
