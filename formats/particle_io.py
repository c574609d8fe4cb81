"""read_particles / write_particles: choose a particle format and call its module.

Each format module registers a reader and/or writer in ``FORMATS`` under a short name
(the ``--to`` names of ``cryovis convert``). Detection uses the extension, then the
content where an extension is shared (STAR files of different RELION versions).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from .errors import FormatError, PathLike
from .particles import validate


@dataclasses.dataclass
class ParticleFormat:
    """One particle file format: how to read it, write it, and recognise it."""

    name: str
    suffixes: tuple[str, ...]
    reader: Callable[..., pd.DataFrame] | None = None
    writer: Callable[..., None] | None = None
    description: str = ""


FORMATS: dict[str, ParticleFormat] = {}


def register(fmt: ParticleFormat) -> ParticleFormat:
    """Add a format to the registry (called by each format module at import)."""
    FORMATS[fmt.name] = fmt
    return fmt


def _load_formats() -> None:
    # Importing the modules fills FORMATS; done lazily so `import formats` stays cheap.
    import importlib

    for mod in _FORMAT_MODULES:
        importlib.import_module(f"formats.{mod}")


_FORMAT_MODULES = ["csvfmt", "relion", "stopgap", "dynamo", "motl", "pytom", "copick", "cryolo",
                   "eman2", "imod"]


def detect_format(path: PathLike) -> str:
    """The registered format name for ``path`` (by extension, then by content)."""
    _load_formats()
    p = Path(path)
    suffix = "".join(p.suffixes[-2:]).lower() if len(p.suffixes) > 1 else p.suffix.lower()
    candidates = [f for f in FORMATS.values()
                  if p.suffix.lower() in f.suffixes or suffix in f.suffixes]
    sniff = [f for f in candidates if getattr(f.reader, "sniff", None)]
    for f in sniff:
        if f.reader.sniff(p):
            return f.name
    if len(candidates) >= 1:
        return candidates[0].name
    raise FormatError(p, f"unknown particle format '{p.suffix or '(no extension)'}'"
                         f" (known: {', '.join(sorted(FORMATS))})")


def read_particles(path: PathLike, format: str | None = None, **options: Any) -> pd.DataFrame:
    """Read any supported particle file into the canonical table (see ``formats.particles``).

    Options understood by most readers: ``voxel_size`` (Å, overrides the file),
    ``tomograms`` (RELION 5 tomograms.star for sizes and pixel sizes), ``binning``.
    """
    p = Path(path)
    if not p.exists():
        raise FormatError(p, "no such file")
    if p.is_dir():
        raise FormatError(p, "is a directory, not a particle file")
    name = format or detect_format(p)
    _load_formats()
    if name not in FORMATS or FORMATS[name].reader is None:
        raise FormatError(p, f"cannot read particle format '{name}'")
    table = FORMATS[name].reader(p, **options)
    return validate(table, p)


def write_particles(path: PathLike, table: pd.DataFrame, format: str | None = None,
                    overwrite: bool = False, **options: Any) -> None:
    """Write the canonical table in ``format`` (or the one the extension implies), atomically."""
    p = Path(path)
    name = format or detect_format(p)
    _load_formats()
    if name not in FORMATS or FORMATS[name].writer is None:
        writable = ", ".join(sorted(k for k, f in FORMATS.items() if f.writer))
        raise FormatError(p, f"cannot write particle format '{name}' (writable: {writable})")
    validate(table, None)
    FORMATS[name].writer(p, table, overwrite=overwrite, **options)
