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


class VoxelSizeUnknown(FormatError):
    """A file whose positions need a voxel size that neither it nor the options give."""


class FormatWarning(UserWarning):
    """Something a reader or writer decided that the user should know (one line, naming
    the file): e.g. which tomogram names were matched after normalising, or which of two
    disagreeing pixel sizes was used. Raised through ``warnings.warn``."""


def warn(path: PathLike | None, message: str) -> None:
    """Issue a FormatWarning ``"<path>: <message>"``."""
    import warnings

    text = " ".join(str(message).split())
    warnings.warn(text if path is None else f"{os.fspath(path)}: {text}", FormatWarning,
                  stacklevel=3)
