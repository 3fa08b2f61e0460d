"""`vjepa-ac encode` (fill a latent cache), `vjepa-ac train` (train the action-conditioned predictor) and
`vjepa-ac pretrain` (V-JEPA self-supervised pretraining of a small encoder on episode video)."""

from __future__ import annotations

import argparse
import logging
import sys

from vjepa_ac.data.config import add_config_arguments, add_settings_help

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


_PRETRAIN_EPILOG = """\
objectives:
  vjepa2    V-JEPA 2: single frames (duplicated into a tubelet), multi-block masks, L1 to the EMA target encoder's
            layer-normed features at the masked tokens only. Encoder default: vit_tiny.
  vjepa2_1  V-JEPA 2.1: each step an image batch (tubelet-1 image tokenizer, 10 blocks of 15%) and a video batch
            (--clip-frames consecutive frames, tubelet 2, 8 x 15% and 2 x 70% space-time tube masks), weighted 1:1;
            the dense loss adds the visible tokens' targets, each weighted 1/sqrt(distance to the nearest masked
            token), times lambda (0 until --context-lambda-ramp START, linear to the value at END, then held);
            deep self-supervision predicts the target encoder's 4 hierarchical levels, each layer-normed on its own.
            --no-deep-supervision is the ablation "2.1 dense loss without deep supervision" (last level only).
            Needs a 2.1 encoder (default preset vjepa2_1_vit_tiny; --init with a 2.1 checkpoint).
examples:
  vjepa-ac pretrain runs/default_model/episodes --out runs/pretrain --init runs/default_model/encoder.pt
  vjepa-ac pretrain episodes/ --out runs/pretrain_tiny --preset vit_tiny --img-size 128 --seed 0 --steps 1000
  vjepa-ac pretrain episodes/ --out runs/pretrain_2_1 --objective vjepa2_1 --img-size 128
  torchrun --nproc-per-node 2 -m vjepa_ac.cli pretrain episodes/ --out runs/pretrain_2_1 --objective vjepa2_1
  vjepa-ac encode runs/default_model/episodes --out cache/ --encoder-checkpoint runs/pretrain/latest.pt
The run resumes from OUT/latest.pt when it exists (same options); metrics (losses per modality and level, lambda,
collapse monitors: per-level target std and effective rank) go to OUT/train.{jsonl,csv}. latest.pt is in Meta's
pretraining layout (2.1 runs add `ema_encoder`), and its target encoder is what `--encoder-checkpoint` and
load_encoder pick. Batch sizes are global: under torchrun each process takes an equal share.
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
    enc.add_argument("--camera", default=None,
                     help="camera role to encode: left, right, wrist, ext1, ext2 or a serial (default: left for raw "
                     "episodes, ext1 for RLDS shards, which have no left/right roles)")
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
    enc.add_argument("--no-progress", action="store_true", help="hide the progress bar")
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
    train.set_defaults(handler=_train, override_words="overrides")
    add_settings_help(train, _train_config_class)

    _register_pretrain(subparsers)


def _train_config_class() -> type:
    from .config import TrainConfig

    return TrainConfig


def _pretrain_config_class() -> type:
    from .pretrain_config import PretrainConfig

    return PretrainConfig


_PRETRAIN_FLAGS: dict[str, str] = {
    "out": "output_dir", "objective": "objective", "deep_supervision": "deep_supervision",
    "context_lambda": "context_lambda", "context_lambda_ramp": "context_lambda_ramp",
    "distance_weighting": "distance_weighting", "init": "init", "preset": "preset", "img_size": "img_size",
    "seed": "seed", "camera": "camera", "crop": "crop", "frame_stride": "frame_stride", "steps": "optim.total_steps",
    "batch_size": "batch_size", "clip_batch_size": "clip_batch_size", "clip_frames": "clip_frames",
    "warmup_steps": "optim.warmup_steps", "anneal_steps": "optim.anneal_steps", "weight_decay": "optim.weight_decay",
    "ema": "ema", "predictor_dim": "predictor.predictor_embed_dim", "predictor_depth": "predictor.depth",
    "predictor_heads": "predictor.num_heads", "checkpoint_every": "checkpoint_every", "log_every": "log_every",
    "device": "device",
}
"""Option (argparse dest) -> the `PretrainConfig` setting it sets; `--lr` sets three (see `_pretrain_settings`)."""


def _register_pretrain(subparsers: argparse._SubParsersAction) -> None:
    # Every option is a shortcut for one `PretrainConfig` setting (its name in parentheses) and defaults to None, i.e.
    # "not given": the setting then keeps the --config file's value or the dataclass default, which --help lists.
    pre = subparsers.add_parser(
        "pretrain", help="V-JEPA self-supervised pretraining of an encoder on episode video",
        description="Pretrain a (small) V-JEPA encoder on the frames of DROID-layout episodes: multi-block masks, a "
        "context encoder plus mask-token predictor, L1 to the layer-normed features of an EMA target encoder, with "
        "the V-JEPA 2 or the V-JEPA 2.1 objective (--objective, see below). Frames are cropped and resized exactly "
        "as at planning time. Resumable; DDP under torchrun. The settings are those of "
        "worldmodel.training.PretrainConfig (listed at the end with their defaults: a vit_tiny at 128 px, 3000 "
        "steps, about ten minutes on one CPU core with vjepa2): a --config YAML file of them, then the options "
        "below, then KEY=VALUE words among the episodes (e.g. optim.lr=3e-4 predictor.depth=4).",
        epilog=_PRETRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pre.add_argument("episodes", nargs="*", metavar="EPISODES|KEY=VALUE",
                     help="episode index file(s), folders to scan, or episode folders; words of the form "
                     "section.key=value are setting overrides (write a path with '=' as ./name=...)")
    add_config_arguments(pre, _pretrain_config_class, overrides=False)
    pre.set_defaults(override_words="episodes")
    pre.add_argument("--out", help="output folder: latest.pt, train.jsonl, train.csv (`output_dir`)")
    objective = pre.add_argument_group("objective")
    objective.add_argument("--objective", choices=("vjepa2", "vjepa2_1"),
                           help="V-JEPA 2 (frames, masked tokens) or V-JEPA 2.1 (images + clips, dense loss, levels; "
                           "`objective`)")
    objective.add_argument("--no-deep-supervision", dest="deep_supervision", action="store_false", default=None,
                           help="vjepa2_1: turn deep_supervision off and predict the last level only (the "
                           "ablation: dense loss without deep supervision)")
    objective.add_argument("--context-lambda", type=float, nargs=2,
                           metavar=("IMAGE", "VIDEO"), help="vjepa2_1: weight of the context (dense) loss per "
                           "modality; 0 0 turns it off (`context_lambda`)")
    objective.add_argument("--context-lambda-ramp", type=int, nargs=2,
                           metavar=("START", "END"), help="vjepa2_1: lambda is 0 before step START, linear to its "
                           "value at END, then constant (`context_lambda_ramp`; Meta: 15000 30000 of 300000 steps)")
    objective.add_argument("--no-distance-weighting", dest="distance_weighting", action="store_false", default=None,
                           help="vjepa2_1: turn distance_weighting off, weighing every context token equally "
                           "instead of by 1/sqrt(distance)")
    start = pre.add_argument_group("starting encoder (a checkpoint, or a preset built from a seed)")
    start.add_argument("--init", help="encoder checkpoint to start from, e.g. runs/default_model/encoder.pt (`init`)")
    start.add_argument("--preset", help="encoder architecture without --init (`preset`; null: vit_tiny for vjepa2, "
                       "vjepa2_1_vit_tiny for vjepa2_1)")
    start.add_argument("--img-size", type=int, help="encoder resolution in pixels without --init (`img_size`)")
    start.add_argument("--seed", type=int, help="seed of the initial weights, frame sampling and masks (`seed`)")
    data = pre.add_argument_group("frames")
    data.add_argument("--camera", help="camera role to train on: left, right, wrist, ... (`camera`; when set "
                      "nowhere: left for raw episodes, ext1 for RLDS shards)")
    data.add_argument("--crop", choices=("droid", "square", "none"),
                      help="crop before resizing; use the crop you will encode and plan with (`crop`)")
    data.add_argument("--frame-stride", type=int,
                      help="keep every N-th video frame in the in-memory frame bank (`frame_stride`)")
    opt = pre.add_argument_group("optimisation")
    opt.add_argument("--steps", type=int, help="optimizer steps in the whole run (`optim.total_steps`)")
    opt.add_argument("--batch-size", type=int,
                     help="single frames per step (vjepa2_1: the image batch), over all processes (`batch_size`)")
    opt.add_argument("--clip-batch-size", type=int,
                     help="vjepa2_1: video clips per step, over all processes (`clip_batch_size`)")
    opt.add_argument("--clip-frames", type=int,
                     help="vjepa2_1: consecutive kept frames per clip, a multiple of the tubelet, 2 (`clip_frames`)")
    opt.add_argument("--lr", type=float, help="peak learning rate (AdamW; `optim.lr`); also sets the warmup start "
                     "`optim.start_lr` to lr/5 and the decay end `optim.final_lr` to lr/50")
    opt.add_argument("--warmup-steps", type=int, help="linear warmup from start_lr to the peak (`optim.warmup_steps`)")
    opt.add_argument("--anneal-steps", type=int,
                     help="final steps of linear decay to final_lr, 0 = constant after warmup (`optim.anneal_steps`)")
    opt.add_argument("--weight-decay", type=float, help="AdamW weight decay (`optim.weight_decay`)")
    opt.add_argument("--ema", type=float, nargs=2, metavar=("START", "END"),
                     help="target-encoder EMA momentum, ramped linearly over the run (`ema`)")
    opt.add_argument("--predictor-dim", type=int, help="width of the mask predictor (`predictor.predictor_embed_dim`)")
    opt.add_argument("--predictor-depth", type=int, help="blocks of the mask predictor (`predictor.depth`)")
    opt.add_argument("--predictor-heads", type=int, help="attention heads of the mask predictor (`predictor.num_heads`)")
    run = pre.add_argument_group("run")
    run.add_argument("--checkpoint-every", type=int, help="write OUT/latest.pt every N steps (`checkpoint_every`)")
    run.add_argument("--log-every", type=int, help="log metrics every N steps (`log_every`)")
    run.add_argument("--device", help="auto (CUDA if present), cpu, cuda, cuda:N (`device`)")
    pre.set_defaults(handler=_pretrain)


def _encode(args: argparse.Namespace) -> int:
    from vjepa_ac.worldmodel import load_encoder

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
        raise argparse.ArgumentTypeError("give the episodes to encode (index file, folder or episode folders)")
    if not args.encoder_checkpoint:
        raise argparse.ArgumentTypeError("--encoder-checkpoint is required to encode")
    from vjepa_ac.data.droid import resolve_episode_references
    from vjepa_ac.data.droid.index import default_camera

    # Everything that can be checked is checked before the cache folder is created or touched.
    broken: dict[str, str] = {}
    references = resolve_episode_references(args.episodes, on_broken_shard=broken.__setitem__)
    camera = args.camera
    if camera is None:
        camera, why = default_camera(references)
        print(f"camera: {camera} ({why}; choose another with --camera)", file=sys.stderr)
    dist_info = distributed.init_distributed(args.device)
    try:
        encoder = load_encoder(args.encoder_checkpoint, preset=args.encoder_preset,
                               checkpoint_key=args.checkpoint_key, device=dist_info.device)
        spec = cache_spec_for(encoder, checkpoint=args.encoder_checkpoint, preset=args.encoder_preset,
                              checkpoint_key=args.checkpoint_key, camera=camera,
                              fps=None if args.all_frames else args.fps,
                              crop=None if args.crop == "none" else args.crop, dtype=args.dtype,
                              hierarchical=args.hierarchical)
        cache = LatentCache.create(args.out, spec)
        if args.repair and dist_info.is_main:
            for key in repair_cache(cache):
                print(f"dropped damaged episode {key}; it will be re-encoded", file=sys.stderr)
        distributed.barrier()
        shard, count = args.shard
        summary = encode_to_cache(
            cache, encoder, references, shard=shard * dist_info.world_size + dist_info.rank,
            num_shards=count * dist_info.world_size, chunk_frames=args.chunk_frames,
            progress=dist_info.is_main and not args.no_progress,
        )
        if dist_info.is_main:
            summary.failed.update(broken)
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
    from vjepa_ac.data.config import ConfigError, dump_yaml

    from . import distributed
    from .config import load_config

    try:
        config = load_config(args.config, args.overrides)
    except ConfigError as exc:  # a configuration mistake is a usage error; the message names the file and key
        raise argparse.ArgumentTypeError(str(exc)) from exc
    if args.print_config:
        print(dump_yaml(config), end="")
        return 0
    from .trainer import Trainer

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


def _pretrain_settings(args: argparse.Namespace) -> dict[str, object]:
    """{setting: value} of the options given on the command line."""
    settings = {key: getattr(args, dest) for dest, key in _PRETRAIN_FLAGS.items() if getattr(args, dest) is not None}
    if args.lr is not None:
        settings.update({"optim.start_lr": args.lr / 5, "optim.lr": args.lr, "optim.final_lr": args.lr / 50})
    return settings


def _pretrain_config(args: argparse.Namespace, overrides: list[str]):
    """(the run's PretrainConfig: the --config file, then the options, then the KEY=VALUE overrides; whether the
    camera is set anywhere)."""
    from vjepa_ac.data.config import ConfigError, build, read_yaml

    from .pretrain_config import PretrainConfig

    values = read_yaml(args.config) if args.config is not None else {}
    try:
        config = build(PretrainConfig, values, overrides, _pretrain_settings(args), source=args.config)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return config, "camera" in values  # `build` fills `values` with every given setting


def _pretrain(args: argparse.Namespace) -> int:
    from vjepa_ac.data.config import dump_yaml, split_overrides

    episodes, overrides = split_overrides(args.episodes)
    config, camera_given = _pretrain_config(args, overrides)
    if args.print_config:
        print(dump_yaml(config), end="")
        return 0
    if not episodes:
        raise argparse.ArgumentTypeError("give the episodes to pretrain on (index file, folder or episode folders)")
    import torch.distributed as torch_dist

    from vjepa_ac.data.droid import resolve_episode_references
    from vjepa_ac.data.droid.index import default_camera

    from . import distributed
    from .pretrain import pretrain_encoder

    references = resolve_episode_references(episodes)
    if not camera_given:
        config.camera, why = default_camera(references)
        print(f"camera: {config.camera} ({why}; choose another with --camera)", file=sys.stderr)
    optim = config.optim
    print(f"pretraining ({config.objective}) {config.preset if config.init is None else config.init} on "
          f"{len(references)} episodes: {optim.total_steps} steps of {config.batch_size} frames, lr {optim.lr:g}, "
          f"camera {config.camera}", file=sys.stderr)
    try:
        path = pretrain_encoder(references, config)
    finally:
        is_distributed = torch_dist.is_initialized()
        is_main = not is_distributed or torch_dist.get_rank() == 0
        distributed.shutdown_distributed()
    if is_main:
        print(f"pretrained encoder: {path} (load_encoder / --encoder-checkpoint use its target_encoder)")
    if is_distributed:
        distributed.exit_skipping_teardown(0)
    return 0
