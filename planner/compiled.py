"""`torch.compile` of the predictor's incremental step, with a fallback to eager where compilation is unavailable.

Compiling fuses the memory-bound work of a step (RoPE on queries and keys, bias + GELU, layer norms, the residual
adds) into a few generated kernels. Compilation needs a C++ compiler on CPU (Triton on CUDA) and takes tens of seconds
on the first call; any failure there is logged once and the step runs eagerly, so planning never depends on it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)


class _CompiledStep:
    """Calls a compiled `ACPredictor.step`; on the first failure logs why and uses the eager step from then on."""

    def __init__(self, predictor: torch.nn.Module) -> None:
        self.eager = predictor.step
        self.compiled: Callable | None = torch.compile(predictor.step, dynamic=False)
        self.failure: str | None = None

    def __call__(self, *args, **kwargs):
        if self.compiled is not None:
            try:
                return self.compiled(*args, **kwargs)
            except (ValueError, TypeError):
                raise  # bad input: the eager step would refuse it too
            except Exception as exc:  # noqa: BLE001 - any backend failure (no compiler, unsupported op) means: run eager
                self.failure = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                log.warning("torch.compile of the predictor step failed (%s); running it eagerly", self.failure)
                self.compiled = None
        return self.eager(*args, **kwargs)

    @property
    def is_compiled(self) -> bool:
        return self.compiled is not None


_COMPILED: dict[int, _CompiledStep] = {}


def compiled_step(predictor: torch.nn.Module) -> _CompiledStep:
    """The compiled step of `predictor`, shared by every rollout over it (so each shape compiles once per process)."""
    key = id(predictor)
    entry = _COMPILED.get(key)
    if entry is None or entry.eager.__self__ is not predictor:
        entry = _COMPILED[key] = _CompiledStep(predictor)
    return entry
