"""Atomic file writes: write to a temporary file beside the target, then rename.

A failed or interrupted write never leaves a half-written file under the target name,
and an existing file is only replaced when the caller says so.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import FormatError, PathLike


def check_writable(path: PathLike, overwrite: bool) -> Path:
    """Return ``path`` as a Path, raising FormatError if it exists and ``overwrite`` is False."""
    target = Path(path)
    if target.exists() and not overwrite:
        raise FormatError(target, "file exists (pass overwrite=True / --force to replace it)")
    if not target.parent.exists():
        raise FormatError(target, f"output directory {target.parent} does not exist")
    return target


@contextlib.contextmanager
def atomic_path(path: PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``.

    The temporary file keeps the target's suffix so libraries that dispatch on the file
    extension (mrcfile, tifffile, starfile) behave as for the real name.
    """
    target = check_writable(path, overwrite)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.stem}.", suffix=f".part{target.suffix}", dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # libraries such as mrcfile refuse to write over an existing file
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
