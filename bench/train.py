"""Training throughput: clips/s from the latent cache vs re-encoding raw video every step, same model, same run.

Both paths run the real `Trainer` (data loading, encoder when needed, teacher-forcing + rollout loss, backward, AdamW)
on generated raw-DROID episodes. The models are scaled down for a CPU but keep the proportions of ViT-g + the AC
predictor (encoder ~3.3x the predictor's parameters, 8-frame clips, rollout 2). The one-off cost of filling the cache
is timed too, so the break-even point can be read off.

    python -m bench.train [--steps 5] [--batch-size 4] [--threads 2]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import torch

from vjepa_ac.data.droid import CameraRecording, EpisodeRecording, write_episode
from vjepa_ac.worldmodel import build_encoder, build_predictor, load_encoder, save_ac_checkpoint
from vjepa_ac.worldmodel.training import Trainer, load_config
from vjepa_ac.worldmodel.training.encode import cache_spec_for, encode_to_cache
from vjepa_ac.worldmodel.training.latent_cache import LatentCache

ENCODER = dict(embed_dim=384, depth=12, num_heads=6, mlp_ratio=4.0, img_size=(128, 128))  # ViT-S/16 at 128 px
PREDICTOR = dict(embed_dim=384, predictor_embed_dim=256, depth=8, num_heads=8, img_size=(128, 128))
CONFIG = Path(__file__).resolve().parents[1] / "worldmodel" / "training" / "configs" / "tiny_cpu.yaml"


def make_episodes(root: Path, count: int, steps: int) -> list[Path]:
    rng = np.random.default_rng(0)
    start = datetime(2024, 1, 1)
    for i in range(count):
        xyz = np.cumsum(rng.normal(0, 0.01, (steps, 3)), axis=0) + [0.5, 0, 0.3]
        frames = rng.integers(0, 255, size=(steps, 180, 320, 3), dtype=np.uint8)  # DROID's aspect, 1/4 size
        write_episode(root, EpisodeRecording(
            cartesian_position=np.concatenate([xyz, np.tile([np.pi, 0, 0], (steps, 1))], axis=1),
            gripper_position=np.zeros(steps), joint_positions=np.zeros((steps, 7)),
            cameras={"22222222": CameraRecording(frames=frames, extrinsics=np.zeros((steps, 6)))},
        ), when=start + timedelta(minutes=i))
    return sorted(p.parent for p in root.rglob("trajectory.h5"))


def interleaved_step_times(trainers: dict[str, Trainer], steps: int) -> dict[str, float]:
    """Median seconds per optimizer step of each trainer, after one untimed warm-up step each.

    Steps alternate between the trainers so that both see the same load on a shared machine.
    """
    streams = {name: t.batch_stream(t.train_set, start=0, seed=0) for name, t in trainers.items()}
    for name, trainer in trainers.items():
        trainer.train_step(streams[name])
    times: dict[str, list[float]] = {name: [] for name in trainers}
    for _ in range(steps):
        for name, trainer in trainers.items():
            start = time.perf_counter()
            trainer.train_step(streams[name])
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(values)) for name, values in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5, help="timed optimizer steps per path (median reported)")
    parser.add_argument("--batch-size", type=int, default=4, help="clips per step")
    parser.add_argument("--episodes", type=int, default=6, help="generated episodes (60 steps each at 15 Hz)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        episodes = make_episodes(tmp / "droid", args.episodes, steps=60)
        torch.manual_seed(0)
        checkpoint = tmp / "encoder.pt"
        save_ac_checkpoint(checkpoint, encoder=build_encoder("vit_tiny", **ENCODER),
                           predictor=build_predictor("vit_ac_tiny", **PREDICTOR))
        encoder = load_encoder(checkpoint)
        enc_params = sum(p.numel() for p in encoder.parameters())
        pred_params = sum(p.numel() for p in build_predictor("vit_ac_tiny", **PREDICTOR).parameters())

        cache = LatentCache.create(tmp / "cache", cache_spec_for(encoder, checkpoint=str(checkpoint)))
        start = time.perf_counter()
        encode_to_cache(cache, encoder, [str(p) for p in episodes], progress=False)
        encode_seconds = time.perf_counter() - start

        common = [
            "data.frames_per_clip=8", f"data.batch_size={args.batch_size}", "data.num_workers=0",
            "data.val_fraction=0.0", "run.tensorboard=false", f"run.output_dir={tmp / 'runs'}", "run.resume=false",
            "optim.total_steps=1000",
            "model.predictor={" + ", ".join(f"{k}: {list(v) if isinstance(v, tuple) else v}"
                                            for k, v in PREDICTOR.items()) + "}",
        ]
        index = tmp / "episodes.txt"
        index.write_text("".join(f"{p}\n" for p in episodes))
        trainers = {
            "cache": Trainer(load_config(CONFIG, common + [f"data.cache={tmp / 'cache'}"])),
            "raw": Trainer(load_config(CONFIG, common + ["data.source=raw", f"data.episodes={index}",
                                                          f"model.encoder_checkpoint={checkpoint}"])),
        }
        times = interleaved_step_times(trainers, args.steps)
        cached, raw = times["cache"], times["raw"]

    b = args.batch_size
    print(f"encoder {enc_params / 1e6:.1f}M params, predictor {pred_params / 1e6:.1f}M (ratio "
          f"{enc_params / pred_params:.1f}; ViT-g/AC: 3.3), 8-frame clips, batch {b}, {args.threads} threads")
    print(f"{'path (median step)':<28}{'s/step':>10}{'clips/s':>10}")
    print(f"{'latent cache':<28}{cached:>10.3f}{b / cached:>10.2f}")
    print(f"{'raw video + encoder':<28}{raw:>10.3f}{b / raw:>10.2f}")
    print(f"speed-up of the cache: {raw / cached:.2f}x")
    frames = args.episodes * 15  # 60 steps at stride 4
    print(f"filling the cache once: {encode_seconds:.1f} s for {args.episodes} episodes ({frames} frames); "
          f"pays for itself after {encode_seconds / max(raw - cached, 1e-9):.0f} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
