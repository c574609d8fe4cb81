"""The documentation's example commands, executed so they cannot rot.

Fenced blocks marked ```console in README.md and docs/*.md hold commands (lines starting
with ``$ ``); each page's commands run in order in a fresh folder holding ``example/``, a
small simulated tomogram, and ``bad_inputs/`` (the malformed-file corpus of
tests/data/bad_inputs), and must exit 0. Blocks marked ```console-error hold commands that
must fail as bad input (exit 2) with the error lines shown under them on stderr, so the
troubleshooting page quotes the real messages. The convention is documented in
docs/getting_started.md ("Executed examples").
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
MARKER = "console"
ERROR_MARKER = "console-error"
BAD_INPUTS = REPO / "tests" / "data" / "bad_inputs"
# The exit status of bad input (README: "Bad input is one line on stderr ..., exit status 2").
BAD_INPUT_STATUS = 2
# The example every page may use, made with the command the convention documents.
EXAMPLE_COMMAND = "cryovis simulate --out example --n 1 --size 64x64x32 --seed 7"
# Commands the executed examples must keep covering (a page losing its marker fails here).
REQUIRED = {"info", "convert", "simulate", "segment", "pick", "evaluate", "render", "extract"}
API_PAGE = REPO / "docs" / "api.md"
# A signature heading of the API page: ### `dotted.name(parameters)`
SIGNATURE = re.compile(r"^### `([\w.]+)\((.*)\)`\s*$")


@dataclass
class Example:
    """One ``$ `` command of an executed block: its 1-based line, the command, whether it
    must fail as bad input (a ```console-error block) and the lines shown under it."""

    line: int
    command: str
    fails: bool
    shown: list[str] = field(default_factory=list)


def examples(text: str) -> list[Example]:
    """Every ``$ `` command of the ```console and ```console-error blocks of ``text``, with
    the output lines shown under it (a trailing ``\\`` continues a command)."""
    found: list[Example] = []
    block, pending, start, last = None, None, 0, None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("```"):
            if block is not None and pending is not None:
                raise ValueError(f"line {start}: a continued command runs into the block's end")
            info = stripped[3:].strip()
            block = info if block is None and info in (MARKER, ERROR_MARKER) else None
            last = None
            continue
        if block is None:
            continue
        if pending is not None:
            pending += " " + stripped.rstrip("\\").strip()
        elif stripped.startswith("$ "):
            pending, start = stripped[2:].rstrip("\\").strip(), number
        else:
            if stripped and last is not None:
                last.shown.append(stripped)
            continue
        if not stripped.endswith("\\"):
            last = Example(start, pending, block == ERROR_MARKER)
            found.append(last)
            pending = None
    return found


def console_commands(text: str) -> list[tuple[int, str]]:
    """``(line number, command)`` of every ``$ `` line in the ```console blocks of
    ``text`` (1-based line of the command's first line; trailing ``\\`` continues it)."""
    return [(e.line, e.command) for e in examples(text) if not e.fails]


def _page_examples() -> dict[str, list[Example]]:
    found = {}
    for page in PAGES:
        page_examples = examples(page.read_text(encoding="utf-8"))
        if page_examples:
            found[str(page.relative_to(REPO))] = page_examples
    return found


PAGE_EXAMPLES = _page_examples()


def _cryovis(command: str, cwd: Path) -> subprocess.CompletedProcess:
    words = shlex.split(command)
    if not words or words[0] != "cryovis":
        raise AssertionError(f"{command!r}: executed examples must be cryovis commands")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "cryoet_integration.cli", *words[1:]],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="session")
def example(tmp_path_factory) -> Path:
    """A folder holding ``example/``, made by the documented ``cryovis simulate`` command."""
    root = tmp_path_factory.mktemp("docs_example")
    proc = _cryovis(EXAMPLE_COMMAND, root)
    assert proc.returncode == 0, proc.stderr
    return root / "example"


def test_console_blocks_are_parsed_as_documented():
    text = "\n".join([
        "```console", "$ cryovis info a.mrc", "a.mrc: 10 x 10 x 10", "$ cryovis convert \\",
        "    a.star b.tbl --to dynamo", "```", "```", "$ cryovis not run", "```",
        "```sh", "$ cryovis neither", "```", "    $ cryovis nor this", "```console",
        "$ cryovis info b.tbl", "```"])
    assert console_commands(text) == [(2, "cryovis info a.mrc"),
                                      (4, "cryovis convert a.star b.tbl --to dynamo"),
                                      (15, "cryovis info b.tbl")]
    with pytest.raises(ValueError, match="line 2"):
        console_commands("```console\n$ cryovis info \\\n```\n")


def test_error_blocks_keep_the_lines_shown_under_each_command():
    text = "\n".join([
        "```console-error", "$ cryovis info missing.mrc", "cryovis info: error: missing.mrc: x",
        "", "$ cryovis pick a.mrc \\", "    --threads 0", "cryovis pick: error: y", "```",
        "```console", "$ cryovis info a.mrc", "a.mrc: 10 x 10 x 10", "```"])
    got = [(e.line, e.command, e.fails, e.shown) for e in examples(text)]
    assert got == [(2, "cryovis info missing.mrc", True, ["cryovis info: error: missing.mrc: x"]),
                   (5, "cryovis pick a.mrc --threads 0", True, ["cryovis pick: error: y"]),
                   (10, "cryovis info a.mrc", False, ["a.mrc: 10 x 10 x 10"])]
    assert console_commands(text) == [(10, "cryovis info a.mrc")]


def test_the_executed_examples_cover_the_main_commands():
    used = {shlex.split(e.command)[1] for page in PAGE_EXAMPLES.values() for e in page
            if not e.fails}
    assert REQUIRED <= used, f"no executed example of: {sorted(REQUIRED - used)}"


@pytest.mark.parametrize("page", sorted(PAGE_EXAMPLES))
def test_page_examples_run(page, example, tmp_path):
    shutil.copytree(example, tmp_path / "example")
    shutil.copytree(BAD_INPUTS, tmp_path / "bad_inputs")
    for e in PAGE_EXAMPLES[page]:
        proc = _cryovis(e.command, tmp_path)
        where = f"{page}:{e.line}: `{e.command}` exited {proc.returncode}"
        if not e.fails:
            assert proc.returncode == 0, f"{where}:\n{proc.stderr[-2000:]}"
            continue
        assert proc.returncode == BAD_INPUT_STATUS, \
            f"{where}, not {BAD_INPUT_STATUS} (bad input):\n{proc.stderr[-2000:]}"
        printed = proc.stderr.splitlines()
        missing = [line for line in e.shown if line not in printed]
        assert e.shown and not missing, \
            f"{where}: the page shows {missing or 'no error line'}, stderr was:\n{proc.stderr}"


def _documented_signatures() -> list[tuple[str, str]]:
    return [m.groups() for line in API_PAGE.read_text(encoding="utf-8").splitlines()
            if (m := SIGNATURE.match(line))]


def _resolve(dotted: str):
    """The object ``dotted`` names: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(dotted)


def _shown_parameters(text: str) -> list[tuple[str, str | None]]:
    """``(name, default text or None)`` of each parameter of a documented signature;
    ``*`` and ``**`` prefixes kept, a bare ``*`` left out."""
    shown = []
    for part in (p.strip() for p in re.split(r",(?![^()]*\))", text) if p.strip()):
        name, _, default = part.partition("=")
        if name.strip() != "*":
            shown.append((name.strip(), default.strip() or None))
    return shown


def test_api_page_lists_real_signatures():
    documented = _documented_signatures()
    assert len(documented) >= 40, "the API page lost its signature headings"
    problems = []
    for dotted, text in documented:
        params = inspect.signature(_resolve(dotted)).parameters.values()
        if text == "...":
            continue
        prefix = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
        actual = [prefix.get(p.kind, "") + p.name for p in params]
        shown = _shown_parameters(text)
        if [name for name, _ in shown] != actual:
            problems.append(f"{dotted}: page shows {[n for n, _ in shown]}, code has {actual}")
            continue
        for (name, default), p in zip(shown, params):
            if p.default is inspect.Parameter.empty:
                if default is not None:
                    problems.append(f"{dotted}: {name} has no default in the code")
                continue
            code = p.default.__name__ if callable(p.default) else repr(p.default)
            if default is not None and default != code:
                problems.append(f"{dotted}: {name}={default} on the page, {code} in the code")
    assert not problems, "\n".join(problems)


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_api_page_example_runs(example, tmp_path):
    blocks = _python_blocks(API_PAGE.read_text(encoding="utf-8"))
    assert blocks, "the API page lost its example"
    shutil.copytree(example, tmp_path / "example")
    for code in blocks:
        ast.parse(code)
        proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                              text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert proc.returncode == 0, f"docs/api.md example failed:\n{proc.stderr[-3000:]}"
    assert (tmp_path / "api_view.png").stat().st_size > 0


def test_scipion_workflow_diagram_is_drawn_from_the_workflow_file():
    spec = importlib.util.spec_from_file_location("make_workflow_diagram",
                                                  REPO / "docs" / "make_workflow_diagram.py")
    diagram = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(diagram)
    drawn = diagram.mermaid(diagram.WORKFLOW)
    assert diagram.generated_block(diagram.PAGE.read_text(encoding="utf-8")) == drawn, \
        "docs/scipion.md's workflow diagram is stale: run docs/make_workflow_diagram.py --write"
    # every protocol of the workflow is a box, every input pointer an arrow
    protocols = json.loads(diagram.WORKFLOW.read_text(encoding="utf-8"))
    assert drawn.count('"]') == len(protocols)
    pointers = sum(isinstance(v, str) and bool(diagram.POINTER.match(v))
                   for p in protocols for v in p.values())
    assert pointers >= 4 and drawn.count("-->") == pointers
