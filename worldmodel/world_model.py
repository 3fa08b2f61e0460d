"""The encoder + AC predictor pair the planner uses, loaded from one action-conditioned checkpoint."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vjepa_ac.worldmodel.checkpoints import (
    CheckpointError,
    encoder_from_checkpoint,
    freeze,
    predictor_from_checkpoint,
    read_checkpoint,
)
from vjepa_ac.worldmodel.encoder import VisionTransformer
from vjepa_ac.worldmodel.frames import Crop, encode_frames
from vjepa_ac.worldmodel.predictor import ACPredictor


@dataclass
class WorldModel:
    """A frozen encoder and its AC predictor, with what callers need to feed them consistently."""

    encoder: VisionTransformer
    predictor: ACPredictor
    crop: Crop = "droid"
    """Crop applied before resizing frames (Meta trained on the DROID crop; their planning notebook used square)."""

    @property
    def img_size(self) -> tuple[int, int]:
        return self.encoder.config.img_size

    @property
    def tokens_per_frame(self) -> int:
        return self.predictor.tokens_per_frame

    @property
    def views(self) -> int:
        """Camera views per frame: 1, or k when the predictor reads k panels' token grids side by side
        (a "left+wrist" model; `data.conventions.camera_views`)."""
        return view_count(self.encoder, self.predictor)

    @property
    def embed_dim(self) -> int:
        """Width of the features the predictor reads and predicts."""
        return self.predictor.config.embed_dim

    @property
    def num_levels(self) -> int:
        """1, or 4 when the predictor works on V-JEPA 2.1's concatenated hierarchical features."""
        return self.embed_dim // self.encoder.embed_dim

    @property
    def device(self) -> torch.device:
        return next(self.predictor.parameters()).device

    def with_encoder(self, encoder: VisionTransformer) -> WorldModel:
        """The same predictor and crop with another frozen encoder, e.g. a freshly pretrained one whose goal energy is
        to be scored before a predictor is trained on its features (CheckpointError when the predictor's token grid
        or width does not fit it). Planning with the result is meaningless unless the predictor was trained on this
        encoder."""
        check_pair(encoder, self.predictor)
        return replace(self, encoder=encoder)

    def encode(self, frames: np.ndarray | Tensor, *, chunk_size: int = 16, progress: bool = False) -> Tensor:
        """Frames [B, T, H, W, 3] uint8 -> normalised features [B, T, tokens_per_frame, embed_dim]."""
        return encode_frames(
            self.encoder, frames, crop=self.crop, chunk_size=chunk_size, hierarchical=self.num_levels > 1,
            progress=progress, views=self.views,
        )


def view_count(encoder: VisionTransformer, predictor: ACPredictor) -> int:
    """How many of the encoder's token grids, side by side, make one frame of the predictor (CheckpointError when the
    predictor's grid is not a whole number of the encoder's, one high)."""
    rows, cols = (size // encoder.config.patch_size for size in encoder.config.img_size)
    pred_rows, pred_cols = predictor.config.grid
    if pred_rows != rows or pred_cols % cols:
        raise CheckpointError(
            f"predictor expects {predictor.tokens_per_frame} tokens per frame but the encoder gives {rows * cols} "
            f"({pred_rows}x{pred_cols} against {rows}x{cols} at {encoder.config.img_size}); pass matching img_size "
            "(a multi-view predictor's grid is the encoder's, repeated side by side)"
        )
    return pred_cols // cols


def check_pair(encoder: VisionTransformer, predictor: ACPredictor) -> None:
    """Raise if the predictor cannot read this encoder's features (width or tokens per frame differ)."""
    widths = {encoder.embed_dim, encoder.embed_dim * encoder.config.num_levels}
    if predictor.config.embed_dim not in widths:
        raise CheckpointError(
            f"predictor reads {predictor.config.embed_dim}-d features but the encoder gives "
            f"{' or '.join(map(str, sorted(widths)))}"
        )
    view_count(encoder, predictor)


def load_world_model(
    path: str | os.PathLike,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    encoder_arch: Mapping[str, Any] | None = None,
    predictor_arch: Mapping[str, Any] | None = None,
    crop: Crop = "droid",
) -> WorldModel:
    """Encoder + predictor from one AC checkpoint (Meta's `vjepa2-ac-vitg.pt` or ours), frozen, in eval mode.

    `encoder_arch` / `predictor_arch` override config fields by Meta's names where a file carries no stored config
    (e.g. `{"img_size": 64}` for small test models). The predictor's resolution defaults to the encoder's.
    """
    data = read_checkpoint(path)
    encoder, _ = encoder_from_checkpoint(data, source=str(path), **dict(encoder_arch or {}))
    predictor, _ = predictor_from_checkpoint(
        data, source=str(path), img_size_hint=encoder.config.img_size, **dict(predictor_arch or {})
    )
    check_pair(encoder, predictor)
    freeze(encoder, device, dtype)
    freeze(predictor, device, dtype)
    return WorldModel(encoder=encoder, predictor=predictor, crop=crop)
