"""What each encoder choice costs the closed loop: encoding one frame plus one plan of the embedded default model's
CEM (128 samples x 4 iterations x horizon 3, top 12), for encoder resolutions, patch sizes and V-JEPA 2.1's four
concatenated levels, each with the default model's predictor (64-d, depth 2, 4 heads; random weights: the cost does
not depend on them). Printed as seconds and as a ratio to the shipped choice (vit_tiny, 128 px, patch 16 = 64 tokens
per frame), measured in the same run and interleaved so that load on a shared machine hits every choice alike.

Usage: python -m bench.encoder_size [--repeats N] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from vjepa_ac.planner.cem import CEMConfig, CEMPlanner
from vjepa_ac.planner.objectives import GoalObjective
from vjepa_ac.planner.rollout import WorldModelRollout
from vjepa_ac.worldmodel import build_encoder, build_predictor
from vjepa_ac.worldmodel.frames import encode_frames

STATE = torch.tensor([0.58, 0.0, 0.25, -3.07, 0.03, -1.91, 1.0])
PLANNER = CEMConfig(samples=128, iterations=4, topk=12, horizon=3)
CHOICES = {
    # name: (encoder preset, image size, patch size, predictor reads the 4 levels)
    "vit_tiny 128 px p16 (shipped)": ("vit_tiny", 128, 16, False),
    "vit_tiny 192 px p16": ("vit_tiny", 192, 16, False),
    "vit_tiny 256 px p16": ("vit_tiny", 256, 16, False),
    "vit_tiny 128 px p8": ("vit_tiny", 128, 8, False),
    "vjepa2_1_vit_tiny 128 px p16, 4 levels": ("vjepa2_1_vit_tiny", 128, 16, True),
}


def build(preset: str, size: int, patch: int, levels: bool):
    torch.manual_seed(0)
    encoder = build_encoder(preset, img_size=(size, size), patch_size=patch).eval()
    width = encoder.config.embed_dim * (encoder.config.num_levels if levels else 1)
    predictor = build_predictor("vit_ac_tiny", img_size=(size, size), patch_size=patch, embed_dim=width,
                                predictor_embed_dim=64, depth=2, num_heads=4).eval()
    return encoder, predictor


def time_choice(encoder, predictor, levels: bool, frame: np.ndarray) -> tuple[float, float]:
    """(seconds to encode one frame, seconds for one plan)."""
    start = time.perf_counter()
    latent = encode_frames(encoder, frame[None, None], hierarchical=levels)[0]
    encode_seconds = time.perf_counter() - start
    goal = latent[0] + 0.1
    rollout = WorldModelRollout(predictor, latent, STATE[None], None,
                                num_levels=encoder.config.num_levels if levels else 1)
    result = CEMPlanner(PLANNER).plan(rollout, GoalObjective(goal))
    return encode_seconds, result.seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds; medians are printed (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    frame = np.random.default_rng(0).integers(0, 256, (180, 320, 3), dtype=np.uint8)
    models = {name: build(*spec) for name, spec in CHOICES.items()}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in CHOICES}
    with torch.no_grad():
        for name, (encoder, predictor) in models.items():  # warm-up
            time_choice(encoder, predictor, CHOICES[name][3], frame)
        for _ in range(args.repeats):
            for name, (encoder, predictor) in models.items():
                times[name].append(time_choice(encoder, predictor, CHOICES[name][3], frame))
    print(f"CEM {PLANNER.samples} x {PLANNER.iterations} x horizon {PLANNER.horizon}, {args.threads} thread(s), "
          f"median of {args.repeats}")
    print("| encoder | tokens/frame | feature width | encode s | plan s | encode + plan s | ratio to shipped |")
    print("|---|---|---|---|---|---|---|")
    base = None
    for name, (encoder, predictor) in models.items():
        encode_s = statistics.median(t[0] for t in times[name])
        plan_s = statistics.median(t[1] for t in times[name])
        total = encode_s + plan_s
        base = base or total
        print(f"| {name} | {predictor.tokens_per_frame} | {predictor.config.embed_dim} | {encode_s:.3f} | "
              f"{plan_s:.3f} | {total:.3f} | {total / base:.2f} |")


if __name__ == "__main__":
    main()
