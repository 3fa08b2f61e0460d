"""The two steps of the default-model recipe that the other commands do not cover (`recipes/default_model.sh` runs them
around `vjepa-ac sim collect`, `encode` and `train`):

* `python -m vjepa_ac.recipe init-encoder`: a random-initialised V-JEPA encoder of a tiny preset, saved in Meta's
  pretraining layout (`encoder` / `target_encoder` with the `module.backbone.` prefix) so `vjepa-ac encode` loads it
  like `vitg.pt`; frozen from then on.
* `python -m vjepa_ac.recipe export`: a training run's `latest.pt` without optimizer state (Meta's AC layout via
  `worldmodel.save_ac_checkpoint`), plus its model card `<name>.json` (planner settings, recipe, provenance).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml


def init_encoder(out: Path, *, preset: str, img_size: int, patch_size: int | None, seed: int) -> Path:
    """Write a random-initialised encoder checkpoint; returns its path."""
    from vjepa_ac.worldmodel import CONFIG_KEY, build_encoder
    from vjepa_ac.worldmodel.checkpoints import atomic_torch_save

    torch.manual_seed(seed)
    overrides: dict[str, Any] = {"img_size": (img_size, img_size)}
    if patch_size is not None:
        overrides["patch_size"] = patch_size
    encoder = build_encoder(preset, **overrides)
    state = {f"module.backbone.{k}": v.detach().clone() for k, v in encoder.state_dict().items()}
    payload = {
        "encoder": state,
        "target_encoder": state,
        "epoch": 0,
        CONFIG_KEY: {"encoder": encoder.config.to_dict()},
        "vjepa_ac_init": {"preset": preset, "seed": seed, "weights": "random initialisation"},
    }
    return atomic_torch_save(payload, out)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _last_metrics(run_dir: Path, name: str) -> dict[str, Any]:
    """The last line of a trainer metrics file (train.jsonl / val.jsonl), or {} when absent."""
    path = run_dir / name
    if not path.is_file():
        return {}
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return json.loads(lines[-1]) if lines else {}


def export(run_checkpoint: Path, out: Path, *, card: dict[str, Any]) -> tuple[Path, Path]:
    """Slim `run_checkpoint` to the model alone at `out` and write the model card beside it; returns both paths."""
    from vjepa_ac.worldmodel import load_world_model, save_ac_checkpoint

    world_model = load_world_model(run_checkpoint)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_ac_checkpoint(out, encoder=world_model.encoder, predictor=world_model.predictor)
    run_dir = run_checkpoint.parent
    card = {
        **card,
        "checkpoint": out.name,
        "sha256": _sha256(out),
        "bytes": out.stat().st_size,
        "parameters": {
            "encoder": sum(p.numel() for p in world_model.encoder.parameters()),
            "predictor": sum(p.numel() for p in world_model.predictor.parameters()),
        },
        "tokens_per_frame": world_model.tokens_per_frame,
        "final_train_metrics": _last_metrics(run_dir, "train.jsonl"),
        "final_val_metrics": _last_metrics(run_dir, "val.jsonl"),
    }
    card_path = out.with_suffix(".json")
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return out, card_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vjepa_ac.recipe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    init = sub.add_parser("init-encoder", help="write a random-initialised encoder checkpoint")
    init.add_argument("--out", type=Path, required=True, help="checkpoint to write")
    init.add_argument("--preset", default="vit_tiny", help="encoder preset (worldmodel.ENCODER_PRESETS)")
    init.add_argument("--img-size", type=int, default=128, help="square input resolution in pixels")
    init.add_argument("--patch-size", type=int, default=None, help="patch size (default: the preset's)")
    init.add_argument("--seed", type=int, default=0, help="seed of the random initialisation")
    exp = sub.add_parser("export", help="slim a training checkpoint and write its model card")
    exp.add_argument("run_checkpoint", type=Path, help="the trainer's latest.pt")
    exp.add_argument("out", type=Path, help="exported checkpoint (the card goes to the same name with .json)")
    exp.add_argument("--card", type=Path, required=True,
                     help="YAML with the planning settings and recipe description to store in the card")
    exp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="extra top-level card entries (value parsed as YAML), e.g. timings.train_s=1200")
    args = parser.parse_args(argv)
    if args.step == "init-encoder":
        print(init_encoder(args.out, preset=args.preset, img_size=args.img_size, patch_size=args.patch_size,
                           seed=args.seed))
        return 0
    if not args.run_checkpoint.is_file():
        print(f"error: no such checkpoint {args.run_checkpoint}", file=sys.stderr)
        return 2
    card = yaml.safe_load(args.card.read_text()) or {}
    for item in args.set:
        key, sep, raw = item.partition("=")
        if not sep:
            print(f"error: --set {item!r} is not KEY=VALUE", file=sys.stderr)
            return 2
        node = card
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(raw)
    for path in export(args.run_checkpoint, args.out, card=card):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
