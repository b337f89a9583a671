"""The floors hold: the engine knows nothing of HTTP, no package imports itself in a circle (type-only imports
included), and test modules share helpers through conftest files and helper modules, never through each other."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.import_graph import find_cycle, folders_without_init, import_graph

ROOT = Path(__file__).resolve().parents[1]
WEB_FRAMEWORKS = ("fastapi", "starlette")
GRAPH_PACKAGES = ("modelspec", "app")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> Iterator[str]:
    """Every module ``path`` imports, anywhere in the file (functions and ``if TYPE_CHECKING:`` blocks too);
    ``from package import name`` yields ``package.name`` as well, in case ``name`` is a module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                origin = ".".join([*base, node.module] if node.module else base)
            else:
                origin = node.module or ""
            yield origin
            yield from (f"{origin}.{alias.name}" for alias in node.names)


def sources(*packages: str) -> list[Path]:
    return sorted(path for package in packages for path in (ROOT / package).rglob("*.py"))


def test_the_engine_never_imports_a_web_framework() -> None:
    """Directly (any import statement in app/engine) ..."""
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sources("app/engine")
        for name in imported_modules(path)
        if name.split(".")[0] in WEB_FRAMEWORKS
    ]
    assert not offenders


def test_importing_the_engine_loads_no_web_framework() -> None:
    """... nor through what it imports (every engine module but the PyTorch backend, which needs torch)."""
    modules = [module_name(path) for path in sources("app/engine") if path.stem != "pytorch"]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {WEB_FRAMEWORKS!r}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


FLOORS = {
    "modelspec": ("app", "training"),
    "app/config.py": ("app.",),
    "app/engine": ("app.api", "app.batch", "app.main", "app.__main__"),
    "app/api": ("app.batch", "app.main", "app.__main__"),
    "app/batch": ("app.api", "app.main", "app.__main__"),
}
"""Where each floor must not reach: the floors above it (the faces do not lean on each other either)."""


@pytest.mark.parametrize("floor", list(FLOORS))
def test_each_floor_imports_only_the_floors_below(floor: str) -> None:
    forbidden = FLOORS[floor]
    paths = [ROOT / floor] if floor.endswith(".py") else sources(floor)
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in paths
        for name in imported_modules(path)
        if any(name == above.rstrip(".") or name.startswith(above.rstrip(".") + ".") for above in forbidden)
        and name != "app.config"
    ]
    assert not offenders


@pytest.mark.parametrize("package", GRAPH_PACKAGES)
def test_no_import_circle(package: str) -> None:
    graph = import_graph(ROOT, package)
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("package", GRAPH_PACKAGES)
def test_every_folder_is_a_package(package: str) -> None:
    missing = folders_without_init(ROOT, package)
    assert not missing, f"folders without __init__.py: {missing}"


def test_test_modules_never_import_each_other() -> None:
    """Shared helpers live in conftest.py files or helper modules, so a test module can move or go alone."""
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / "tests").rglob("*.py"))
        for name in imported_modules(path)
        if name.startswith("tests.") and name.rpartition(".")[2].startswith("test_")
    ]
    assert not offenders
