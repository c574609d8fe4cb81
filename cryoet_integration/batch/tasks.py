"""What a worker does with one tomogram: run the single command, exactly as a user would.

The task is ``cryovis NAME TOMO --out OUT --json SUMMARY [--threads T] [--force] OPTIONS``
through :func:`cryoet_integration.cli.main`, so the single command's parser, checks, error
messages and exit statuses are the batch's too. Its readable output goes to a log file per
tomogram (``DIR/logs/<stem>.log``). A worker process runs one tomogram at a time with all
the CPU threads it was given (:mod:`.cluster`), whatever its dask thread count.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .manifest import output_record, sha256_file

# The threads one tomogram gets on this worker (set by the worker plugin; None: the command's
# own default).
_THREADS: list[int | None] = [None]
_ONE_AT_A_TIME = threading.Lock()


def set_task_threads(n: int | None) -> None:
    """The CPU threads each tomogram gets in this process (the worker plugin calls this)."""
    _THREADS[0] = n


def _outputs_of(summary: dict[str, Any]) -> list[str]:
    """Every file the single command says it wrote (its ``--json`` summary's ``outputs``
    as a name->path map, a list or a path, and ``labels``)."""
    outputs = summary.get("outputs")
    if isinstance(outputs, dict):
        paths = list(outputs.values())
    elif isinstance(outputs, (list, tuple)):
        paths = list(outputs)
    else:
        paths = [outputs] if outputs else []
    if summary.get("labels"):
        paths.append(summary["labels"])
    return [str(p) for p in paths]


def run_one(name: str, argv: list[str], force: bool, log: str) -> dict[str, Any]:
    """Run ``cryovis NAME ARGV`` for one tomogram (``argv[0]``) and describe the result.

    Returns ``status`` (``done``/``failed``), ``rc``, ``error`` (the command's one-line
    reason), ``outputs`` (path -> size, mtime_ns, SHA-256), the command's JSON ``summary``,
    ``seconds`` (wall) and ``cpu_seconds`` (of the worker process, all its threads),
    ``input_sha256`` and the ``worker`` (host and pid) that ran it.
    """
    from ..cli import main

    with _ONE_AT_A_TIME:
        out_dir = Path(log).parent
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, summary_path = tempfile.mkstemp(prefix=".summary-", suffix=".json",
                                            dir=out_dir)
        os.close(fd)
        os.unlink(summary_path)
        args = [name, *argv, "--json", summary_path]
        if _THREADS[0] is not None:
            args[2:2] = ["--threads", str(_THREADS[0])]  # after TOMO; the user's wins
        if force:
            args.append("--force")
        said = io.StringIO()
        start, cpu = time.perf_counter(), time.process_time()
        with contextlib.redirect_stderr(said), contextlib.redirect_stdout(said):
            try:
                rc = main(args)
            except SystemExit as exc:
                rc = exc.code if isinstance(exc.code, int) else 1
        seconds = time.perf_counter() - start
        # All threads of this worker process: one tomogram runs at a time in it.
        cpu_seconds = time.process_time() - cpu
        text = said.getvalue()
        Path(log).write_text(f"cryovis {' '.join(args)}\n{text}")
        summary: dict[str, Any] | None = None
        if Path(summary_path).exists():
            summary = json.loads(Path(summary_path).read_text())
            os.unlink(summary_path)
        lines = [ln for ln in text.strip().splitlines() if ln.strip()]
        result: dict[str, Any] = {
            "rc": rc, "seconds": seconds, "cpu_seconds": cpu_seconds, "summary": summary,
            "worker": f"{os.uname().nodename}:{os.getpid()}", "outputs": {},
            "status": "done" if rc == 0 else "failed",
            "error": None if rc == 0 else (lines[-1] if lines else f"exit status {rc}")}
        with contextlib.suppress(OSError):
            result["input_sha256"] = sha256_file(argv[0]) if Path(argv[0]).is_file() else None
        if rc == 0 and summary is not None:
            result["outputs"] = {p: output_record(p) for p in _outputs_of(summary)
                                 if Path(p).exists()}
        return result
