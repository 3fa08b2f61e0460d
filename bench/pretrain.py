"""Pretraining step time of each objective at the embedded scale, against V-JEPA 2's objective in the same run.

Each case is a real `worldmodel.training.pretrain` run (frame bank, masks, EMA target, context encoder, predictor,
backward, AdamW, EMA update) at 128 px with the default batch sizes, on generated raw-DROID episodes. Steps alternate
between the cases so that all see the same load on a shared machine; medians after one untimed step each.

* `vjepa2` on `vit_tiny` (depth 2): the baseline, what `recipes/default_model.sh` pretrains today.
* `vjepa2` on `vjepa2_1_vit_tiny` (depth 4, image tokenizer): separates the deeper encoder from the objective.
* `vjepa2_1` without deep supervision, and full `vjepa2_1`: image + clip batches, dense loss, (4 levels).

    python -m bench.pretrain [--steps 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.train import make_episodes
from vjepa_ac.worldmodel.training.distributed import DistInfo
from vjepa_ac.worldmodel.training.pretrain import (
    PretrainConfig,
    build_run,
    check_batches,
    load_frame_bank,
    train_step,
)

CASES = {
    "vjepa2, vit_tiny (baseline)": {"objective": "vjepa2"},
    "vjepa2, vjepa2_1_vit_tiny": {"objective": "vjepa2", "preset": "vjepa2_1_vit_tiny"},
    "vjepa2_1, no deep supervision": {"objective": "vjepa2_1", "deep_supervision": False},
    "vjepa2_1 (full)": {"objective": "vjepa2_1"},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5, help="timed optimizer steps per case (median reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    dist = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))

    with tempfile.TemporaryDirectory() as tmp:
        references = [str(p) for p in make_episodes(Path(tmp) / "droid", 4, steps=60)]
        runs = {}
        for name, fields in CASES.items():
            config = PretrainConfig(output_dir=str(Path(tmp) / name), img_size=128, device="cpu", **fields)
            run = build_run(config, dist, None, Path(tmp) / name / "latest.pt")
            bank = load_frame_bank(references, img_size=(128, 128), progress=False)
            runs[name] = (run, config, torch.from_numpy(bank.frames), check_batches(config, dist, bank))
        for run, config, frames, starts in runs.values():
            train_step(run, config, frames, starts)  # warm-up
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.steps):
            for name, (run, config, frames, starts) in runs.items():
                start = time.perf_counter()
                train_step(run, config, frames, starts)
                times[name].append(time.perf_counter() - start)

    medians = {name: float(np.median(values)) for name, values in times.items()}
    baseline = medians[next(iter(CASES))]
    defaults = PretrainConfig()
    print(f"128 px, {defaults.batch_size} frames (vjepa2) / {defaults.batch_size} images + {defaults.clip_batch_size} "
          f"clips of {defaults.clip_frames} frames (vjepa2_1) per step, {args.threads} thread(s), median of "
          f"{args.steps}")
    print(f"{'case':<34}{'s/step':>10}{'x baseline':>12}")
    for name, seconds in medians.items():
        print(f"{name:<34}{seconds:>10.3f}{seconds / baseline:>12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
