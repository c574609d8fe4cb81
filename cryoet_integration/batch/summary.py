"""The end of a batch: a table per tomogram on stderr and the ``--json`` summary."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from .commands import BatchCommand
from .run import Outcome


def summary_json(command: BatchCommand, out_dir: Path, outcomes: list[Outcome]
                 ) -> dict[str, Any]:
    """The batch's machine-readable summary: counts and one entry per tomogram."""
    return {"command": command.name, "out": str(out_dir),
            "counts": dict(Counter(o.status for o in outcomes)),
            "tomograms": [{"input": o.input, "name": o.stem, "status": o.status,
                           "seconds": None if o.seconds is None else round(o.seconds, 3),
                           "cpu_seconds": None if o.cpu_seconds is None
                           else round(o.cpu_seconds, 3),
                           "outputs": o.outputs, "error": o.error, "scores": o.scores}
                          for o in outcomes]}


def print_summary(command: BatchCommand, outcomes: list[Outcome]) -> None:
    """A rich table (status, wall and CPU seconds, outputs, scores) of every tomogram, on
    stderr."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"cryovis batch {command.name}")
    for column in ("tomogram", "status", "seconds", "CPU s", "outputs", "scores / error"):
        table.add_column(column)
    style = {"done": "green", "skipped": "cyan", "failed": "red"}
    for o in outcomes:
        scores = o.error if o.status == "failed" else ", ".join(
            f"{k}={json.dumps(v)}" for k, v in o.scores.items())
        table.add_row(o.stem, f"[{style[o.status]}]{o.status}[/]",
                      "" if o.seconds is None else f"{o.seconds:.1f}",
                      "" if o.cpu_seconds is None else f"{o.cpu_seconds:.1f}",
                      "\n".join(Path(p).name for p in o.outputs), scores or "")
    Console(stderr=True, width=160).print(table)
