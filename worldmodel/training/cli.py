"""`vjepa-ac encode` (fill a latent cache) and `vjepa-ac train` (train the action-conditioned predictor)."""

from __future__ import annotations

import argparse
import logging
import sys

log = logging.getLogger(__name__)

_ENCODE_EPILOG = """\
examples:
  vjepa-ac encode droid_index.txt --out cache/ --encoder-checkpoint vitg.pt
  torchrun --nproc-per-node 8 -m vjepa_ac.cli encode droid_index.txt --out cache/ --encoder-checkpoint vitg.pt
  vjepa-ac encode --out cache/ --verify          # check every checksum, exit 1 if anything is damaged
  vjepa-ac encode droid_index.txt --out cache/ --encoder-checkpoint vitg.pt --repair
"""

_TRAIN_EPILOG = """\
examples:
  vjepa-ac train worldmodel/training/configs/tiny_cpu.yaml data.cache=cache/ run.output_dir=runs/tiny
  torchrun --nproc-per-node 8 -m vjepa_ac.cli train worldmodel/training/configs/vitg16_droid_256px_8f.yaml \\
      data.cache=/data/droid_cache run.output_dir=/ckpt/ac_vitg
Overrides are section.key=value with YAML values (optim.lr=3e-4, data.val_episodes=[a,b]). A run resumes from
OUTPUT_DIR/latest.pt when it exists; metrics go to OUTPUT_DIR/{train,val}.{jsonl,csv}.
"""


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard must look like I/N, got {text!r}") from None
    if not (count >= 1 and 0 <= index < count):
        raise argparse.ArgumentTypeError(f"--shard {text}: need 0 <= I < N")
    return index, count


def register(subparsers: argparse._SubParsersAction) -> None:
    enc = subparsers.add_parser(
        "encode", help="cache frozen-encoder latents of DROID episodes (for fast training)",
        description="Run the frozen encoder once over DROID episodes and write per-frame latents to a tensorstore "
        "(zarr) latent cache with an episode index. Resumable: cached episodes are skipped. Several processes "
        "(torchrun ranks or --shard) may fill one cache at once.",
        epilog=_ENCODE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    enc.add_argument("episodes", nargs="*", help="episode index file(s), folders to scan, or episode folders")
    enc.add_argument("--out", required=True, help="latent cache folder (created if missing)")
    enc.add_argument("--encoder-checkpoint", help="checkpoint with the frozen encoder (e.g. Meta's vitg.pt)")
    enc.add_argument("--encoder-preset", help="encoder architecture by name (default: inferred from the checkpoint)")
    enc.add_argument("--checkpoint-key", default=None,
                     help="checkpoint entry holding the encoder (default: target_encoder, ema_encoder, encoder)")
    enc.add_argument("--camera", default="left", help="camera role to encode (left, right, wrist, ...)")
    enc.add_argument("--fps", type=float, default=4.0,
                     help="cached frames per second of video (stride ceil(video_fps/fps), the reference clip rule); "
                     "training must use a rate whose stride is a multiple of it")
    enc.add_argument("--all-frames", action="store_true", help="cache every video frame (overrides --fps)")
    enc.add_argument("--crop", choices=("droid", "square", "none"), default="droid",
                     help="frame crop before resizing: droid = the reference training crop, square = planning crop")
    enc.add_argument("--dtype", choices=("float16", "bfloat16"), default="float16", help="storage dtype")
    enc.add_argument("--hierarchical", action="store_true",
                     help="V-JEPA 2.1 encoders: store the four feature levels concatenated")
    enc.add_argument("--chunk-frames", type=int, default=16, help="frames encoded per forward pass")
    enc.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    enc.add_argument("--shard", type=_parse_shard, default=(0, 1), metavar="I/N",
                     help="encode only every N-th episode starting at I (for independent processes)")
    enc.add_argument("--verify", action="store_true", help="check every cached frame's checksum, then exit")
    enc.add_argument("--repair", action="store_true", help="drop damaged cached episodes before encoding")
    enc.set_defaults(handler=_encode)

    train = subparsers.add_parser(
        "train", help="train the action-conditioned predictor",
        description="Train the V-JEPA 2-AC predictor (teacher-forcing + rollout L1) over a frozen encoder, from a "
        "latent cache or raw DROID video, on one process or under torchrun (DDP).",
        epilog=_TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("config", help="YAML config (see worldmodel/training/configs/)")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")
    train.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    train.set_defaults(handler=_train)


def _encode(args: argparse.Namespace) -> int:
    from worldmodel import load_encoder

    from . import distributed
    from .encode import cache_spec_for, encode_to_cache, repair_cache
    from .latent_cache import LatentCache

    if args.verify:
        cache = LatentCache.open(args.out)
        problems = cache.verify()
        for key, problem in problems.items():
            print(f"DAMAGED {key}: {problem}", file=sys.stderr)
        print(f"{len(cache.episodes())} episodes checked, {len(problems)} damaged")
        return 1 if problems else 0
    if not args.episodes:
        print("error: give the episodes to encode (index file, folder or episode folders)", file=sys.stderr)
        return 2
    if not args.encoder_checkpoint:
        print("error: --encoder-checkpoint is required to encode", file=sys.stderr)
        return 2
    from data.droid import resolve_episode_references

    dist_info = distributed.init_distributed(args.device)
    try:
        encoder = load_encoder(args.encoder_checkpoint, preset=args.encoder_preset,
                               checkpoint_key=args.checkpoint_key, device=dist_info.device)
        spec = cache_spec_for(encoder, checkpoint=args.encoder_checkpoint, preset=args.encoder_preset,
                              checkpoint_key=args.checkpoint_key, camera=args.camera,
                              fps=None if args.all_frames else args.fps,
                              crop=None if args.crop == "none" else args.crop, dtype=args.dtype,
                              hierarchical=args.hierarchical)
        cache = LatentCache.create(args.out, spec)
        if args.repair and dist_info.is_main:
            for key in repair_cache(cache):
                print(f"dropped damaged episode {key}; it will be re-encoded", file=sys.stderr)
        distributed.barrier()
        references = resolve_episode_references(args.episodes if len(args.episodes) > 1 else args.episodes[0])
        shard, count = args.shard
        summary = encode_to_cache(
            cache, encoder, references, shard=shard * dist_info.world_size + dist_info.rank,
            num_shards=count * dist_info.world_size, chunk_frames=args.chunk_frames,
            progress=dist_info.is_main,
        )
        distributed.barrier()
        if dist_info.is_main:
            total = cache.write_index()
            print(f"encoded {len(summary.written)}, already cached {len(summary.skipped)}, failed "
                  f"{len(summary.failed)} (this process); cache holds {total} episodes")
        for reference, reason in summary.failed.items():
            print(f"FAILED {reference}: {reason}", file=sys.stderr)
        return 1 if summary.failed else 0
    finally:
        distributed.shutdown_distributed()


def _train(args: argparse.Namespace) -> int:
    import json

    import yaml

    from . import distributed
    from .config import load_config
    from .trainer import Trainer

    config = load_config(args.config, args.overrides)
    if args.print_config:
        print(yaml.safe_dump(json.loads(json.dumps(config.to_dict())), sort_keys=False))
        return 0
    try:
        trainer = Trainer(config)
        metrics = trainer.fit()
        if trainer.dist.is_main:
            print(" ".join(f"{k}={v:.5g}" for k, v in metrics.items() if isinstance(v, float)
                           and not k.startswith(("val_teacher_forcing_t", "val_rollout_t"))))
    finally:
        distributed.shutdown_distributed()
    if trainer.dist.is_distributed:
        distributed.exit_skipping_teardown(0)
    return 0
