"""Robot-facing code: the robot interface the planner talks to (`Robot`, `Observation`, `ActionResult`), the ZMQ bridge
to a Franka arm (`robot.bridge`, run by `vjepa-ac bridge`) with its safety filter, watchdog and arm backends, the
workstation's bridge client, cameras, action repeat and DROID recording.

The bridge side imports neither torch nor h5py; the simulated arm and its bridge backend are the simulator's (`sim`).
"""

from __future__ import annotations

from vjepa_ac.data.lazy_exports import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    ".interface": ("ActionResult", "ActionStatus", "Observation", "Robot"),
    ".client": ("BridgeClient", "BridgeError", "ClientConfig"),
})
