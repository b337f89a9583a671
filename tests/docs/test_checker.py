"""The docs checker fails when the docs and the program disagree: fed a deliberately changed example, it says what
changed (status, field name, label), and it accepts what the markup allows (numbers, ``...``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.docs.checker import compare, find_blocks, run_step

REAL = (
    '{"model":{"name":"efficientnet-lite0","version":1},"results":[{"file":"coffee.jpg","predictions":['
    '{"label":"espresso","index":967,"score":0.9041591286659241},'
    '{"label":"consomme","index":925,"score":0.033859096467494965}]}]}'
)
DOCUMENTED = """{"model":{"name":"efficientnet-lite0","version":1},"results":[
  {"file":"coffee.jpg","predictions":[{"label":"espresso","index":967,"score":0.90415912},...]}]}"""


def test_the_documented_answer_matches_with_other_scores_and_elided_items() -> None:
    assert compare(DOCUMENTED, REAL) == []


@pytest.mark.parametrize(
    ("changed", "reported"),
    [
        (DOCUMENTED.replace('"espresso"', '"cappuccino"'), "'cappuccino'"),  # a label
        (DOCUMENTED.replace('"score"', '"probability"'), "field 'probability'"),  # a field name
        (DOCUMENTED.replace('"version":1', '"version":2'), "$.model.version"),  # a count shown as output
        (DOCUMENTED.replace('"model":{', '"model":{"backend":"onnx",'), "field 'backend'"),  # a field that went
    ],
    ids=["label", "field-name", "integer", "missing-field"],
)
def test_a_changed_example_is_reported(changed: str, reported: str) -> None:
    problems = compare(changed, REAL)
    assert problems and reported in problems[0], problems


def test_a_new_field_the_docs_do_not_show_is_reported() -> None:
    with_more = REAL.replace('"version":1}', '"version":1,"backend":"onnx"}')
    assert "the service gave field 'backend'" in compare(DOCUMENTED, with_more)[0]
    assert compare(DOCUMENTED.replace('"version":1}', '"version":1,...}'), with_more) == []


def test_text_output_matches_line_by_line_with_any_numbers() -> None:
    real = "2026-12-06 INFO loading\n1,000 images in 75.0 s: 13.3 img/s\npredicted: 1,000; errors: 0\noutput: a.csv\n"
    assert compare("3 images in 0.4 s: 6.8 img/s\noutput: a.csv", real) == []
    problems = compare("3 images in 0.4 s: 6.8 img/s\nwritten: a.csv", real)
    assert problems and "'written: a.csv'" in problems[0]


def run(tmp_path: Path, markdown: str) -> list[str]:
    doc = tmp_path / "doc.md"
    doc.write_text(markdown)
    env = dict(os.environ)
    return [
        problem
        for block in find_blocks(doc)
        for step in block.steps
        for problem in run_step(step, url="x", cwd=tmp_path, env=env)
    ]


def test_a_command_is_run_and_its_real_output_compared(tmp_path: Path) -> None:
    good = '<!-- doc-test -->\n```console\n$ echo \'{"status":"ready","n":3}\'\n{"status":"ready","n":3}\n```\n'
    assert run(tmp_path, good) == []
    drifted = good.replace('"ready","n":3}\n```', '"alive","n":3}\n```')
    assert "the docs show 'alive', the service gave 'ready'" in run(tmp_path, drifted)[0]


def test_a_failing_command_fails_the_example(tmp_path: Path) -> None:
    problems = run(tmp_path, "<!-- doc-test -->\n```sh\n# a comment\nfalse\n```\n")
    assert problems and "`false` exited with 1" in problems[0]


def test_a_curl_status_is_checked(tmp_path: Path) -> None:
    """curl reports the status the test compares with ``# HTTP nnn`` (2xx without one)."""
    (tmp_path / "answer.json").write_text('{"error":{"code":"x"}}')
    url = f"file://{tmp_path}/answer.json"
    # file:// URLs give status 0 in curl's %{http_code}: not 2xx, and not the 415 documented here.
    problems = run(
        tmp_path, f'<!-- doc-test -->\n```console\n$ curl {url}   # HTTP 415\n{{"error":{{"code":"x"}}}}\n```\n'
    )
    assert problems and "answered HTTP 0, the docs say 415" in problems[0]
    problems = run(tmp_path, f"<!-- doc-test -->\n```sh\ncurl {url}\n```\n")
    assert problems and "the docs say 2xx" in problems[0]
