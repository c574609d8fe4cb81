"""What a command tells its user while it works: steps, progress bars and a summary.

Everything goes to stderr, so stdout carries only what was asked for (``--json``). On a
terminal progress is a rich bar; otherwise (a log file, a pipe, a Scipion protocol) it is a
plain line every 10 % so logs stay readable.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator


class Report:
    """Progress and summary lines of the command ``cryovis NAME``."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.start = time.perf_counter()

    def say(self, text: str) -> None:
        """One line saying what is being done (e.g. ``rescaling 13.69 -> 10 Å``)."""
        print(f"cryovis {self.command}: {text}", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def bar(self, label: str, total: int | None = None
            ) -> Iterator[Callable[[int, int], None]]:
        """A progress bar; the block gets ``update(done, total)`` to call as work advances."""
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), TimeRemainingColumn(),
                          console=Console(stderr=True), transient=True) as progress:
                task = progress.add_task(label, total=total)

                def update(done: int, of: int) -> None:
                    progress.update(task, completed=done, total=of)

                yield update
            return
        shown, began = [-1], time.perf_counter()

        def update(done: int, of: int) -> None:
            tenth = int(10 * done / of) if of else 10
            if tenth > shown[0]:
                shown[0] = tenth
                now = time.perf_counter()
                left = ""
                if 0 < done < of:
                    eta = (now - began) / done * (of - done)
                    left = f", about {eta / 60:.0f} min left" if eta >= 120 else \
                        f", about {eta:.0f} s left"
                self.say(f"{label} {done}/{of} ({now - self.start:.0f} s{left})")

        yield update

    def summary(self, text: str) -> None:
        """The closing line: what was written, with the elapsed time."""
        self.say(f"{text} in {time.perf_counter() - self.start:.1f} s")
