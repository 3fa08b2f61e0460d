"""Encoder and AC predictor speed: our implementation vs Meta's reference code, same weights, same run.

The baseline is Meta's own code (facebookresearch/vjepa2 at c2963a47, the commit the fixtures were made with),
imported from a local checkout passed as `--reference-src` (or $VJEPA2_SRC); nothing of it is part of this project.
Its only third-party needs beyond torch are timm's `drop_path` (identity at eval) and an unused einops import; when
those packages are absent this script provides inert stand-ins so the reference imports on a CPU-only torch.

Without a reference checkout the script times our code alone and says so.

    git clone https://github.com/facebookresearch/vjepa2 /tmp/vjepa2 && git -C /tmp/vjepa2 checkout c2963a47
    python -m bench.model_speed --reference-src /tmp/vjepa2
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import subprocess
import sys
import time
import types
import warnings
from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from vjepa_ac.worldmodel import build_encoder, build_predictor, normalize_reps

# The spec's tiny timing model: 64-d, depth 2, 4 heads, 256 px (256 tokens per frame).
TINY = {"embed_dim": 64, "predictor_embed_dim": 64, "depth": 2, "num_heads": 4, "img_size": (256, 256)}
PREDICTOR_CASES = [(1, 1), (1, 2), (1, 8), (25, 2), (400, 2)]


def prepare_reference_imports(src: str) -> None:
    """Put a reference checkout on sys.path, with inert stand-ins for timm's drop_path and einops if missing."""
    for name, attrs in (("timm.models.layers", {"drop_path": lambda x, *a, **k: x}), ("einops", {"rearrange": None})):
        try:
            importlib.import_module(name)
        except ImportError:
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                sys.modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
            for key, value in attrs.items():
                setattr(sys.modules[name], key, value)
    sys.path.insert(0, src)
    warnings.filterwarnings("ignore", category=FutureWarning)  # their torch.backends.cuda.sdp_kernel() wrapper


def import_reference(src: str) -> types.SimpleNamespace | None:
    """Meta's `src.models` modules from a checkout, or None if unavailable."""
    if not src or not os.path.isdir(os.path.join(src, "src", "models")):
        return None
    prepare_reference_imports(src)
    ac_predictor = importlib.import_module("src.models.ac_predictor")
    vision_transformer = importlib.import_module("src.models.vision_transformer")
    return types.SimpleNamespace(ac_predictor=ac_predictor, vision_transformer=vision_transformer)


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: lazily built tables and masks, allocator
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def compare(label: str, ours: Callable, reference: Callable | None, repeats: int) -> None:
    with torch.no_grad():
        ours_out = ours()
        if reference is None:
            print(f"{label:<44} ours {median_ms(ours, repeats):9.1f} ms   reference: not available")
            return
        diff = (ours_out - reference()).abs().max().item()
        # Alternate the two so that load changes on a shared machine hit both alike.
        t_ours, t_ref = [], []
        for _ in range(repeats):
            t_ours.append(median_ms(ours, 1))
            t_ref.append(median_ms(reference, 1))
    mo, mr = statistics.median(t_ours), statistics.median(t_ref)
    print(f"{label:<44} ours {mo:9.1f} ms   reference {mr:9.1f} ms   speed-up x{mr / mo:5.2f}   max|diff| {diff:.1e}")


def predictor_pair(ref, full_size: bool):
    config = {} if full_size else TINY
    ours = build_predictor("vit_ac_giant", **config).eval()
    if ref is None:
        return ours, None
    reference = ref.ac_predictor.vit_ac_predictor(
        img_size=ours.config.img_size, patch_size=16, num_frames=16, tubelet_size=2, embed_dim=ours.config.embed_dim,
        predictor_embed_dim=ours.config.predictor_embed_dim, depth=ours.config.depth, num_heads=ours.config.num_heads,
    ).eval()
    ours.load_state_dict(reference.state_dict())
    return ours, reference


def encoder_pair(ref):
    ours = build_encoder("vit_tiny", img_size=(256, 256)).eval()
    if ref is None:
        return ours, None
    c = ours.config
    reference = ref.vision_transformer.VisionTransformer(
        img_size=c.img_size, patch_size=16, num_frames=16, tubelet_size=2, embed_dim=c.embed_dim, depth=c.depth,
        num_heads=c.num_heads, mlp_ratio=c.mlp_ratio, qkv_bias=True, use_rope=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
    ).eval()
    ours.load_state_dict(reference.state_dict())
    return ours, reference


_MEMORY_PROBE = """
import torch
from vjepa_ac.worldmodel import build_encoder, encode_frames

def peak_rss_mb():
    # VmHWM belongs to this process image; ru_maxrss would carry over the parent's peak across exec.
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024

torch.set_num_threads({threads})
torch.manual_seed(0)
encoder = build_encoder("vit_tiny", embed_dim=256, depth=4, img_size=(256, 256)).eval()
frames = torch.randint(0, 256, (1, {frames}, 256, 256, 3), dtype=torch.uint8)
before = peak_rss_mb()
encode_frames(encoder, frames, crop=None, chunk_size={chunk})
print(peak_rss_mb() - before)
"""


def encode_peak_memory_mb(frames: int, chunk: int, threads: int) -> float:
    """Growth of peak RSS (MB) while encoding, in a fresh process so earlier runs do not mask it."""
    code = _MEMORY_PROBE.format(frames=frames, chunk=chunk, threads=threads)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference-src", default=os.environ.get("VJEPA2_SRC", ""),
                        help="checkout of facebookresearch/vjepa2 (default: $VJEPA2_SRC)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per case (median reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--full", action="store_true", help="also time the full-size 305M AC predictor (B=1, T=2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ref = import_reference(args.reference_src)
    print(f"torch {torch.__version__}, {args.threads} threads, reference: {args.reference_src or 'none'}")

    ours, reference = predictor_pair(ref, full_size=False)
    for batch, steps in PREDICTOR_CASES:
        x = normalize_reps(torch.randn(batch, steps * 256, 64))
        a, s = torch.randn(batch, steps, 7), torch.randn(batch, steps, 7)
        compare(f"AC predictor tiny forward B={batch} T={steps}", partial(ours, x, a, s),
                partial(reference, x, a, s) if reference else None, args.repeats)

    encoder, reference_encoder = encoder_pair(ref)
    clip = torch.randn(16, 3, 2, 256, 256)
    compare("encoder tiny, 16 frames x 256 px", lambda: encoder(clip),
            (lambda: reference_encoder(clip)) if reference_encoder else None, args.repeats)

    frames = 64
    one_batch = encode_peak_memory_mb(frames, frames, args.threads)
    chunked = encode_peak_memory_mb(frames, 16, args.threads)
    print(f"{'encode_frames peak memory, 64 frames 256 px':<44} chunk 16 {chunked:7.0f} MB   one batch (reference) "
          f"{one_batch:7.0f} MB   ratio x{one_batch / max(chunked, 1e-9):5.2f}")

    if args.full:
        ours, reference = predictor_pair(ref, full_size=True)
        x = normalize_reps(torch.randn(1, 2 * 256, 1408))
        a, s = torch.randn(1, 2, 7), torch.randn(1, 2, 7)
        compare("AC predictor full size (305M) B=1 T=2", lambda: ours(x, a, s),
                (lambda: reference(x, a, s)) if reference else None, max(3, args.repeats // 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
