"""The planner tests' tiny world model, for the application's plan / run / calibrate commands (test_control.py)."""

from tests.planner.conftest import tiny_world_model  # noqa: F401  (a fixture: pytest finds it by name)
