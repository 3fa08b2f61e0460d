"""Argument parsing and validation of `vjepa-ac demo` and `vjepa-ac eval`."""

import argparse

import pytest

from vjepa_ac.sim import TASK_NAMES as TASKS
from vjepa_ac.app import register, task_list


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vjepa-ac")
    register(parser.add_subparsers(dest="command"))
    return parser


def test_eval_defaults_and_options(tmp_path):
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"x")
    args = _parser().parse_args(
        ["eval", "--task", "reach,grasp", "--episodes", "5", "--seed", "3", "--out", str(tmp_path), "--checkpoint",
         str(ckpt), "--samples", "32", "--horizon", "2", "--open-loop-episodes", "0"]
    )
    assert args.tasks == ["reach", "grasp"] and args.episodes == 5 and args.seed == 3
    assert args.checkpoint == ckpt and args.samples == 32 and args.horizon == 2 and args.iterations is None
    assert args.open_loop_episodes == 0 and callable(args.handler)


def test_demo_defaults():
    args = _parser().parse_args(["demo"])
    assert args.tasks == ["reach", "pick_and_place"] and args.episodes == 3 and args.seed == 1000
    assert args.checkpoint is None
    assert not args.no_video


def test_task_list():
    assert task_list("all") == list(TASKS)
    assert task_list(" reach , pick_and_place ") == ["reach", "pick_and_place"]
    for bad in ("", "fly", "reach,fly"):
        with pytest.raises(argparse.ArgumentTypeError):
            task_list(bad)


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "--episodes", "-1"],
        ["eval", "--episodes", "two"],
        ["eval", "--task", "juggle"],
        ["eval", "--seed", "-1"],
        ["eval", "--checkpoint", "/no/such/file.pt"],
        ["demo", "--samples", "0"],
    ],
)
def test_bad_arguments_are_rejected(argv, capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(argv)
    assert "error" in capsys.readouterr().err


def test_help_shows_single_percent_signs():
    # `help=` strings are %-formatted (95%% prints 95%), descriptions are printed as written.
    parser = _parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    texts = [parser.format_help(), subparsers.choices["eval"].format_help()]
    assert all("95%%" not in text for text in texts)
    assert "95% CI" in texts[0] and "95% interval" in " ".join(texts[1].split())
