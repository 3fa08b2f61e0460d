"""The embedded default world model: a tiny V-JEPA-architecture encoder (frozen) and an action-conditioned predictor
trained on MuJoCo sim episodes in DROID format, small enough to plan on a laptop CPU.

`recipes/default_model.sh` rebuilds it; `vjepa-ac-sim-tiny.json` beside the checkpoint records how it was made and the
planner and camera settings it was evaluated with.
"""

from pathlib import Path

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent
DEFAULT_CHECKPOINT = DEFAULT_MODEL_DIR / "vjepa-ac-sim-tiny.pt"
