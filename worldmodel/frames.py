"""Frame preprocessing and per-frame encoding for the action-conditioned model.

Pipeline per frame, as in Meta's DROID training: float pixels 0-255 -> crop -> bilinear resize (align_corners=False)
to the encoder resolution -> ImageNet normalisation on the 0-255 scale -> encoder (V-JEPA 2: the frame duplicated to
fill one tubelet; 2.1: the image tokenizer) -> non-affine layer norm (`normalize_reps`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from vjepa_ac.worldmodel.precision import autocast

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DROID_ASPECT_RANGE = (0.75, 1.35)
"""Aspect ratios (w/h) the DROID training crop keeps; wider frames are centre-cropped to 1.35 at full height."""
REPS_LAYER_NORM_EPS = 1e-5

Crop = Literal["droid", "square"] | None


def normalize_reps(z: Tensor, num_levels: int = 1) -> Tensor:
    """Non-affine layer norm over channels (eps 1e-5), applied to encoder and predictor outputs before losses,
    energies and feeding predictions back. With `num_levels` > 1 (V-JEPA 2.1 hierarchical features) each level's
    channel chunk is normalised on its own."""
    if num_levels == 1:
        return F.layer_norm(z, (z.shape[-1],), eps=REPS_LAYER_NORM_EPS)
    chunks = z.unflatten(-1, (num_levels, -1))
    return F.layer_norm(chunks, (chunks.shape[-1],), eps=REPS_LAYER_NORM_EPS).flatten(-2)


def crop_box(height: int, width: int, crop: Crop) -> tuple[int, int, int, int]:
    """(top, left, crop_height, crop_width) of the crop applied before resizing."""
    if crop is None:
        return 0, 0, height, width
    if crop == "square":
        side = min(height, width)
        return (height - side) // 2, (width - side) // 2, side, side
    if crop == "droid":
        low, high = DROID_ASPECT_RANGE
        crop_h, crop_w = height, width
        if width / height > high:
            crop_w = round(height * high)
        elif width / height < low:
            crop_h = round(width / low)
        return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w
    raise ValueError(f"crop must be 'droid', 'square' or None, got {crop!r}")


def check_frames(frames: np.ndarray | Tensor) -> Tensor:
    """Validate video frames [B, T, H, W, 3] (uint8, or float on the 0-255 scale) and return them as a tensor."""
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(frames)
    if not isinstance(frames, Tensor):
        raise TypeError(f"frames must be a numpy array or torch tensor, got {type(frames).__name__}")
    if frames.ndim != 5 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [B, T, H, W, 3] RGB, got shape {tuple(frames.shape)}")
    if frames.dtype != torch.uint8 and not frames.is_floating_point():
        raise TypeError(f"frames must be uint8 or float (0-255), got {frames.dtype}")
    if frames.is_floating_point():
        if not torch.isfinite(frames).all():
            raise ValueError("frames contain NaN or infinite pixel values")
        low, high = frames.min().item(), frames.max().item()
        if low < 0.0 or high > 255.0 + 1e-3:
            raise ValueError(f"float frames must be on the 0-255 scale, found values in [{low:.3g}, {high:.3g}]")
    return frames


def preprocess_frames(frames: Tensor, img_size: tuple[int, int], crop: Crop = "droid") -> Tensor:
    """uint8/float frames [K, H, W, 3] -> normalised float32 [K, 3, h, w] at the encoder resolution."""
    top, left, crop_h, crop_w = crop_box(frames.shape[1], frames.shape[2], crop)
    x = frames[:, top : top + crop_h, left : left + crop_w].permute(0, 3, 1, 2).float()
    if (crop_h, crop_w) != tuple(img_size):
        x = F.interpolate(x, size=tuple(img_size), mode="bilinear", align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1) * 255.0
    return (x - mean) / std


def encode_frames(
    encoder: nn.Module,
    frames: np.ndarray | Tensor,
    *,
    crop: Crop = "droid",
    chunk_size: int = 16,
    hierarchical: bool = False,
    progress: bool = False,
    views: int = 1,
) -> Tensor:
    """Encode every frame of `frames` [B, T, H, W, 3] on its own -> normalised features [B, T, N, D] (float32).

    Frames are preprocessed and encoded `chunk_size` at a time, so memory stays bounded for long videos.
    `hierarchical` returns V-JEPA 2.1's four levels concatenated ([..., 4 D], each level normalised on its own).
    With `views` > 1 each frame is that many equal panels side by side (a multi-view camera, `data.conventions`):
    every panel is cropped, resized and encoded on its own, and the token grids are laid side by side in the same
    order, so N = views x the encoder's tokens per frame, row-major over a grid `views` times as wide.
    """
    frames = check_frames(frames)
    if views != 1:
        return _encode_views(encoder, frames, views, crop=crop, chunk_size=chunk_size, hierarchical=hierarchical,
                             progress=progress)
    config = encoder.config
    param = next(encoder.parameters())
    device = param.device
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    batch, steps = frames.shape[:2]
    flat = frames.reshape(batch * steps, *frames.shape[2:])
    use_image_tokenizer = config.img_temporal_dim_size == 1
    num_levels = config.num_levels if hierarchical else 1
    outputs = []
    starts = range(0, flat.shape[0], chunk_size)
    with torch.no_grad(), autocast(device):
        for start in tqdm(starts, desc="encoding frames", unit="chunk", disable=not progress):
            pixels = preprocess_frames(flat[start : start + chunk_size].to(device), config.img_size, crop)
            if use_image_tokenizer:
                clip = pixels.unsqueeze(2)
            else:
                clip = pixels.unsqueeze(2).expand(-1, -1, config.tubelet_size, -1, -1)
            clip = clip.to(param.dtype)
            features = encoder(clip, return_hierarchical=hierarchical)
            outputs.append(normalize_reps(features.float(), num_levels))
    features = torch.cat(outputs)
    return features.reshape(batch, steps, *features.shape[1:])


def _encode_views(encoder: nn.Module, frames: Tensor, views: int, **options) -> Tensor:
    if views < 1 or frames.shape[3] % views:
        raise ValueError(f"a {views}-view frame must be {views} equal panels side by side; width {frames.shape[3]} "
                         f"does not split into {views}")
    rows, cols = (size // encoder.config.patch_size for size in encoder.config.img_size)
    panels = frames.chunk(views, dim=3)
    grids = [encode_frames(encoder, panel, **options).unflatten(2, (rows, cols)) for panel in panels]
    return torch.cat(grids, dim=3).flatten(2, 3)
