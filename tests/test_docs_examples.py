"""The documentation's example commands, executed so they cannot rot.

Fenced blocks marked ```console in README.md and docs/*.md hold commands (lines starting
with ``$ ``); each page's commands run in order in a fresh folder holding ``example/``, a
small simulated tomogram, and must exit 0. The convention is documented in
docs/getting_started.md ("Executed examples").
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
MARKER = "console"
# The example every page may use, made with the command the convention documents.
EXAMPLE_COMMAND = "cryovis simulate --out example --n 1 --size 64x64x32 --seed 7"
# Commands the executed examples must keep covering (a page losing its marker fails here).
REQUIRED = {"info", "convert", "simulate", "segment", "pick", "evaluate", "render", "extract"}


def console_commands(text: str) -> list[tuple[int, str]]:
    """``(line number, command)`` of every ``$ `` line in the ```console blocks of
    ``text`` (1-based line of the command's first line; trailing ``\\`` continues it)."""
    commands: list[tuple[int, str]] = []
    inside, pending, start = False, None, 0
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("```"):
            if inside and pending is not None:
                raise ValueError(f"line {start}: a continued command runs into the block's end")
            inside = not inside and stripped[3:].strip() == MARKER
            continue
        if not inside:
            continue
        if pending is not None:
            pending += " " + stripped.rstrip("\\").strip()
        elif stripped.startswith("$ "):
            pending, start = stripped[2:].rstrip("\\").strip(), number
        else:
            continue
        if not stripped.endswith("\\"):
            commands.append((start, pending))
            pending = None
    return commands


def _page_commands() -> dict[str, list[tuple[int, str]]]:
    found = {}
    for page in PAGES:
        commands = console_commands(page.read_text(encoding="utf-8"))
        if commands:
            found[str(page.relative_to(REPO))] = commands
    return found


PAGE_COMMANDS = _page_commands()


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


def test_the_executed_examples_cover_the_main_commands():
    used = {shlex.split(c)[1] for commands in PAGE_COMMANDS.values() for _, c in commands}
    assert REQUIRED <= used, f"no executed example of: {sorted(REQUIRED - used)}"


@pytest.mark.parametrize("page", sorted(PAGE_COMMANDS))
def test_page_examples_run(page, example, tmp_path):
    shutil.copytree(example, tmp_path / "example")
    for line, command in PAGE_COMMANDS[page]:
        proc = _cryovis(command, tmp_path)
        assert proc.returncode == 0, (f"{page}:{line}: `{command}` exited {proc.returncode}:\n"
                                      f"{proc.stderr[-2000:]}")
