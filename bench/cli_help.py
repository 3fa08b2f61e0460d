"""Start-up cost of `vjepa-ac --help` and every `vjepa-ac SUBCOMMAND --help`: wall time and peak memory of the whole
process, this tree against a baseline revision of the project (default: the commit before the lazy imports), both
run in turn in the same session with the same interpreter.

The baseline is exported with `git archive REF` into a temporary folder and put first on the module path, so both
trees run with this virtual environment's packages; a child's peak memory is its own (`os.wait4`).

Run: .venv/bin/python -m bench.cli_help [--baseline da2b7ba] [--runs 5]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_PROGRAM = (
    "import sys; sys.path.insert(0, sys.argv[1]); from vjepa_ac.cli import main; main(sys.argv[2:] + ['--help'])"
)


def export_tree(ref: str, into: Path) -> Path:
    """The project's files at git revision `ref`, unpacked under `into`."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def run_once(tree: Path, argv: list[str]) -> tuple[float, float]:
    """(wall seconds, peak resident MB) of one `--help` process."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", _PROGRAM, str(tree), *argv], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} --help exited {child.returncode} in {tree}")
    return wall, usage.ru_maxrss / 1024


def subcommands() -> list[list[str]]:
    """[] (the top-level help) and every subcommand, nested ones included."""
    from vjepa_ac.cli import build_parser

    commands: list[list[str]] = [[]]
    for action in build_parser()._subparsers._group_actions:
        for name, sub in action.choices.items():
            nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
            commands += [[name, inner] for a in nested for inner in a.choices] or [[name]]
    return commands


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default="da2b7ba", help="git revision to compare with (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=5, help="runs of each command per tree (default 5)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        baseline = export_tree(args.baseline, Path(tmp))
        print(f"{'command':<28} {'baseline s':>10} {'now s':>8} {'ratio':>6} {'baseline MB':>11} {'now MB':>7}")
        ratios = []
        for argv in subcommands():
            before, after = [], []
            for _ in range(args.runs):  # alternate, so drifting machine load hits both alike
                before.append(run_once(baseline, argv))
                after.append(run_once(REPO, argv))
            wall_b, wall_a = (statistics.median(w for w, _ in runs) for runs in (before, after))
            mem_b, mem_a = (statistics.median(m for _, m in runs) for runs in (before, after))
            ratios.append(wall_b / wall_a)
            name = " ".join(["vjepa-ac", *argv, "--help"]) if argv else "vjepa-ac --help"
            print(f"{name:<28} {wall_b:>10.2f} {wall_a:>8.2f} {wall_b / wall_a:>5.1f}x {mem_b:>11.0f} {mem_a:>7.0f}",
                  flush=True)
        print(f"median speed-up over {len(ratios)} commands: {statistics.median(ratios):.1f}x")


if __name__ == "__main__":
    main()
