"""The frozen V-JEPA 2 / V-JEPA 2.1 video encoder (a ViT with 3D RoPE), checkpoint-compatible with Meta's releases.

One class covers both generations; the 2.1 additions are switched on by `EncoderConfig` fields:
an image tokenizer with tubelet 1 (`img_temporal_dim_size`), learned modality embeddings, true-pairwise RoPE with
position interpolation, and per-level output norms (`norms_block`) instead of a single final `norm`.
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

# Output levels of V-JEPA 2.1's deep self-supervision, by encoder depth (Meta's table; note 48 is not evenly spaced).
_HIERARCHICAL_LAYERS_BY_DEPTH: dict[int, tuple[int, ...]] = {
    12: (2, 5, 8, 11),
    24: (5, 11, 17, 23),
    40: (9, 19, 29, 39),
    48: (11, 23, 37, 47),
}
_ROPE_TABLE_CACHE_SIZE = 8


def default_hierarchical_layers(depth: int) -> tuple[int, ...]:
    """The four block indices whose outputs V-JEPA 2.1 exposes; Meta's table, else evenly spaced ending at the top."""
    if depth in _HIERARCHICAL_LAYERS_BY_DEPTH:
        return _HIERARCHICAL_LAYERS_BY_DEPTH[depth]
    if depth < 4:
        raise ValueError(f"a hierarchical (V-JEPA 2.1) encoder needs depth >= 4, got {depth}")
    return tuple((i + 1) * depth // 4 - 1 for i in range(4))


@dataclass
class EncoderConfig:
    """Architecture of a V-JEPA encoder. Field names follow Meta's `VisionTransformer` constructor."""

    embed_dim: int = 1408
    depth: int = 40
    num_heads: int = 22
    mlp_ratio: float = 48 / 11
    patch_size: int = 16
    tubelet_size: int = 2
    img_size: tuple[int, int] = (256, 256)
    """Resolution frames are resized to by `encode_frames`; RoPE itself handles any grid."""
    in_chans: int = 3
    qkv_bias: bool = True
    use_activation_checkpointing: bool = False
    # --- V-JEPA 2.1 (all off for V-JEPA 2) ---
    rope_interleaved: bool = False
    """True pairwise RoPE (2.1). False reproduces V-JEPA 2's tiled tables, which its released weights need."""
    img_temporal_dim_size: int | None = None
    """Inputs with this many frames go through a separate tubelet-1 image tokenizer `patch_embed_img` (2.1: 1)."""
    modality_embedding: bool = False
    """Learned `img_mod_embed` / `video_mod_embed` added to every token (2.1)."""
    interpolate_rope: bool = False
    """Rescale row/column positions to span the pretraining grid (2.1 at 384 px)."""
    rope_pretrained_grid: int = 16
    hierarchical_layers: tuple[int, ...] | None = None
    """Blocks with their own output norm `norms_block.{i}` (2.1); None = one final `norm` (V-JEPA 2)."""

    def __post_init__(self) -> None:
        self.img_size = as_size_pair(self.img_size)
        if self.hierarchical_layers is not None:
            self.hierarchical_layers = tuple(int(i) for i in self.hierarchical_layers)
            if any(not 0 <= i < self.depth for i in self.hierarchical_layers):
                raise ValueError(f"hierarchical_layers {self.hierarchical_layers} outside depth {self.depth}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")

    @property
    def is_v2_1(self) -> bool:
        return self.hierarchical_layers is not None

    @property
    def num_levels(self) -> int:
        """Feature levels returned with `return_hierarchical=True` (1 for V-JEPA 2)."""
        return len(self.hierarchical_layers) if self.hierarchical_layers else 1

    @property
    def tokens_per_frame(self) -> int:
        return (self.img_size[0] // self.patch_size) * (self.img_size[1] // self.patch_size)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _v2(embed_dim: int, depth: int, num_heads: int, mlp_ratio: float, img: int) -> EncoderConfig:
    return EncoderConfig(embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio, img_size=(img, img))


def _v2_1(embed_dim: int, depth: int, num_heads: int, mlp_ratio: float, img: int) -> EncoderConfig:
    return EncoderConfig(
        embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio, img_size=(img, img),
        rope_interleaved=True, img_temporal_dim_size=1, modality_embedding=True, interpolate_rope=True,
        hierarchical_layers=default_hierarchical_layers(depth),
    )


# Released models (Meta's hub names) plus tiny CPU test sizes. ViT-g is Meta's `vit_giant_xformers` (22 heads).
ENCODER_PRESETS: dict[str, EncoderConfig] = {
    "vit_large": _v2(1024, 24, 16, 4.0, 256),
    "vit_huge": _v2(1280, 32, 16, 4.0, 256),
    "vit_giant": _v2(1408, 40, 22, 48 / 11, 256),
    "vit_giant_384": _v2(1408, 40, 22, 48 / 11, 384),
    "vit_tiny": _v2(64, 2, 4, 4.0, 64),
    "vjepa2_1_vit_base_384": _v2_1(768, 12, 12, 4.0, 384),
    "vjepa2_1_vit_large_384": _v2_1(1024, 24, 16, 4.0, 384),
    "vjepa2_1_vit_giant_384": _v2_1(1408, 40, 22, 48 / 11, 384),
    "vjepa2_1_vit_gigantic_384": _v2_1(1664, 48, 26, 64 / 13, 384),
    "vjepa2_1_vit_tiny": _v2_1(64, 4, 4, 4.0, 64),
}


def encoder_config(preset_or_config: str | EncoderConfig, **overrides) -> EncoderConfig:
    """A fresh config from a preset name or an existing config, with Meta-named fields overridden (Meta's other
    constructor arguments, such as num_frames or use_rope=True, are accepted when they match what we implement)."""
    return resolve_config(preset_or_config, ENCODER_PRESETS, EncoderConfig, "encoder", overrides)


class PatchEmbed3D(nn.Module):
    """Non-overlapping (tubelet, patch, patch) Conv3d; tokens come out t-major, then row, then column."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int, tubelet_size: int) -> None:
        super().__init__()
        kernel = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=kernel, stride=kernel)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """V-JEPA 2 / 2.1 encoder: video [B, C, T, H, W] (normalised pixels) -> tokens [B, T' * H' * W', D]."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.embed_dim = c.embed_dim
        self.patch_embed = PatchEmbed3D(c.in_chans, c.embed_dim, c.patch_size, c.tubelet_size)
        self.patch_embed_img = (
            PatchEmbed3D(c.in_chans, c.embed_dim, c.patch_size, 1) if c.img_temporal_dim_size is not None else None
        )
        if c.modality_embedding:
            self.img_mod_embed = nn.Parameter(torch.zeros(1, 1, c.embed_dim))
            self.video_mod_embed = nn.Parameter(torch.zeros(1, 1, c.embed_dim))
        self.blocks = nn.ModuleList(
            [Block(c.embed_dim, c.num_heads, c.mlp_ratio, qkv_bias=c.qkv_bias) for _ in range(c.depth)]
        )
        if c.hierarchical_layers is not None:
            self.norms_block = nn.ModuleList(
                [nn.LayerNorm(c.embed_dim, eps=LAYER_NORM_EPS) for _ in c.hierarchical_layers]
            )
        else:
            self.norm = nn.LayerNorm(c.embed_dim, eps=LAYER_NORM_EPS)
        self._rope_cache: dict[tuple, tuple[Tensor, Tensor]] = {}
        init_transformer_weights(self, self.blocks)
        if c.modality_embedding:
            nn.init.normal_(self.img_mod_embed, std=1e-6)
            nn.init.normal_(self.video_mod_embed, std=1e-6)

    @property
    def head_dim(self) -> int:
        return self.config.embed_dim // self.config.num_heads

    def _rope(self, frames: int, rows: int, cols: int, device: torch.device) -> tuple[Tensor, Tensor]:
        key = (frames, rows, cols, str(device))
        if key not in self._rope_cache:
            scale = (1.0, 1.0)
            if self.config.interpolate_rope:
                span = self.config.rope_pretrained_grid - 1
                scale = (span / (rows - 1) if rows > 1 else 1.0, span / (cols - 1) if cols > 1 else 1.0)
            positions = grid_positions(frames, rows, cols, spatial_scale=scale, device=device)
            if len(self._rope_cache) >= _ROPE_TABLE_CACHE_SIZE:
                self._rope_cache.pop(next(iter(self._rope_cache)))
            # Outside inference mode: a table cached during inference must also serve later autograd passes.
            with torch.inference_mode(False):
                self._rope_cache[key] = rope_tables(
                    positions.clone(), self.head_dim, interleaved=self.config.rope_interleaved
                )
        return self._rope_cache[key]

    def output_dim(self, hierarchical: bool = False) -> int:
        """Channel width of `forward`'s output."""
        return self.embed_dim * (self.config.num_levels if hierarchical else 1)

    def forward(self, x: Tensor, *, masks: Tensor | None = None, return_hierarchical: bool = False) -> Tensor:
        """Encode normalised pixels [B, C, T, H, W].

        V-JEPA 2.1 inputs with `img_temporal_dim_size` frames use the image tokenizer. With `return_hierarchical`
        a 2.1 encoder returns its four normed levels concatenated along channels, [B, N, 4 D].
        `masks` (self-supervised pretraining) is a LongTensor [B, K] of token indices to keep, as Meta's
        `apply_masks`: only those tokens, at their true RoPE positions, go through the blocks -> [B, K, D].
        """
        c = self.config
        if x.ndim != 5 or x.shape[1] != c.in_chans:
            raise ValueError(f"encoder input must be [B, {c.in_chans}, T, H, W], got {tuple(x.shape)}")
        _, _, frames, height, width = x.shape
        if height % c.patch_size or width % c.patch_size:
            raise ValueError(f"frame size {height}x{width} is not a multiple of the patch size {c.patch_size}")
        if return_hierarchical and c.hierarchical_layers is None:
            raise ValueError("return_hierarchical needs a V-JEPA 2.1 encoder (this one has a single output norm)")
        is_image = c.img_temporal_dim_size is not None and frames == c.img_temporal_dim_size
        if is_image:
            tokens = self.patch_embed_img(x)
            token_frames = frames
        else:
            if frames % c.tubelet_size:
                raise ValueError(f"{frames} frames is not a multiple of the tubelet size {c.tubelet_size}")
            tokens = self.patch_embed(x)
            token_frames = frames // c.tubelet_size
        if c.modality_embedding:
            tokens = tokens + (self.img_mod_embed if is_image else self.video_mod_embed)
        rope = self._rope(token_frames, height // c.patch_size, width // c.patch_size, x.device)
        if masks is not None:
            tokens, rope = _keep_tokens(tokens, rope, masks)

        levels: list[Tensor] = []
        for index, block in enumerate(self.blocks):
            if c.use_activation_checkpointing and self.training and torch.is_grad_enabled():
                tokens = checkpoint(block, tokens, rope, use_reentrant=False)[0]
            else:
                tokens = block(tokens, rope)[0]
            if return_hierarchical and index in c.hierarchical_layers:
                levels.append(self.norms_block[c.hierarchical_layers.index(index)](tokens))
        if c.hierarchical_layers is None:
            return self.norm(tokens)
        if return_hierarchical:
            return torch.cat(levels, dim=-1)
        return self.norms_block[-1](tokens)


def _keep_tokens(tokens: Tensor, rope: tuple[Tensor, Tensor], keep: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """Tokens [B, N, D] and rope tables [N, R] restricted to the per-sample indices `keep` [B, K]; the tables become
    [B, 1, K, R], which broadcast over heads in `apply_rope`."""
    batch, count, dim = tokens.shape
    if keep.ndim != 2 or keep.shape[0] != batch or keep.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"masks must be an integer tensor [B={batch}, K] of token indices, got "
                         f"{keep.dtype} {tuple(keep.shape)}")
    if keep.numel() and (int(keep.min()) < 0 or int(keep.max()) >= count):
        raise ValueError(f"mask indices must lie in [0, {count}), got [{int(keep.min())}, {int(keep.max())}]")
    keep = keep.to(device=tokens.device, dtype=torch.int64)
    kept = torch.gather(tokens, 1, keep.unsqueeze(-1).expand(-1, -1, dim))
    cos, sin = rope
    return kept, (cos[keep].unsqueeze(1), sin[keep].unsqueeze(1))


def build_encoder(preset_or_config: str | EncoderConfig = "vit_giant", **overrides) -> VisionTransformer:
    """A randomly initialised encoder from a preset name (see `ENCODER_PRESETS`) or config, with overrides."""
    return VisionTransformer(encoder_config(preset_or_config, **overrides))
