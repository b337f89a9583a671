"""Every example the docs mark with ``<!-- doc-test -->`` runs against the real service, and prints what the docs
show (the markup: tests/docs/checker.py and docs/development.md). README's quick start comes first: it trains the
digits model that later examples use."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.docs.checker import Block, find_blocks, run_step
from tests.docs.conftest import ROOT, DocsWorld

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = [block for path in DOCS for block in find_blocks(path)]

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_readme_quick_start_is_checked() -> None:
    quick_start = [block for block in BLOCKS if block.source.name == "README.md"]
    commands = [step.command for block in quick_start for step in block.steps]
    assert any(command.startswith("imgclf-train fit") for command in commands), commands
    assert any("/v1/models/digits/predict" in command for command in commands), commands


@pytest.mark.parametrize("block", BLOCKS, ids=[block.where for block in BLOCKS])
def test_documented_example(block: Block, docs_world: DocsWorld, tmp_path: Path) -> None:
    cwd = tmp_path if block.fresh else docs_world.cwd
    problems: list[str] = []
    for step in block.steps:
        if step.command.startswith(block.skip) and block.skip:
            continue
        problems += run_step(step, url=docs_world.url, cwd=cwd, env=docs_world.env)
        if problems:
            break  # the next commands depend on this one
    assert not problems, f"{block.where}: the docs no longer match the program:\n" + "\n".join(problems)


def test_every_doc_file_parses(tmp_path: Path) -> None:
    """A mark without a block, or a console block without prompts, is an error, not a silently skipped example."""
    assert BLOCKS, "no doc-test blocks found"
    broken = tmp_path / "broken.md"
    broken.write_text("<!-- doc-test -->\nno fence here\n")
    with pytest.raises(ValueError, match="must be followed by a fenced block"):
        find_blocks(broken)


def test_a_deliberately_changed_readme_example_fails(docs_world: DocsWorld) -> None:
    """The README's first prediction, with one label changed, against the real service: the test would fail."""
    shown = next(block for block in BLOCKS if block.source.name == "README.md" and block.lang == "console")
    step = shown.steps[0]
    assert step.expected is not None and '"tiger cat"' in step.expected
    changed = dataclasses.replace(step, expected=step.expected.replace('"tiger cat"', '"lynx"'))
    problems = run_step(changed, url=docs_world.url, cwd=docs_world.cwd, env=docs_world.env)
    assert problems and "the docs show 'lynx', the service gave 'tiger cat'" in problems[0], problems
