"""The bottom layer: the conventions every layer shares (`data.conventions`: DROID state and action layout, Euler
angles, headless rendering), the lazy-export helper of every package's `__init__`, and the DROID dataset (`data.droid`).
"""

from __future__ import annotations

from vjepa_ac.data.lazy_exports import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    ".conventions": ("ACTION_DIM", "STATE_DIM", "euler_xyz_to_matrix", "matrix_to_euler_xyz", "use_headless_rendering"),
})
