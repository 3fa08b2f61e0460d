"""Choosing the number of torch CPU threads by measurement.

On a machine whose cores are shared with other jobs, more threads can be slower (a plan on a loaded 2-core machine
took 5.4 s with 2 threads and 1.3 s with 1), and the best count depends on the model size. `choose_threads` times a
probe (a small rollout of the actual model) at each candidate count and keeps the fastest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

log = logging.getLogger(__name__)


@dataclass
class ThreadChoice:
    """The thread count chosen and the probe's best wall time at each count tried."""

    threads: int
    seconds: dict[int, float] = field(default_factory=dict)

    def describe(self) -> str:
        tried = ", ".join(f"{n}: {s * 1e3:.0f} ms" for n, s in sorted(self.seconds.items()))
        return f"{self.threads} torch thread(s), chosen by measurement ({tried})" if tried else (
            f"{self.threads} torch thread(s) (only one candidate)")


_LAST: list[ThreadChoice] = []


def last_choice() -> ThreadChoice | None:
    """The most recent measured choice in this process (for run reports), or None if none was measured."""
    return _LAST[-1] if _LAST else None


def choose_threads(probe: Callable[[], object], candidates: Sequence[int] | None = None, repeats: int = 2) -> ThreadChoice:
    """Run `probe` at each thread count in `candidates` (default 1 .. torch's current count), best of `repeats` after
    one warm-up call, and leave torch set to the fastest. Ties within 5% go to fewer threads (less exposed to load)."""
    counts = sorted(set(candidates or range(1, torch.get_num_threads() + 1)))
    if not counts or counts[0] < 1:
        raise ValueError(f"thread counts must be >= 1, got {list(candidates or [])}")
    if len(counts) == 1:
        torch.set_num_threads(counts[0])
        return ThreadChoice(counts[0])
    seconds = {}
    for count in counts:
        torch.set_num_threads(count)
        probe()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            probe()
            times.append(time.perf_counter() - start)
        seconds[count] = min(times)
    fastest = min(seconds.values())
    best = min(n for n, s in seconds.items() if s <= 1.05 * fastest)
    torch.set_num_threads(best)
    choice = ThreadChoice(best, seconds)
    _LAST[:] = [choice]
    log.info("planning with %s", choice.describe())
    return choice
