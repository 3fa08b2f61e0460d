"""Thread choice by measurement."""

import time

import pytest
import torch

from vjepa_ac.planner.threads import choose_threads, last_choice


def test_the_fastest_count_wins_and_ties_go_to_fewer_threads():
    before = torch.get_num_threads()
    delays = {1: 0.02, 2: 0.002, 3: 0.0021}

    def probe():
        time.sleep(delays[torch.get_num_threads()])

    try:
        choice = choose_threads(probe, candidates=[1, 2, 3], repeats=1)
        assert torch.get_num_threads() == choice.threads
        assert choice.threads in (2, 3) and set(choice.seconds) == {1, 2, 3}
        assert "chosen by measurement" in choice.describe() and last_choice() is choice
        assert choose_threads(probe, candidates=[1]).seconds == {}  # nothing to measure
        with pytest.raises(ValueError):
            choose_threads(probe, candidates=[0, 1])
    finally:
        torch.set_num_threads(before)
