"""The one exception type every reader and writer raises for bad input."""

from __future__ import annotations

import os
from typing import Union

PathLike = Union[str, "os.PathLike[str]"]


class FormatError(ValueError):
    """A file could not be read or written; the message names the file and the problem.

    ``str(err)`` is a single line, ``"<path>: <problem>"``, suitable for a CLI error.
    """

    def __init__(self, path: PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = " ".join(str(problem).split())
        super().__init__(self.problem if self.path is None else f"{self.path}: {self.problem}")
