"""The `vjepa-ac` command: one entry point, one subcommand per user-facing job.

Each package owns its subcommands in its own `cli.py` exposing `register(subparsers)`; this module only assembles
them, so `vjepa-ac --help` lists every job. Handlers import their heavy dependencies lazily so that `--help` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

# Order is the order shown in --help; it follows the data flow data -> encoder -> predictor -> planner -> robot.
_SUBCOMMAND_MODULES: tuple[str, ...] = (
    "data.droid.cli",
    "worldmodel.cli",
    "worldmodel.training.cli",
    "sim.cli",
    "planner.cli",
    "robot.cli",
    "vjepa_ac.app",
    "vjepa_ac.goals",
)

_DESCRIPTION = """\
Plan Franka arm motions with a V-JEPA 2-AC latent world model.

Typical workflow:
  vjepa-ac demo                      closed-loop MuJoCo demo on the embedded default model
  vjepa-ac info CKPT                 what a checkpoint holds and whether it loads
  vjepa-ac droid index ROOT          list DROID episodes for training
  vjepa-ac encode ...                cache encoder latents of a dataset
  vjepa-ac train CONFIG              train the action-conditioned predictor
  vjepa-ac goal capture / show       goal images for a task (a goal schedule) from the planner's camera
  vjepa-ac plan / run                one-shot planning / closed-loop control
  vjepa-ac bridge ...                robot-side bridge to a Franka arm
Run `vjepa-ac SUBCOMMAND --help` for details.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vjepa-ac", description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    subparsers = parser.add_subparsers(dest="command", metavar="SUBCOMMAND")
    for module_name in _SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # Only tolerate the subcommand module itself being absent, never a broken import inside it.
            if exc.name != module_name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
