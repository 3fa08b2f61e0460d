"""The architecture as the imports show it: data flows one way, data < worldmodel < planner < application
(`vjepa_ac/`), with the simulator and the robot side beside the robot interface; no import cycles; and the robot-side
bridge process loads neither torch nor h5py.

Every import statement counts, also those inside functions (a lazy import is still a dependency); the module-level
ones (outside `if TYPE_CHECKING:`) must also form no cycle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import REPO_ROOT, free_port_base

LIBRARY = ("data", "worldmodel", "planner", "robot", "sim")
APPLICATION = "vjepa_ac"

ALLOWED: dict[str, set[str]] = {
    "data": {"data"},
    "worldmodel": {"data", "worldmodel"},
    # The planner drives any `robot.interface.Robot`; it knows nothing of the bridge, its client or the simulator.
    "planner": {"data", "worldmodel", "planner", "vjepa_ac.robot.interface"},
    "robot": {"data", "robot"},
    "sim": {"data", "robot", "sim"},
    APPLICATION: {"data", "worldmodel", "planner", "robot", "sim", APPLICATION},
}
"""Package -> what its modules may import (a package, or one module of it)."""


def _package_files() -> dict[str, Path]:
    """Module name -> file, for every module of the library packages and the application."""
    modules = {}
    for package in (*LIBRARY, APPLICATION):
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _project_name(name: str) -> str | None:
    """`name` without the installed namespace prefix (`vjepa_ac.robot.x` -> `robot.x`), None outside the project."""
    parts = name.split(".")
    if parts[0] == APPLICATION and len(parts) > 1 and parts[1] in LIBRARY:
        parts = parts[1:]
    return ".".join(parts) if parts[0] in (*LIBRARY, APPLICATION) else None


def _imports(module: str, path: Path) -> list[tuple[str, int, bool]]:
    """(imported project module, line, at module level outside TYPE_CHECKING) of every import statement."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for sub in child.body:
                    visit_node(sub, False)
                for sub in child.orelse:
                    visit_node(sub, top)
                continue
            visit_node(child, top)

    def visit_node(child: ast.AST, top: bool) -> None:
        names: list[str] = []
        if isinstance(child, ast.Import):
            names = [alias.name for alias in child.names]
        elif isinstance(child, ast.ImportFrom):
            base = child.module or ""
            if child.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (child.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from package import name` may name a submodule: count the submodule when it is one.
            names = [f"{base}.{alias.name}" if _project_name(f"{base}.{alias.name}") in _MODULES else base
                     for alias in child.names]
        for name in names:
            target = _project_name(name)
            if target is not None:
                found.append((target, child.lineno, top))
        # A function's body runs later; a class body runs at import like the module's.
        visit(child, top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, True)
    return found


_MODULES = _package_files()


def _allowed(importer: str, target: str) -> bool:
    importer, target = _project_name(importer), _project_name(target)
    rules = {_project_name(rule) for rule in ALLOWED[importer.split(".")[0]]}
    return any(target == rule or target.startswith(rule + ".") for rule in rules)


def test_no_import_climbs_a_layer():
    violations = [
        f"{path.relative_to(REPO_ROOT)}:{line}: {module} imports {target}"
        for module, path in _MODULES.items()
        for target, line, _ in _imports(module, path)
        if not _allowed(module, target)
    ]
    assert not violations, "\n".join(violations)


def test_the_rules_are_checked_against_real_imports():
    """The parser sees the imports this test is about, so an empty violation list means something."""
    seen = {(module, target) for module, path in _MODULES.items() for target, _, _ in _imports(module, path)}
    pairs = [
        ("vjepa_ac.planner.mpc", "vjepa_ac.robot.interface"),
        ("vjepa_ac.control", "vjepa_ac.robot.client"),  # a lazy import inside a function
        ("vjepa_ac.sim.robot", "vjepa_ac.robot.kinematics"),
    ]
    assert all((_project_name(a), _project_name(b)) in seen for a, b in pairs)
    assert not _allowed("vjepa_ac.planner.mpc", "vjepa_ac.robot.client")
    assert not _allowed("vjepa_ac.robot.kinematics", "sim")
    assert not _allowed("vjepa_ac.data.droid.poses", "worldmodel")
    assert not _allowed("vjepa_ac.sim.tasks", "vjepa_ac.episode")


def test_no_import_cycles():
    graph: dict[str, set[str]] = {module: set() for module in _MODULES}
    for module, path in _MODULES.items():
        for target, _, top in _imports(module, path):
            if top and target in graph and target != module:
                graph[module].add(target)
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    def walk(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                walk(nxt, [*stack, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_bridge_process_loads_neither_torch_nor_h5py():
    """The `vjepa-ac bridge run` path for a real arm: the command line, the bridge with its safety filter and
    kinematics, the real arms' backend modules, one tick and a status request over loopback."""
    base = free_port_base()
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        from vjepa_ac.cli import build_parser
        build_parser()
        from vjepa_ac.robot.backends import libfranka, ros1, ros2
        from vjepa_ac.robot.backends.base import ArmState, Backend
        from vjepa_ac.robot.bridge import Bridge
        from vjepa_ac.robot.config import BridgeConfig, LinkConfig
        from vjepa_ac.robot.kinematics import DROID_HOME_Q

        class StillArm(Backend):
            name = "still"
            def read_state(self):
                return ArmState(q=DROID_HOME_Q.copy(), dq=np.zeros(7), gripper=0.0, robot_t_s=0.0)
            def command_joints(self, q, dq): pass
            def set_gripper(self, position): pass
            def stop(self, q_hold): pass

        bridge = Bridge(BridgeConfig(link=LinkConfig().with_port_base({base}), camera_hz=0), StillArm())
        bridge.start()
        try:
            bridge.step()
            assert bridge.rpc("status", {{}})["watchdog"] == "IDLE"
        finally:
            bridge.close()
        print(sorted(m for m in ("torch", "h5py") if m in sys.modules))
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_one_import_namespace():
    """Every project import goes through the installed `vjepa_ac` namespace (no top-level `data`, `robot`, ...), and
    pyproject.toml installs every package folder there."""
    import tomllib

    bare = [f"{path.relative_to(REPO_ROOT)}:{line}: {name}"
            for module, path in _MODULES.items() for name, line in _raw_imports(path)
            if name.split(".")[0] in LIBRARY]
    assert not bare, "\n".join(bare)
    setup = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {_installed_name(path) for path in _MODULES.values() if path.name == "__init__.py"}
    assert set(setup["packages"]) == folders
    assert all(name.split(".")[0] == APPLICATION for name in setup["packages"])


def _installed_name(init: Path) -> str:
    parts = init.parent.relative_to(REPO_ROOT).parts
    return ".".join(parts if parts[0] == APPLICATION else (APPLICATION, *parts))


def _raw_imports(path: Path) -> list[tuple[str, int]]:
    """(module name as written, line) of every absolute import statement."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.append((node.module, node.lineno))
    return names
