"""The resumable record of a batch: ``DIR/cryovis_batch.sqlite`` under the batch's ``--out``.

One row per (command, input): the input's fingerprint (size and modification time, and its
SHA-256 once a worker has read it), the parameters (a hash of the single command's parsed
options), the status (``submitted``, ``done``, ``failed``), the outputs with their size,
modification time and SHA-256, the error line and the summary of the single command.
Only the process that runs the batch writes it (workers return results), so SQLite's
locking is never contended; every update is its own transaction, so a batch killed at any
moment leaves a consistent manifest.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST_NAME = "cryovis_batch.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    command TEXT NOT NULL,
    input TEXT NOT NULL,
    input_size INTEGER,
    input_mtime_ns INTEGER,
    input_sha256 TEXT,
    params TEXT NOT NULL,
    status TEXT NOT NULL,
    outputs TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    seconds REAL,
    summary TEXT,
    runs INTEGER NOT NULL DEFAULT 0,
    updated REAL NOT NULL,
    PRIMARY KEY (command, input)
)
"""


def sha256_file(path: str | Path, chunk: int = 2**20) -> str:
    """SHA-256 of a file, read in ``chunk``-byte pieces (constant memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(path: str | Path) -> tuple[int, int]:
    """``(size, mtime_ns)`` of a file, or of the newest entry of a folder (OME-Zarr)."""
    p = Path(path)
    if p.is_dir():
        entries = [q.stat() for q in p.rglob("*") if q.is_file()]
        return (sum(s.st_size for s in entries), max((s.st_mtime_ns for s in entries),
                                                      default=p.stat().st_mtime_ns))
    stat = p.stat()
    return stat.st_size, stat.st_mtime_ns


def output_record(path: str | Path) -> dict[str, Any]:
    """What the manifest keeps of one written output: size, mtime_ns and SHA-256."""
    size, mtime = fingerprint(path)
    digest = sha256_file(path) if Path(path).is_file() else None
    return {"size": size, "mtime_ns": mtime, "sha256": digest}


@dataclass
class Record:
    """One row of the manifest."""

    command: str
    input: str
    params: str
    status: str
    input_size: int | None = None
    input_mtime_ns: int | None = None
    input_sha256: str | None = None
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str | None = None
    seconds: float | None = None
    summary: dict[str, Any] | None = None
    runs: int = 0

    def finished(self, params: str) -> bool:
        """Whether this input is done with these parameters and unchanged since, and every
        output is still there as written (size and modification time)."""
        if self.status != "done" or self.params != params:
            return False
        try:
            if fingerprint(self.input) != (self.input_size, self.input_mtime_ns):
                return False
            return all(Path(p).exists() and list(fingerprint(p)) == [o["size"], o["mtime_ns"]]
                       for p, o in self.outputs.items())
        except OSError:
            return False


def params_hash(options: dict[str, Any]) -> str:
    """A stable hash of the single command's parsed options (the batch's parameters)."""
    text = json.dumps(options, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Manifest:
    """The SQLite manifest of the batch writing into ``out_dir``."""

    def __init__(self, out_dir: str | Path) -> None:
        self.path = Path(out_dir) / MANIFEST_NAME
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def get(self, command: str, input: str) -> Record | None:
        """The row of ``input`` under ``command``, or None."""
        row = self._db.execute(
            "SELECT command, input, params, status, input_size, input_mtime_ns, input_sha256, "
            "outputs, error, seconds, summary, runs FROM tasks WHERE command=? AND input=?",
            (command, input)).fetchone()
        if row is None:
            return None
        return Record(*row[:7], outputs=json.loads(row[7] or "{}"), error=row[8],
                      seconds=row[9], summary=json.loads(row[10]) if row[10] else None,
                      runs=row[11])

    def all(self, command: str) -> list[Record]:
        """Every row of ``command``, by input."""
        inputs = [r[0] for r in self._db.execute(
            "SELECT input FROM tasks WHERE command=? ORDER BY input", (command,))]
        return [r for r in (self.get(command, i) for i in inputs) if r is not None]

    def submit(self, command: str, input: str, params: str) -> None:
        """Record that ``input`` is (re)submitted with ``params``."""
        size, mtime = fingerprint(input)
        self._db.execute(
            "INSERT INTO tasks (command, input, input_size, input_mtime_ns, params, status, "
            "updated) VALUES (?, ?, ?, ?, ?, 'submitted', ?) ON CONFLICT(command, input) DO "
            "UPDATE SET input_size=excluded.input_size, input_mtime_ns=excluded.input_mtime_ns,"
            " params=excluded.params, status='submitted', error=NULL, updated=excluded.updated",
            (command, input, size, mtime, params, time.time()))

    def finish(self, command: str, input: str, result: dict[str, Any]) -> None:
        """Record a task's result (see :func:`tasks.run_one`)."""
        self._db.execute(
            "UPDATE tasks SET status=?, input_sha256=?, outputs=?, error=?, seconds=?, "
            "summary=?, runs=runs+1, updated=? WHERE command=? AND input=?",
            (result["status"], result.get("input_sha256"), json.dumps(result["outputs"]),
             result.get("error"), result.get("seconds"),
             json.dumps(result.get("summary"), default=str), time.time(), command, input))
