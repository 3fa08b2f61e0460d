"""Lazy package exports: a package names its public API once and imports each name's module on first use, so that
importing the package (e.g. for `vjepa-ac --help`) does not load torch, h5py or MuJoCo."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_getattr(package: str, exports: Mapping[str, str]) -> Callable[[str], object]:
    """A module `__getattr__` (PEP 562) for `package` that resolves `exports` (public name -> defining module)."""

    def __getattr__(name: str) -> object:
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
