"""read_particles / write_particles: choose a particle format and call its module.

Each format module registers a reader and/or writer in ``FORMATS`` under a short name
(the ``--to`` names of ``cryovis convert``). Detection uses the extension, then the
content where an extension is shared (STAR files of different RELION versions).

A format declares the options it takes: the keyword parameters of its reader and writer.
Any other option is refused with a one-line error instead of being silently dropped.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from ..errors import FormatError, PathLike
from .table import validate

# Arguments every reader/writer takes that are not user options.
_NOT_OPTIONS = {"path", "table", "overwrite"}


def declared_options(fn: Callable[..., Any] | None) -> frozenset[str]:
    if fn is None:
        return frozenset()
    return frozenset(name for name, par in inspect.signature(fn).parameters.items()
                     if name not in _NOT_OPTIONS
                     and par.kind in (par.POSITIONAL_OR_KEYWORD, par.KEYWORD_ONLY))


@dataclasses.dataclass
class ParticleFormat:
    """One particle file format: how to read it, write it, recognise it and describe it.

    ``read_options`` / ``write_options`` default to the reader's / writer's keyword
    parameters. ``sniff(path)`` decides between formats sharing an extension. ``describe``
    adds format-specific facts to ``cryovis info`` (see ``formats.summary``).
    """

    name: str
    suffixes: tuple[str, ...]
    reader: Callable[..., pd.DataFrame] | None = None
    writer: Callable[..., None] | None = None
    description: str = ""
    sniff: Callable[[Path], bool] | None = None
    describe: Callable[[Path, pd.DataFrame], dict[str, Any]] | None = None
    read_options: frozenset[str] | None = None
    write_options: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.read_options is None:
            self.read_options = declared_options(self.reader)
        if self.write_options is None:
            self.write_options = declared_options(self.writer)


_FORMAT_MODULES = ["csvfile", "relion", "stopgap", "dynamo", "motl", "pytom", "copick",
                   "cryolo", "eman2", "imod"]


class _Registry(Mapping[str, ParticleFormat]):
    """The registered formats; the modules are imported on first use (``import formats``
    stays cheap) and register themselves."""

    def __init__(self) -> None:
        self._formats: dict[str, ParticleFormat] = {}
        self._loaded = False

    def add(self, fmt: ParticleFormat) -> None:
        self._formats[fmt.name] = fmt

    def _all(self) -> dict[str, ParticleFormat]:
        if not self._loaded:
            self._loaded = True
            for mod in _FORMAT_MODULES:
                importlib.import_module(f"{__package__}.{mod}")
        return self._formats

    def __getitem__(self, name: str) -> ParticleFormat:
        return self._all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


FORMATS = _Registry()


def register(fmt: ParticleFormat) -> ParticleFormat:
    """Add a format to the registry (called by each format module at import)."""
    FORMATS.add(fmt)
    return fmt


def detect_format(path: PathLike) -> str:
    """The registered format name for ``path`` (by extension, then by content)."""
    p = Path(path)
    suffix = "".join(p.suffixes[-2:]).lower() if len(p.suffixes) > 1 else p.suffix.lower()
    candidates = [f for f in FORMATS.values()
                  if p.suffix.lower() in f.suffixes or suffix in f.suffixes]
    for f in candidates:
        if f.sniff is not None and f.sniff(p):
            return f.name
    if candidates:
        return candidates[0].name
    raise FormatError(p, f"unknown particle format '{p.suffix or '(no extension)'}'"
                         f" (known: {', '.join(sorted(FORMATS))})")


def check_options(path: PathLike, name: str, direction: str, options: Mapping[str, Any]
                  ) -> None:
    """FormatError when ``options`` holds one the ``direction`` ('read'/'write') of format
    ``name`` does not take."""
    fmt = FORMATS[name]
    accepted = fmt.read_options if direction == "read" else fmt.write_options
    unknown = sorted(set(options) - set(accepted or ()))
    if unknown:
        takes = ", ".join(sorted(accepted or ())) or "none"
        raise FormatError(path, f"the {name} {direction.rstrip('e')}er cannot honour option"
                                f"{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}"
                                f" (it takes: {takes})")


def read_particles(path: PathLike, format: str | None = None, **options: Any) -> pd.DataFrame:
    """Read any supported particle file into the canonical table (see
    ``formats.particles.table``).

    ``options`` are those the format's reader declares (``FORMATS[name].read_options``),
    e.g. ``voxel_size`` (Å, overrides the file), ``tomograms`` (RELION 5 tomograms.star),
    ``binning``; any other option is a FormatError.
    """
    p = Path(path)
    if not p.exists():
        raise FormatError(p, "no such file")
    if p.is_dir():
        raise FormatError(p, "is a directory, not a particle file")
    name = format or detect_format(p)
    if name not in FORMATS or FORMATS[name].reader is None:
        raise FormatError(p, f"cannot read particle format '{name}'")
    check_options(p, name, "read", options)
    table = FORMATS[name].reader(p, **options)
    return validate(table, p)


def write_particles(path: PathLike, table: pd.DataFrame, format: str | None = None,
                    overwrite: bool = False, **options: Any) -> None:
    """Write the canonical table in ``format`` (or the one the extension implies), atomically.

    ``options`` are those the format's writer declares (``FORMATS[name].write_options``).
    """
    p = Path(path)
    name = format or detect_format(p)
    if name not in FORMATS or FORMATS[name].writer is None:
        writable = ", ".join(sorted(k for k, f in FORMATS.items() if f.writer))
        raise FormatError(p, f"cannot write particle format '{name}' (writable: {writable})")
    check_options(p, name, "write", options)
    validate(table, None)
    FORMATS[name].writer(p, table, overwrite=overwrite, **options)
