"""Suite-wide settings. Package-specific fixtures live in the conftest.py of each test folder."""

import os
from pathlib import Path

# Offscreen MuJoCo rendering on machines without a display; EGL works on a plain CPU-only Debian machine.
os.environ.setdefault("MUJOCO_GL", "egl")

REPO_ROOT = Path(__file__).resolve().parents[1]
