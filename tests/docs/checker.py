"""Docs that cannot drift: run the examples the docs mark, and compare what they print with what the docs show.

The markup (also in docs/development.md, "Docs that are tested"). An HTML comment right before a fenced block marks
it; readers of the rendered page never see it::

    <!-- doc-test -->
    ```console
    $ curl -F file=@chelsea.jpg 'localhost:8000/v1/predict?top_k=3'
    {"model":{"name":"efficientnet-lite0","version":1},"results":[...]}
    ```

- A ``console`` block: each ``$ `` line is a command (a line ending in ``\\`` goes on with the next); the lines up to
  the next ``$ `` are what it prints. A ``sh`` block: every line is a command (``#`` lines are comments) and each
  must succeed. Unmarked blocks are not run: use them for commands that need what a test cannot have (Docker,
  Fashion-MNIST, a GPU) and for numbers that depend on the machine, and say "for example" in the prose.
- Commands run with bash in a scratch folder that holds ``chelsea.jpg`` and ``coffee.jpg``, with the virtual
  environment's ``bin`` first on the PATH (as after ``. .venv/bin/activate``), against a live service that serves
  the default model from ``models/`` there; ``localhost:8000`` is rewritten to that service. Each command exits 0,
  and a ``curl`` answers 2xx unless the line ends with a comment ``# HTTP 415`` (the status it documents).
- Output that is JSON is compared as JSON: the same field names, the same strings, integers, booleans and nulls,
  and any number where the docs show a decimal (scores differ by a few ulps between machines). ``...`` where a value
  goes matches any value, as the last item of a list any further items, and before a ``}`` any further fields; a
  string ending in ``...`` matches any string it begins (``"96bcd511..."``). Other output is compared line by line,
  every number matching any number; each line shown must appear, in order (lines the docs leave out are allowed).
- ``<!-- doc-test skip="make install; make run" -->``: commands starting with one of these (``;``-separated) are
  not run, because the test provides what they do (the environment, the service). ``cwd="fresh"``: the block runs
  in an empty folder of its own (for examples that must not see what earlier ones wrote, such as a first
  ``models/digits/1``); the service is the same.
- Blocks run in file order, README.md first, then docs/*.md by name; a block may use what earlier ones made.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MARK = re.compile(r"^<!--\s*doc-test(?P<options>(?:\s+\w+=\"[^\"]*\")*)\s*-->\s*$")
OPTION = re.compile(r"(\w+)=\"([^\"]*)\"")
FENCE = re.compile(r"^```(?P<lang>\w*)\s*$")
STATUS_COMMENT = re.compile(r"#\s*HTTP\s+(\d{3})\b")
ELLIPSIS = "\u2026doc-test-any"
SKIP_LINE = re.compile(r"[|\s]*\.\.\.[|\s]*")  # "..." (or "| ... |" in a table): lines left out here
NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?%?", re.IGNORECASE)


@dataclass(frozen=True)
class Step:
    """One command and what the docs show it prints (None: nothing shown, only success is checked)."""

    command: str
    expected: str | None
    line: int


@dataclass(frozen=True)
class Block:
    source: Path
    line: int  # of the opening fence, 1-based
    lang: str
    steps: tuple[Step, ...]
    skip: tuple[str, ...] = ()
    fresh: bool = False  # run in an empty folder of its own, not the shared one

    @property
    def where(self) -> str:
        return f"{self.source.name}:{self.line}"


@dataclass
class Outcome:
    problems: list[str] = field(default_factory=list)


def find_blocks(path: Path) -> list[Block]:
    """The marked blocks of a Markdown file, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    for number, text in enumerate(lines):
        mark = MARK.match(text.strip())
        if not mark:
            continue
        options = dict(OPTION.findall(mark["options"] or ""))
        fence = FENCE.match(lines[number + 1]) if number + 1 < len(lines) else None
        if fence is None:
            raise ValueError(f"{path.name}:{number + 1}: a doc-test mark must be followed by a fenced block")
        end = next(i for i in range(number + 2, len(lines)) if lines[i].strip() == "```")
        body = lines[number + 2 : end]
        skip = tuple(s.strip() for s in options.get("skip", "").split(";") if s.strip())
        steps = _console_steps(body, number + 3) if fence["lang"] == "console" else _sh_steps(body, number + 3)
        fresh = options.get("cwd") == "fresh"
        blocks.append(Block(path, number + 2, fence["lang"], tuple(steps), skip, fresh))
    return blocks


def _joined(lines: list[str], start: int) -> tuple[str, int]:
    """The command starting at ``start``, continuation lines (ending in a backslash) joined, and the index after it."""
    i = start
    command = lines[i]
    while command.endswith("\\") and i + 1 < len(lines):
        i += 1
        command = command[:-1] + " " + lines[i].strip()
    return command, i + 1


def _sh_steps(body: list[str], first_line: int) -> list[Step]:
    steps: list[Step] = []
    i = 0
    while i < len(body):
        if not body[i].strip() or body[i].lstrip().startswith("#"):
            i += 1
            continue
        command, after = _joined(body, i)
        steps.append(Step(command.strip(), None, first_line + i))
        i = after
    return steps


def _console_steps(body: list[str], first_line: int) -> list[Step]:
    steps: list[Step] = []
    i = 0
    while i < len(body):
        if not body[i].startswith("$ "):
            raise ValueError(f"line {first_line + i}: a console block starts each command with '$ '")
        command, after = _joined([body[i][2:], *body[i + 1 :]], 0)
        i += after
        output: list[str] = []
        while i < len(body) and not body[i].startswith("$ "):
            output.append(body[i])
            i += 1
        text = "\n".join(output).strip()
        steps.append(Step(command.strip(), text or None, first_line + i))
    return steps


# --- running ------------------------------------------------------------------------------------------------------


def expected_status(command: str) -> int | None:
    found = STATUS_COMMENT.search(command)
    return int(found[1]) if found else None


def prepared(command: str, url: str) -> tuple[str, bool]:
    """The command as the test runs it, and whether it reports curl's status on its last line."""
    command = command.replace("http://localhost:8000", url).replace("localhost:8000", url)
    words = shlex.split(command, comments=True) if "|" not in command and ">" not in command else []
    if words[:1] == ["curl"]:
        return f"curl -sS -w '\\n%{{http_code}}' {command[len('curl ') :]}", True
    return command, False


def run_step(step: Step, *, url: str, cwd: Path, env: Mapping[str, str], timeout: float = 600) -> list[str]:
    """Run one step; the problems found (empty: it does what the docs say)."""
    command, with_status = prepared(step.command, url)
    # A curl's body alone on stdout (its status follows); other commands as a terminal shows them, logs included.
    done = subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if with_status else subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    where = f"`{step.command}`"
    if done.returncode != 0:
        return [f"{where} exited with {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr or ''}"]
    stdout = done.stdout
    problems: list[str] = []
    if with_status:
        stdout, _, status_text = stdout.rpartition("\n")
        status, wanted = int(status_text), expected_status(step.command)
        if (wanted is None and not 200 <= status < 300) or (wanted is not None and status != wanted):
            problems.append(f"{where} answered HTTP {status}, the docs say {wanted or '2xx'}: {stdout[:500]}")
    if step.expected is not None:
        problems += compare(step.expected, stdout, where)
    return problems


# --- comparing ----------------------------------------------------------------------------------------------------


def compare(expected: str, actual: str, where: str = "output") -> list[str]:
    """What differs between the documented output and the real one (empty: they match)."""
    shown = parse_documented_json(expected)
    if shown is not None:
        try:
            real = json.loads(actual)
        except ValueError:
            return [f"{where}: the docs show JSON, the command printed {actual[:300]!r}"]
        return [f"{where}: {problem}" for problem in compare_json(shown, real, "$")]
    return [f"{where}: {problem}" for problem in compare_text(expected, actual)]


def parse_documented_json(text: str) -> Any | None:
    """The documented JSON with each ``...`` outside strings turned into a marker; None if it is not JSON."""
    if not text.lstrip().startswith(("{", "[")):
        return None
    out: list[str] = []
    i, in_string = 0, False
    while i < len(text):
        char = text[i]
        if in_string:
            out.append(char)
            if char == "\\":
                out.append(text[i + 1])
                i += 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
            out.append(char)
        elif text.startswith("...", i):
            rest = text[i + 3 :].lstrip()
            out.append(f'"{ELLIPSIS}":null' if rest.startswith("}") else f'"{ELLIPSIS}"')
            i += 2
        else:
            out.append(char)
        i += 1
    try:
        return json.loads("".join(out))
    except ValueError:
        return None


def compare_json(shown: Any, real: Any, path: str) -> list[str]:
    if shown == ELLIPSIS:
        return []
    if isinstance(shown, dict):
        return _compare_dicts(shown, real, path)
    if isinstance(shown, list):
        return _compare_lists(shown, real, path)
    if isinstance(shown, float):
        ok = isinstance(real, int | float) and not isinstance(real, bool)
        return [] if ok else [f"{path}: the docs show a number, the service gave {real!r}"]
    if isinstance(shown, str) and shown.endswith("...") and isinstance(real, str):
        prefix = shown[:-3]
        return [] if real.startswith(prefix) else [f"{path}: the docs show {shown!r}, the service gave {real!r}"]
    if type(shown) is not type(real) or shown != real:
        return [f"{path}: the docs show {shown!r}, the service gave {real!r}"]
    return []


def _compare_dicts(shown: dict[str, Any], real: Any, path: str) -> list[str]:
    if not isinstance(real, dict):
        return [f"{path}: the docs show an object, the service gave {real!r}"]
    open_ended = ELLIPSIS in shown
    shown = {key: value for key, value in shown.items() if key != ELLIPSIS}
    problems = [f"{path}: the docs show field {key!r}, the service gave none" for key in shown if key not in real]
    if not open_ended:
        problems += [
            f"{path}: the service gave field {key!r}, the docs do not show it" for key in real if key not in shown
        ]
    for key, value in shown.items():
        if key in real:
            problems += compare_json(value, real[key], f"{path}.{key}")
    return problems


def _compare_lists(shown: list[Any], real: Any, path: str) -> list[str]:
    if not isinstance(real, list):
        return [f"{path}: the docs show a list, the service gave {real!r}"]
    open_ended = bool(shown) and shown[-1] == ELLIPSIS
    items = shown[:-1] if open_ended else shown
    if len(real) < len(items) or (not open_ended and len(real) != len(items)):
        return [
            f"{path}: the docs show {len(items)} items{' or more' if open_ended else ''}, the service gave {len(real)}"
        ]
    problems: list[str] = []
    for index, item in enumerate(items):
        problems += compare_json(item, real[index], f"{path}[{index}]")
    return problems


def _line_pattern(line: str) -> re.Pattern[str]:
    """A documented line as a pattern: any number where it shows a number, any spacing where it shows spaces."""
    parts = []
    last = 0
    for found in NUMBER.finditer(line):
        parts.append(re.escape(line[last : found.start()]))
        parts.append(r"[-+]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?%?")
        last = found.end()
    parts.append(re.escape(line[last:]))
    return re.compile(r"\s+".join("".join(parts).split(r"\ ")).strip())


def compare_text(expected: str, actual: str) -> list[str]:
    real = [line.strip() for line in actual.splitlines() if line.strip()]
    position = 0
    for line in (line.strip() for line in expected.splitlines()):
        if not line or SKIP_LINE.fullmatch(line):
            continue
        pattern = _line_pattern(line)
        while position < len(real) and not pattern.fullmatch(real[position]):
            position += 1
        if position == len(real):
            return [
                f"the docs show the line {line!r}, which the command did not print in that order:\n{actual[-3000:]}"
            ]
        position += 1
    return []
