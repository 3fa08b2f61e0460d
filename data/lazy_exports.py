"""Lazy package exports, the one style of every package's `__init__`: a package names its public API once, module by
module, and imports each module on first use of one of its names, so that importing the package (e.g. for
`vjepa-ac --help`, or in the robot-side bridge process) does not load torch, h5py or MuJoCo::

    __all__, __getattr__ = lazy_exports(__name__, {
        ".cem": ("CEMConfig", "CEMPlanner"),
        ".mpc": ("MPCConfig", "run_mpc"),
    })

Module names are relative to the package, so the table holds whatever the package is installed as.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping


def lazy_exports(package: str, modules: Mapping[str, Iterable[str]],
                 defined: Iterable[str] = ()) -> tuple[list[str], Callable[[str], object]]:
    """(`__all__`, module `__getattr__` (PEP 562)) of `package` exporting `modules` (relative module name -> public
    names it defines) and the names `defined` in the package's `__init__` itself."""
    owner = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> object:
        if name in owner:
            return getattr(importlib.import_module(owner[name], package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return sorted([*owner, *defined]), __getattr__
