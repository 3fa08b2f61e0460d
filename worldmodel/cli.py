"""`vjepa-ac info CHECKPOINT`: what a checkpoint holds and whether our models load it."""

from __future__ import annotations

import argparse
import errno
import json
from pathlib import Path
from typing import Any

_MAX_ENTRIES_SHOWN = 10


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info",
        help="what a checkpoint holds and whether it loads",
        description=(
            "Inspect a V-JEPA 2 / 2.1 / 2-AC checkpoint (Meta .pt, our AC checkpoint, a .safetensors file or a "
            "Hugging Face snapshot folder): the entries it holds, the key prefix found, the inferred architecture "
            "and preset, parameter counts, and whether the encoder and the AC predictor load strictly. Models are "
            "checked on the meta device, so even ViT-g files are inspected without allocating the model."
        ),
    )
    parser.add_argument("checkpoint", help="path to a .pt/.pth/.safetensors file or a Hugging Face snapshot folder")
    parser.add_argument("--preset", default=None, help="encoder preset to check against instead of inferring one")
    parser.add_argument(
        "--checkpoint-key", default=None,
        help="top-level entry holding the encoder (default: first of target_encoder, ema_encoder, encoder)",
    )
    parser.add_argument("--img-size", type=int, default=None, help="frame resolution, for files without a stored config")
    parser.add_argument(
        "--num-heads", type=int, default=None,
        help="encoder attention heads, for widths that match no released model (weights do not tell them)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=_run_info)


def _run_info(args: argparse.Namespace) -> int:
    from vjepa_ac.worldmodel.summary import describe_checkpoint

    if not Path(args.checkpoint).exists():
        raise FileNotFoundError(errno.ENOENT, "no such checkpoint file or snapshot folder", args.checkpoint)
    report = describe_checkpoint(
        args.checkpoint, preset=args.preset, checkpoint_key=args.checkpoint_key, img_size=args.img_size,
        num_heads=args.num_heads,
    )
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        _print_report(report)
    return 0 if report["loads"] else 1


def _print_report(report: dict[str, Any]) -> None:
    print(f"checkpoint: {report['path']}")
    print(f"kind:       {report['kind']}")
    entries = [f"{name} ({what})" for name, what in report["entries"].items()]
    shown = ", ".join(entries[:_MAX_ENTRIES_SHOWN])
    if len(entries) > _MAX_ENTRIES_SHOWN:
        shown += f", ... ({len(entries)} in total)"
    print(f"entries:    {shown}")
    for part in ("encoder", "predictor"):
        info = report[part]
        print(f"{part}:")
        if "error" in info:
            print(f"  does not load: {info['error']}")
            continue
        print(f"  entry:      {info['entry']}   key prefix: {info['prefix'] or '(none)'}")
        print(f"  preset:     {info['preset'] or '(none matches exactly)'}")
        print(f"  parameters: {info['num_params']:,}")
        arch = ", ".join(f"{k}={v}" for k, v in info["config"].items())
        print(f"  config:     {arch}")
        if info.get("ignored_keys"):
            print(f"  skipped:    {', '.join(info['ignored_keys'])} (unused by the RoPE model)")
        print("  loads:      yes (strict)")
