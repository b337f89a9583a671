"""The import graph of ``training/`` has no circle, counting every import: at the top, inside functions, and the
type-only ones under ``if TYPE_CHECKING:`` (a circle there still ties two modules into one room)."""

from __future__ import annotations

from pathlib import Path

from tests.import_graph import find_cycle, folders_without_init, import_graph

ROOT = Path(__file__).resolve().parents[2]


def test_training_imports_have_no_cycle() -> None:
    graph = import_graph(ROOT, "training")
    assert "training.engine.trainer" in graph["training.fit"]  # the graph sees the package's real imports
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_a_type_only_circle_is_found(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.sub import b\n")
    (package / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..a import thing\n"
    )
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.a"] == {"pkg.sub.b"}
    assert graph["pkg.sub.b"] == {"pkg.a"}
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.a"]
    (package / "sub" / "b.py").write_text("import pkg.sub\n")
    assert find_cycle(import_graph(tmp_path, "pkg")) is None


def test_every_folder_of_training_is_a_package() -> None:
    """A folder without ``__init__.py`` still imports here (a namespace package) but is left out of the wheel."""
    missing = folders_without_init(ROOT, "training")
    assert not missing, f"folders without __init__.py: {missing}"
