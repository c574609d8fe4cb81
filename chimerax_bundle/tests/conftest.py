"""Fixtures of the bundle's suite, run inside real ChimeraX (started by the project's
``tests/external/chimerax_pytest.py``).

The outer test (tests/test_chimerax_bundle.py) prepares the data and sets:
``CRYOVIS_TEST_DATA`` (folder with tomo.mrc, the class maps and particle files, and
data.json describing them), ``CRYOVIS_TEST_ENGINE`` (the engine's ``cryovis`` program) and
``CRYOVIS_TEST_OUT`` (where renders are written).
"""

from __future__ import annotations

import builtins
import json
import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def session():
    s = getattr(builtins, "_chimerax_test_session", None)
    if s is None:
        pytest.skip("not running inside ChimeraX (run it with tests/external/chimerax_pytest.py)")
    return s


@pytest.fixture(scope="session")
def data() -> dict:
    folder = Path(os.environ["CRYOVIS_TEST_DATA"])
    info = json.loads((folder / "data.json").read_text())
    info["dir"] = folder
    return info


@pytest.fixture(scope="session")
def engine_program() -> str:
    return os.environ["CRYOVIS_TEST_ENGINE"]


@pytest.fixture(scope="session")
def out_dir() -> Path:
    out = Path(os.environ["CRYOVIS_TEST_OUT"])
    out.mkdir(parents=True, exist_ok=True)
    return out


class LogCollector:
    """Everything ChimeraX logs, by level (info / warning / error), and its status lines."""

    def __init__(self):
        self.messages: list[tuple[str, str]] = []
        self.statuses: list[str] = []

    def errors(self) -> list[str]:
        return [m for level, m in self.messages if level == "error"]

    def text(self) -> str:
        return "\n".join(m for _, m in self.messages)

    def clear(self) -> None:
        self.messages.clear()
        self.statuses.clear()


@pytest.fixture(scope="session")
def log(session) -> LogCollector:
    from chimerax.core.logger import PlainTextLog

    collector = LogCollector()
    names = {PlainTextLog.LEVEL_INFO: "info", PlainTextLog.LEVEL_WARNING: "warning",
             PlainTextLog.LEVEL_ERROR: "error", PlainTextLog.LEVEL_BUG: "bug"}

    class _Log(PlainTextLog):
        excludes_other_logs = False

        def log(self, level, msg):
            collector.messages.append((names.get(level, "info"), msg))
            return False

        def status(self, msg, color, secondary):
            if msg:
                collector.statuses.append(msg)
            return False

    session.logger.add_log(_Log())
    return collector


@pytest.fixture(scope="session")
def run(session, log):
    """``run("cryovis ...")``: run a ChimeraX command, return its value."""
    from chimerax.core.commands import run as cx_run

    def _run(command: str):
        return cx_run(session, command, log=True)

    return _run


@pytest.fixture(scope="session")
def opened(session, data) -> dict:
    """The tomogram (#1) and its class maps (#2...) opened with ChimeraX's own ``open``."""
    from chimerax.core.commands import run as cx_run

    cx_run(session, "close session")
    tomo = cx_run(session, f"open {data['dir'] / data['tomogram']}")[0]
    classes = [cx_run(session, f"open {data['dir'] / name}")[0] for name in data["classes"]]
    return {"tomo": tomo, "classes": classes}


def one_line_user_error(run, command: str) -> str:
    """Run ``command``, which must fail the way a user sees as one log line (UserError-like,
    no traceback); returns the message."""
    from chimerax.core.errors import NotABug

    with pytest.raises(NotABug) as info:
        run(command)
    message = str(info.value)
    assert message and "\n" not in message.strip(), message
    assert "Traceback" not in message
    return message
