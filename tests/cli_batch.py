"""Run many ``cryovis`` command lines in ONE child interpreter (Python start-up dominates).

Each command gets its own captured stdout/stderr and exit status from
``cryoet_integration.cli.main``; an exception escaping ``main`` is printed as a traceback
into that command's stderr, so tests see it exactly as a user would.
"""

from __future__ import annotations

import json
import subprocess
import sys

_CHILD = """
import contextlib, io, json, sys, traceback
from cryoet_integration.cli import main
results = []
for args in json.load(sys.stdin):
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            rc = main(args)
        except SystemExit as exc:  # argparse usage errors
            rc = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
            rc = 1
    results.append({"rc": rc, "stderr": err.getvalue(), "stdout": out.getvalue()})
json.dump(results, sys.stdout)
"""


def run_one(args: list[str]) -> subprocess.CompletedProcess:
    """``cryovis ARGS`` as its own process (the exact user path)."""
    return subprocess.run([sys.executable, "-m", "cryoet_integration.cli", *args],
                          capture_output=True, text=True, timeout=120)


def run_batch(arg_lists: list[list[str]]) -> list[subprocess.CompletedProcess]:
    """Each ``cryovis ARGS`` of ``arg_lists``, all in one child interpreter, in order."""
    child = subprocess.run([sys.executable, "-c", _CHILD], input=json.dumps(arg_lists),
                           capture_output=True, text=True, timeout=600)
    assert child.returncode == 0, child.stderr[-2000:]
    return [subprocess.CompletedProcess(a, r["rc"], r["stdout"], r["stderr"])
            for a, r in zip(arg_lists, json.loads(child.stdout))]
