"""The `vjepa-ac` command: one entry point, one subcommand per user-facing job.

A subcommand module exposes `register(subparsers)`: the data, world-model and simulator packages own the commands
that only use their own package (`data/droid/cli.py`, `worldmodel/cli.py`, `worldmodel/training/cli.py`,
`sim/cli.py`); the commands that compose several layers live here in the application (`vjepa_ac/control.py`: plan,
run, calibrate; `vjepa_ac/app.py`: demo, eval; `vjepa_ac/bridge.py`: the robot-side bridge; `vjepa_ac/goals.py`),
so the planner and the robot packages stay libraries. This module only assembles them (`_SUBCOMMAND_MODULES`), so
`vjepa-ac --help` lists every job. A new subcommand is a `register` function plus handlers and one line in
`_SUBCOMMAND_MODULES`; it then gets, with no code of its own:

- **Fast help.** `vjepa-ac --help` and `vjepa-ac SUBCOMMAND --help` import the `cli.py` modules and nothing heavy.
  A `cli.py` imports torch, tensorstore, h5py, MuJoCo, OpenCV etc. inside its handlers only (never at module level
  or in `register`), and the packages' `__init__` files export their API lazily (module `__getattr__`), so
  importing `worldmodel.cli` does not load torch. Options that set a config dataclass's fields are left as None in
  argparse ("not given") and merged by the handler. `tests/vjepa_ac/test_cli.py` runs every `--help` in a
  subprocess and checks `sys.modules`.
- **One configuration style** (`data.config`). A configurable command's settings are one dataclass tree: a
  `--config` YAML file of its fields, then its options (shortcuts for single settings), then dotted `KEY=VALUE`
  words, which `main` also collects when they follow an option; `add_config_arguments` adds `--config`,
  `--print-config` and the words, and ends `--help` with every setting and its default (the dataclass is imported
  only then, and lives in a module without torch).
- **One error path.** A handler reports a problem by raising, never by printing and returning a code. `main`
  prints `vjepa-ac SUBCOMMAND: error: MESSAGE` on stderr and exits 2 for a usage error (`argparse.ArgumentTypeError`
  or `argparse.ArgumentError`: a bad option, combination of options or configuration; `FileNotFoundError`: a named
  input that does not exist) and 1 for anything else (an input that exists but is broken, a missing optional
  dependency, a failed run). The message must name the offending input and say what was expected. The traceback
  is printed only with `-v` (accepted before or after the subcommand); an exception type that signals a bug
  rather than bad input (TypeError, AttributeError, ...) is labelled "internal error". A handler returns 0 on
  success or 1 when the run finished but found problems (e.g. `droid validate` on broken episodes).
- **Shared spellings.** `--no-progress` hides progress bars; `--seed` is the seed of an episode (a sim task's
  initial conditions) and `--planner-seed` the planner's sampling seed; `--task` names one task or a comma list;
  `--max-steps` is an episode's action budget while `--steps` counts optimizer steps; `--out` is an output folder
  and `-o/--output` an output file.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from typing import Sequence

from vjepa_ac.data.config import collect_late_overrides

# Order is the order shown in --help; it follows the data flow data -> encoder -> predictor -> planner -> robot.
_SUBCOMMAND_MODULES: tuple[str, ...] = (
    "vjepa_ac.data.droid.cli",
    "vjepa_ac.data.lerobot.cli",
    "vjepa_ac.worldmodel.cli",
    "vjepa_ac.worldmodel.training.cli",
    "vjepa_ac.sim.cli",
    "vjepa_ac.control",
    "vjepa_ac.bridge",
    "vjepa_ac.app",
    "vjepa_ac.goals",
    "vjepa_ac.teleop",
)

USAGE_EXIT = 2
FAILURE_EXIT = 1
INTERRUPTED_EXIT = 130

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

Errors go to stderr as one `error:` line; exit status 2 means a usage error, 1 a failure (add -v for the
traceback), 130 an interruption.
"""

# Exceptions that are expected failures of user input or of the environment; anything else is a bug.
_EXPECTED_FAILURES: tuple[type[BaseException], ...] = (
    OSError, ValueError, RuntimeError, LookupError, EOFError, ImportError, argparse.ArgumentTypeError,
    argparse.ArgumentError,
)


def _subcommand_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every (nested) subcommand parser below `parser`."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                found += [sub, *_subcommand_parsers(sub)]
    return found


def _add_verbose_everywhere(parser: argparse.ArgumentParser) -> None:
    """Accept -v after any subcommand too (`vjepa-ac train cfg.yaml -v`), as well as before it."""
    for sub in _subcommand_parsers(parser):
        if "-v" not in sub._option_string_actions and "--verbose" not in sub._option_string_actions:
            sub.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                             help="more logging (-vv for debug); show the traceback of an error")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vjepa-ac", description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-vv for debug); show the traceback of an error")
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
    _add_verbose_everywhere(parser)
    return parser


def describe_error(exc: BaseException) -> str:
    """One line for the user: the exception's own message (which names the input), or a labelled bug."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    message = str(exc).strip() or type(exc).__name__
    if isinstance(exc, KeyError) and exc.args:
        message = str(exc.args[0])  # str(KeyError) adds quotes
    if isinstance(exc, _EXPECTED_FAILURES):
        return message
    return f"internal error ({type(exc).__name__}: {message}); please report it with the output of -v"


def _program(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """`vjepa-ac droid validate`: the prog of the deepest subcommand parser chosen."""
    names = [args.command] + [v for k, v in vars(args).items() if k.endswith("_command") and isinstance(v, str)]
    return " ".join([parser.prog, *[n for n in names if n]])


def run_handler(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Run the chosen subcommand's handler under the common error path; returns the exit status."""
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT
    except (argparse.ArgumentTypeError, argparse.ArgumentError, FileNotFoundError) as exc:
        _report(parser, args, exc)
        return USAGE_EXIT
    except Exception as exc:  # noqa: BLE001 - the one place that turns any failure into an error line
        _report(parser, args, exc)
        return FAILURE_EXIT


def _report(parser: argparse.ArgumentParser, args: argparse.Namespace, exc: BaseException) -> None:
    if args.verbose:
        traceback.print_exception(exc, file=sys.stderr)
    print(f"{_program(parser, args)}: error: {describe_error(exc)}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # KEY=VALUE overrides may also follow a command's options (`vjepa-ac pretrain eps/ --out X optim.lr=3e-4`).
    unrecognised = collect_late_overrides(args, extra)
    if unrecognised:
        parser.error(f"unrecognized arguments: {' '.join(unrecognised)}")
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return run_handler(parser, args)


if __name__ == "__main__":
    raise SystemExit(main())
