"""Load and save V-JEPA 2 / 2.1 / 2-AC checkpoints: Meta's `.pt` layouts, Hugging Face snapshots and our own files.

Meta's files are dicts with state dicts under `encoder` / `target_encoder` / `ema_encoder` / `predictor`, their keys
prefixed with `module.` and/or `backbone.` (DDP and multi-sequence wrappers). We strip those prefixes, infer the
architecture from tensor shapes (filling what shapes cannot tell, such as head counts, from the matching preset), and
load strictly: any missing, unexpected or mis-shaped key is an error that names it, never a silent partial load.
Our own checkpoints keep Meta's layout and add the architecture under `CONFIG_KEY`, so they load without arguments.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vjepa_ac.worldmodel.encoder import (
    ENCODER_PRESETS,
    EncoderConfig,
    VisionTransformer,
    default_hierarchical_layers,
    encoder_config,
)
from vjepa_ac.worldmodel.predictor import PREDICTOR_PRESETS, ACPredictor, PredictorConfig, predictor_config

log = logging.getLogger(__name__)

CONFIG_KEY = "vjepa_ac_config"
"""Top-level key of our checkpoints holding {"encoder": EncoderConfig dict, "predictor": PredictorConfig dict}."""
ENCODER_KEYS = ("target_encoder", "ema_encoder", "encoder")
"""Where encoders live in Meta's files, in the order we look (EMA/target weights are the ones used downstream)."""
_WRAPPER_PREFIXES = ("module.", "backbone.")
# Keys that Meta's own loaders skip on purpose: V-JEPA 2 files may still carry an additive `pos_embed` the RoPE
# model does not use.
_IGNORED_ENCODER_KEYS = ("pos_embed",)
# Head counts for widths of released models, used when a checkpoint does not match a preset exactly.
_ENCODER_HEADS_BY_WIDTH = {768: 12, 1024: 16, 1280: 16, 1408: 22, 1664: 26}
_PREDICTOR_HEADS_BY_WIDTH = {1024: 16}
_MAX_NAMES_IN_ERROR = 8


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, of another model, or does not fit the requested architecture."""


@dataclass
class LoadReport:
    """What a load found: which entry, which prefix was stripped, what was deliberately skipped."""

    source: str
    entry: str | None
    prefix: str
    config: EncoderConfig | PredictorConfig
    ignored_keys: list[str] = field(default_factory=list)
    num_params: int = 0


# ---------------------------------------------------------------------------------------------------- reading
def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The raw top-level dict of a checkpoint file, a `.safetensors` file, or a Hugging Face snapshot folder.

    A snapshot folder is translated to Meta's layout: {"encoder": state dict, CONFIG_KEY: {"encoder": ...}}.
    """
    path = Path(path)
    if path.is_dir():
        return _read_hf_snapshot(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path)))
        except Exception as exc:  # safetensors raises its own error types for truncated headers/data
            raise CheckpointError(f"{path}: unreadable safetensors file ({exc})") from exc
    try:
        data = _torch_load(path)
    except Exception as exc:  # noqa: BLE001 - unpickling a foreign file can fail with any error type (KeyError, ...)
        text = str(exc).strip()
        first_line = f"{type(exc).__name__}: {text.splitlines()[0].split('. ')[0]}" if text else type(exc).__name__
        if "weights only load failed" in str(exc).lower():
            # Never retried with weights_only=False: unpickling arbitrary objects can run code.
            raise CheckpointError(
                f"{path}: holds Python objects other than tensors and plain containers, which are not loaded for "
                f"safety ({first_line})"
            ) from exc
        raise CheckpointError(
            f"{path}: cannot read checkpoint ({first_line}); the file is truncated, corrupt, or not a torch checkpoint"
        ) from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, found {type(data).__name__}")
    return data


def _torch_load(path: Path) -> Any:
    """`torch.load(weights_only=True)`, memory-mapped when the file format allows: only the entries actually used
    (e.g. the encoder of a file that also holds `target_encoder` and optimizer state) are ever read into RAM."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as exc:
        if "mmap" not in str(exc):
            raise
        return torch.load(path, map_location="cpu", weights_only=True)  # legacy (pre-zip) serialization


def _strip_prefixes(state: Mapping[str, Any]) -> tuple[dict[str, Tensor], str]:
    """Remove DDP/wrapper prefixes; returns the cleaned dict and the prefix found on the first key."""
    cleaned: dict[str, Tensor] = {}
    prefix = ""
    for index, (key, value) in enumerate(state.items()):
        if not isinstance(value, Tensor):
            continue
        name = key
        while name.startswith(_WRAPPER_PREFIXES):
            name = name.split(".", 1)[1]
        if index == 0:
            prefix = key[: len(key) - len(name)]
        cleaned[name] = value
    return cleaned, prefix


def _is_state_dict(data: Mapping[str, Any]) -> bool:
    return bool(data) and all(isinstance(v, Tensor) for v in data.values())


def _describe_keys(data: Mapping[str, Any]) -> str:
    names = list(data)
    shown = ", ".join(names[:_MAX_NAMES_IN_ERROR])
    return shown + (f", ... ({len(names)} in total)" if len(names) > _MAX_NAMES_IN_ERROR else "")


def _select_state(
    data: Mapping[str, Any], candidates: tuple[str, ...], marker: str, what: str, source: str
) -> tuple[str | None, dict[str, Tensor], str]:
    """Find the first entry among `candidates` (or the top level) whose stripped keys contain `marker`."""
    for entry in candidates:
        value = data.get(entry)
        if isinstance(value, Mapping):
            state, prefix = _strip_prefixes(value)
            if marker in state:
                return entry, state, prefix
    if _is_state_dict(data):
        state, prefix = _strip_prefixes(data)
        if marker in state:
            return None, state, prefix
    raise CheckpointError(
        f"{source}: no {what} found (looked for a state dict with '{marker}' under "
        f"{', '.join(repr(c) for c in candidates)} or at the top level); top-level keys: {_describe_keys(data)}"
    )


# ---------------------------------------------------------------------------------------------------- inference
def _block_count(state: Mapping[str, Tensor], prefix: str) -> int:
    indices = {int(m.group(1)) for k in state if (m := re.match(rf"{re.escape(prefix)}\.(\d+)\.", k))}
    return max(indices) + 1 if indices else 0


def _mlp_ratio(hidden: int, width: int) -> float:
    """A ratio r with int(width * r) == hidden (Meta sizes the MLP as int(dim * mlp_ratio))."""
    ratio = hidden / width
    return ratio if int(width * ratio) == hidden else (hidden + 0.5) / width


def infer_encoder_config(
    state: Mapping[str, Tensor], *, preset: str | None = None, stored: Mapping | None = None, **arch
) -> EncoderConfig:
    """Architecture of an encoder state dict (prefixes stripped): stored config, else preset, else tensor shapes."""
    if stored is not None:
        return encoder_config(EncoderConfig(**stored), **arch)
    if preset is not None:
        return encoder_config(preset, **arch)
    width, in_chans, tubelet, patch, _ = state["patch_embed.proj.weight"].shape
    depth = _block_count(state, "blocks")
    if depth == 0:
        raise CheckpointError("encoder state dict has no 'blocks.N.*' keys")
    hidden = state["blocks.0.mlp.fc1.weight"].shape[0]
    is_v2_1 = "norms_block.0.weight" in state
    shape_fields = {
        "embed_dim": width, "depth": depth, "patch_size": patch, "tubelet_size": tubelet, "in_chans": in_chans,
    }
    for config in ENCODER_PRESETS.values():
        if (config.is_v2_1, config.embed_dim, config.depth, int(config.embed_dim * config.mlp_ratio)) == (
            is_v2_1, width, depth, hidden,
        ):
            return encoder_config(config, **{**shape_fields, **arch})
    num_heads = arch.pop("num_heads", None) or _ENCODER_HEADS_BY_WIDTH.get(width)
    if num_heads is None:
        raise CheckpointError(
            f"encoder of width {width} and depth {depth} matches no preset; pass num_heads= (and img_size=)"
        )
    extra: dict[str, Any] = {}
    if is_v2_1:
        levels = _block_count(state, "norms_block")
        extra = {
            "rope_interleaved": True, "interpolate_rope": True, "modality_embedding": "img_mod_embed" in state,
            "img_temporal_dim_size": 1 if "patch_embed_img.proj.weight" in state else None,
            "hierarchical_layers": default_hierarchical_layers(depth) if levels == 4 else None,
        }
        if levels != 4 and "hierarchical_layers" not in arch:
            raise CheckpointError(f"encoder has {levels} output norms; pass hierarchical_layers= ({levels} indices)")
    config = EncoderConfig(
        **shape_fields, num_heads=num_heads, mlp_ratio=_mlp_ratio(hidden, width),
        qkv_bias="blocks.0.attn.qkv.bias" in state, img_size=(384, 384) if is_v2_1 else (256, 256), **extra,
    )
    return encoder_config(config, **arch)


def infer_predictor_config(
    state: Mapping[str, Tensor], *, stored: Mapping | None = None, img_size_hint: Any = None, **arch
) -> PredictorConfig:
    """Architecture of an AC predictor state dict: stored config, else tensor shapes + the matching preset.

    `img_size_hint` (e.g. the paired encoder's resolution) sets tokens per frame when nothing else does.
    """
    if stored is not None:
        return predictor_config(PredictorConfig(**stored), **arch)
    width, embed_dim = state["predictor_embed.weight"].shape
    depth = _block_count(state, "predictor_blocks")
    if depth == 0:
        raise CheckpointError("predictor state dict has no 'predictor_blocks.N.*' keys")
    hidden = state["predictor_blocks.0.mlp.fc1.weight"].shape[0]
    shape_fields = {
        "embed_dim": embed_dim, "predictor_embed_dim": width, "depth": depth, "mlp_ratio": _mlp_ratio(hidden, width),
        "action_embed_dim": state["action_encoder.weight"].shape[1],
        "qkv_bias": "predictor_blocks.0.attn.qkv.bias" in state,
    }
    if img_size_hint is not None:
        shape_fields["img_size"] = img_size_hint
    for config in PREDICTOR_PRESETS.values():
        if (config.predictor_embed_dim, config.depth) == (width, depth):
            return predictor_config(config, **{**shape_fields, **arch})
    num_heads = arch.pop("num_heads", None) or _PREDICTOR_HEADS_BY_WIDTH.get(width)
    if num_heads is None:
        raise CheckpointError(f"predictor of width {width} and depth {depth} matches no preset; pass num_heads=")
    return predictor_config(PredictorConfig(**shape_fields, num_heads=num_heads), **arch)


# ---------------------------------------------------------------------------------------------------- strict load
def state_problems(module: nn.Module, state: Mapping[str, Tensor]) -> list[str]:
    """Missing, unexpected and mis-shaped keys of `state` for `module`, by name (empty if it fits exactly).

    Works on a module built on the meta device, so a checkpoint can be checked without allocating the model.
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} (checkpoint {tuple(state[k].shape)}, model {tuple(expected[k].shape)})"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    problems = []
    for label, names in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
        if names:
            shown = ", ".join(names[:_MAX_NAMES_IN_ERROR])
            more = f", ... ({len(names)} in total)" if len(names) > _MAX_NAMES_IN_ERROR else ""
            problems.append(f"{label}: {shown}{more}")
    return problems


def build_from_state(factory: Callable[[Any], nn.Module], config: Any, state: Mapping[str, Tensor], what: str):
    """`factory(config)` holding exactly the tensors of `state` (float32, CPU), or an error naming every missing,
    unexpected and mis-shaped key. The module is built on the meta device and the checkpoint tensors are assigned,
    so a full-size model is never randomly initialised just to be overwritten."""
    with torch.device("meta"):
        module = factory(config)
    problems = state_problems(module, state)
    if problems:
        raise CheckpointError(f"{what} does not fit the architecture; " + "; ".join(problems))
    module.load_state_dict(state, strict=True, assign=True)
    return module.float()


def freeze(module: nn.Module, device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> None:
    """Move to device/dtype, switch to eval mode and turn off gradients (a frozen inference model)."""
    module.to(device=device, dtype=dtype)
    module.eval()
    module.requires_grad_(False)


def stored_config(data: Mapping[str, Any], part: str) -> Mapping | None:
    """The architecture dict our checkpoints store for `part` ("encoder" / "predictor"), if any."""
    stored = data.get(CONFIG_KEY)
    return stored.get(part) if isinstance(stored, Mapping) else None


def encoder_state(
    data: Mapping[str, Any], *, source: str = "checkpoint", checkpoint_key: str | None = None
) -> tuple[str | None, dict[str, Tensor], str, list[str]]:
    """(entry, prefix-stripped state dict, prefix found, keys skipped on purpose) of the encoder in `data`."""
    candidates = (checkpoint_key,) if checkpoint_key else ENCODER_KEYS
    if checkpoint_key and checkpoint_key not in data:
        raise CheckpointError(f"{source}: no entry {checkpoint_key!r}; top-level keys: {_describe_keys(data)}")
    entry, state, prefix = _select_state(data, candidates, "patch_embed.proj.weight", "V-JEPA encoder", source)
    ignored = [k for k in _IGNORED_ENCODER_KEYS if k in state]
    return entry, {k: v for k, v in state.items() if k not in ignored}, prefix, ignored


def predictor_state(data: Mapping[str, Any], *, source: str = "checkpoint") -> tuple[str | None, dict[str, Tensor], str]:
    """(entry, prefix-stripped state dict, prefix found) of the AC predictor in `data`."""
    pretrain_predictor = data.get("predictor")
    if isinstance(pretrain_predictor, Mapping):
        cleaned, _ = _strip_prefixes(pretrain_predictor)
        if "action_encoder.weight" not in cleaned and any("mask_tokens" in k for k in cleaned):
            raise CheckpointError(
                f"{source}: its 'predictor' is V-JEPA's masked-pretraining predictor, not an action-conditioned one; "
                "load the encoder from it and train an AC predictor (vjepa-ac train)"
            )
    return _select_state(data, ("predictor",), "action_encoder.weight", "AC predictor", source)


def encoder_from_checkpoint(
    data: Mapping[str, Any], *, source: str = "checkpoint", preset: str | None = None,
    checkpoint_key: str | None = None, **arch,
) -> tuple[VisionTransformer, LoadReport]:
    """Build and strictly load the encoder held in an already-read checkpoint dict (CPU, float32, train mode)."""
    entry, state, prefix, ignored = encoder_state(data, source=source, checkpoint_key=checkpoint_key)
    config = infer_encoder_config(state, preset=preset, stored=stored_config(data, "encoder"), **arch)
    encoder = build_from_state(VisionTransformer, config, state, f"{source}: encoder entry {entry or '<top level>'!r}")
    report = LoadReport(source, entry, prefix, config, ignored, sum(p.numel() for p in encoder.parameters()))
    return encoder, report


def predictor_from_checkpoint(
    data: Mapping[str, Any], *, source: str = "checkpoint", img_size_hint: Any = None, **arch
) -> tuple[ACPredictor, LoadReport]:
    """Build and strictly load the AC predictor held in an already-read checkpoint dict (CPU, float32, train mode)."""
    entry, state, prefix = predictor_state(data, source=source)
    config = infer_predictor_config(
        state, stored=stored_config(data, "predictor"), img_size_hint=img_size_hint, **arch
    )
    predictor = build_from_state(ACPredictor, config, state, f"{source}: predictor entry {entry or '<top level>'!r}")
    return predictor, LoadReport(source, entry, prefix, config, [], sum(p.numel() for p in predictor.parameters()))


def load_encoder(
    path: str | os.PathLike, *, preset: str | None = None, checkpoint_key: str | None = None,
    device: torch.device | str = "cpu", dtype: torch.dtype | None = None, **arch,
) -> VisionTransformer:
    """A frozen encoder (eval mode, no grads) from a Meta `.pt`, a Hugging Face snapshot folder or our checkpoint.

    `preset` picks the architecture by name instead of inferring it; `checkpoint_key` picks the entry (default: the
    first of target_encoder, ema_encoder, encoder); `**arch` overrides config fields by Meta's names (embed_dim,
    depth, num_heads, mlp_ratio, patch_size, tubelet_size, img_size, ...).

    Weights do not tell the resolution: an inferred ViT-g gets 256 px, so pass `preset="vit_giant_384"` or
    `img_size=384` for `vitg-384.pt` (it only sets the size `encode_frames` resizes to; RoPE handles any grid).
    """
    data = read_checkpoint(path)
    encoder, report = encoder_from_checkpoint(
        data, source=str(path), preset=preset, checkpoint_key=checkpoint_key, **arch
    )
    if report.ignored_keys:
        log.info("%s: skipped %s (unused by the RoPE encoder)", path, ", ".join(report.ignored_keys))
    freeze(encoder, device, dtype)
    return encoder


def load_predictor(
    path: str | os.PathLike, *, device: torch.device | str = "cpu", dtype: torch.dtype | None = None, **arch
) -> ACPredictor:
    """An AC predictor (eval mode, no grads) from the `predictor` entry of a Meta or our AC checkpoint.

    `**arch` overrides config fields by Meta's names (embed_dim, predictor_embed_dim, depth, num_heads, mlp_ratio,
    action_embed_dim, img_size, patch_size, tubelet_size, use_extrinsics). Call `.train()` to fine-tune it.
    """
    predictor, _ = predictor_from_checkpoint(read_checkpoint(path), source=str(path), **arch)
    freeze(predictor, device, dtype)
    return predictor


# ---------------------------------------------------------------------------------------------------- saving
def _unwrap(module: nn.Module) -> nn.Module:
    """The bare model inside DDP/FSDP-style wrappers (which expose it as `.module`)."""
    while hasattr(module, "module") and isinstance(module.module, nn.Module):
        module = module.module
    return module


def save_ac_checkpoint(
    path: str | os.PathLike, *, encoder: nn.Module, predictor: nn.Module, extra: Mapping[str, Any] | None = None
) -> Path:
    """Write an AC checkpoint in Meta's layout (loads in their hub code and in ours), atomically.

    Keys: `encoder` and `target_encoder` (same tensors, `module.backbone.` prefix), `predictor` (`module.` prefix),
    `epoch` (0 unless `extra` sets it), CONFIG_KEY with both architectures, plus every entry of `extra` (optimizer
    state, RNG, ...). The file appears complete or not at all: written to a temporary file, then renamed.
    """
    encoder, predictor = _unwrap(encoder), _unwrap(predictor)
    if not isinstance(encoder, VisionTransformer) or not isinstance(predictor, ACPredictor):
        raise TypeError(
            f"expected a VisionTransformer and an ACPredictor, got {type(encoder).__name__} and "
            f"{type(predictor).__name__}"
        )
    encoder_state = {f"module.backbone.{k}": v.detach().cpu() for k, v in encoder.state_dict().items()}
    payload: dict[str, Any] = {
        "encoder": encoder_state,
        "target_encoder": encoder_state,
        "predictor": {f"module.{k}": v.detach().cpu() for k, v in predictor.state_dict().items()},
        "epoch": 0,
        CONFIG_KEY: {"encoder": encoder.config.to_dict(), "predictor": predictor.config.to_dict()},
    }
    for key, value in (extra or {}).items():
        if key in ("encoder", "target_encoder", "predictor", CONFIG_KEY):
            raise ValueError(f"extra may not replace the model entry {key!r}")
        payload[key] = value
    return atomic_torch_save(payload, path)


def atomic_torch_save(payload: Any, path: str | os.PathLike) -> Path:
    """`torch.save` to a temporary file in the same folder, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# ---------------------------------------------------------------------------------------------------- Hugging Face
_HF_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.(.+)$")
_HF_RENAMES = {
    "encoder.embeddings.patch_embeddings.proj.weight": "patch_embed.proj.weight",
    "encoder.embeddings.patch_embeddings.proj.bias": "patch_embed.proj.bias",
    "encoder.layernorm.weight": "norm.weight",
    "encoder.layernorm.bias": "norm.bias",
}
# Parts of a transformers VJEPA2 model that are not the encoder: the masked-pretraining predictor, and the
# attentive pooler / classifier of VJEPA2ForVideoClassification.
_HF_NON_ENCODER_PREFIXES = ("predictor.", "pooler.", "classifier.")


def _read_hf_snapshot(folder: Path) -> dict[str, Any]:
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{folder}: a folder checkpoint must be a Hugging Face snapshot with config.json")
    hf_config = json.loads(config_path.read_text())
    if hf_config.get("model_type") != "vjepa2":
        raise CheckpointError(f"{folder}: config.json has model_type {hf_config.get('model_type')!r}, not 'vjepa2'")
    from safetensors.torch import load_file

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (folder / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        raise CheckpointError(f"{folder}: no model.safetensors (or sharded index) in the snapshot")
    hf_state: dict[str, Tensor] = {}
    for name in files:
        try:
            hf_state.update(load_file(str(folder / name)))
        except Exception as exc:
            raise CheckpointError(f"{folder / name}: unreadable safetensors file ({exc})") from exc
    state = hf_encoder_state_to_meta(hf_state)
    config = EncoderConfig(
        embed_dim=hf_config["hidden_size"], depth=hf_config["num_hidden_layers"],
        num_heads=hf_config["num_attention_heads"],
        mlp_ratio=_mlp_ratio(state["blocks.0.mlp.fc1.weight"].shape[0], hf_config["hidden_size"]),
        patch_size=hf_config.get("patch_size", 16), tubelet_size=hf_config.get("tubelet_size", 2),
        img_size=hf_config.get("crop_size", 256), in_chans=hf_config.get("in_chans", 3),
        qkv_bias=hf_config.get("qkv_bias", True),
    )
    return {"encoder": state, CONFIG_KEY: {"encoder": config.to_dict()}}


def hf_encoder_state_to_meta(hf_state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Map a transformers `VJEPA2Model` state dict to our encoder's names (separate q/k/v fused into `qkv`).

    The pretraining predictor and classification heads are dropped; any other unknown key is an error.
    """
    state: dict[str, Tensor] = {}
    qkv_parts: dict[tuple[int, str], dict[str, Tensor]] = {}
    unknown = []
    for key, value in hf_state.items():
        key = key.removeprefix("vjepa2.")
        if key.startswith(_HF_NON_ENCODER_PREFIXES):
            continue
        if key in _HF_RENAMES:
            state[_HF_RENAMES[key]] = value
            continue
        match = _HF_LAYER.match(key)
        if match is None:
            unknown.append(key)
            continue
        layer, rest = int(match.group(1)), match.group(2)
        attention = re.match(r"^attention\.(query|key|value)\.(weight|bias)$", rest)
        if attention:
            qkv_parts.setdefault((layer, attention.group(2)), {})[attention.group(1)] = value
        elif rest.startswith("attention.proj."):
            state[f"blocks.{layer}.attn.{rest.removeprefix('attention.')}"] = value
        else:
            state[f"blocks.{layer}.{rest}"] = value
    if unknown:
        raise CheckpointError(f"Hugging Face snapshot has keys with no encoder counterpart: {', '.join(unknown[:8])}")
    for (layer, kind), parts in qkv_parts.items():
        if set(parts) != {"query", "key", "value"}:
            raise CheckpointError(f"Hugging Face layer {layer} lacks some of query/key/value {kind}")
        state[f"blocks.{layer}.attn.qkv.{kind}"] = torch.cat([parts["query"], parts["key"], parts["value"]])
    return state
