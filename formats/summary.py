"""What any cryo-ET file holds, for ``cryovis info``: built on the format readers.

``describe(path)`` picks the reader of the file's kind and returns its typed summary (see
``formats.facts``): volumes through ``read_volume``, particle files through
``read_particles`` (plus the format's own ``describe`` hook), STAR files through
``read_star``, mdoc files through ``read_mdoc``. There is no second parser here, so
``info`` and ``convert`` always agree (names, counts, pixel sizes). Only the base install
is used: never torch or scipy. Text rendering is the CLI's (``commands/info.py``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import FormatError, PathLike, VoxelSizeUnknown
from .facts import ParticleSummary, Summary, block_facts, counts, distinct_numbers, value_range
from .particles import copick, relion
from .particles.cryolo import describe_cbox
from .particles.dynamo import describe_table_map
from .particles.motl import is_motive_list
from .particles.registry import FORMATS, detect_format, read_particles
from .particles.table import CORE, MATRIX
from .particles.tomograms import describe_tomograms
from .projects.copick import describe_copick_project, is_copick_project
from .text.star import read_star
from .tiltseries.mdoc import describe_mdoc
from .tiltseries.star import describe_tilt_series_star
from .volumes import mrc, tiff
from .volumes.volume import describe_volume

# Columns that make a STAR loop (or CSV) a particle file even when it is a broken one.
_PARTICLE_COLUMN = re.compile(
    r"^(rln(Centered)?Coordinate[XYZ]|rlnAngle(Rot|Tilt|Psi)|rlnOrigin[XYZ]|"
    r"rlnTomoParticleName|orig_[xyz]|CoordinateX)")
_POSITION_COLUMNS = {"x", "y", "z", "x_angst", "y_angst", "z_angst", "x [a]", "y [a]", "z [a]"}
_TEXT_SUFFIXES = {".star", ".mdoc", ".cbox", ".box", ".doc", ".csv", ".tbl", ".json", ".xml",
                  ".md", ".txt", ".coords", ".tlt", ".rawtlt"}


def describe(path: PathLike, voxel_size: float | None = None,
             tomograms: PathLike | None = None) -> Summary:
    """Describe ``path``; raises FormatError (naming the file) for unknown or bad files.

    Args:
        path: any file of the formats in ``formats`` (see ``docs/formats.md``).
        voxel_size: Å per voxel overriding the file's, for volumes and particle files.
        tomograms: RELION 5 tomograms.star giving tomogram sizes and pixel sizes, for
            particle files in centred Å (without it their positions are shown in Å only).
    """
    p = Path(path)
    if not p.exists():
        raise FormatError(p, "no such file")
    if p.is_dir() and p.suffix.lower() == ".zarr":
        summary = {"path": str(p), "size_bytes": sum(f.stat().st_size for f in p.rglob("*")
                                                    if f.is_file())}
        summary.update(describe_volume(p, voxel_size))  # type: ignore[typeddict-item]
        summary.setdefault("warnings", [])
        return summary
    if p.is_dir():
        raise FormatError(p, "is a directory, not a file")
    if p.stat().st_size == 0:
        raise FormatError(p, "empty file (0 bytes)")
    suffix = p.suffix.lower()
    if suffix in _TEXT_SUFFIXES:
        _require_text(p)
    opts = {k: v for k, v in (("voxel_size", voxel_size), ("tomograms", tomograms))
            if v is not None}
    summary: Summary = {"path": str(p), "size_bytes": p.stat().st_size}
    if suffix == ".json" and is_copick_project(p):
        facts = describe_copick_project(p)
    elif suffix == ".em":
        facts = particles(p, opts) if is_motive_list(p) else describe_volume(p, voxel_size)
    elif suffix in mrc.SUFFIXES or suffix in tiff.SUFFIXES:
        facts = describe_volume(p, voxel_size)
    elif suffix in (".star", ".cbox"):
        facts = _star(p, opts)
    elif suffix == ".mdoc":
        facts = describe_mdoc(p)
    elif suffix == ".doc":
        facts = describe_table_map(p)
    elif suffix == ".csv":
        facts = _csv(p, opts)
    elif suffix in (".md", ".txt"):
        facts = _text(p)
    else:
        try:
            name = detect_format(p)
        except FormatError:
            raise FormatError(p, f"unknown file type '{p.suffix or '(no extension)'}':"
                                 " not a volume, STAR, mdoc or particle file") from None
        try:
            facts = particles(p, opts, name)
        except VoxelSizeUnknown:
            if name != "copick":
                raise
            facts = copick.describe_angst(p)
    summary.update(facts)  # type: ignore[typeddict-item]
    summary.setdefault("warnings", [])
    return summary


def _require_text(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(65536)
    if b"\x00" in head:
        raise FormatError(path, "binary data (NUL bytes) in what should be a text file")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # a multi-byte character cut at the 64 KiB boundary
            raise FormatError(path, f"not a text file (invalid UTF-8 at byte {exc.start})"
                              ) from None


def particles(path: Path, opts: dict[str, Any], name: str | None = None) -> ParticleSummary:
    """Facts of a particle file from its canonical table, plus the format's own hook."""
    name = name or detect_format(path)
    fmt = FORMATS[name]
    table = read_particles(path, format=name,
                           **{k: v for k, v in opts.items() if k in fmt.read_options})
    out: ParticleSummary = {"kind": "particles", "format": name,
                            "format_description": fmt.description, "count": len(table)}
    out["tomograms"] = counts(table["tomo_name"].fillna("").astype(str).replace("", "(none)"))
    out["classes"] = counts(table["class"].dropna().astype(str))
    out["voxel_sizes_angst"] = distinct_numbers(table["voxel_size"], 4) or None
    xyz = table[["x", "y", "z"]].to_numpy(dtype=float)
    out["position_min_xyz_voxels"] = [round(float(v), 3) for v in xyz.min(axis=0)] \
        if len(xyz) else None
    out["position_max_xyz_voxels"] = [round(float(v), 3) for v in xyz.max(axis=0)] \
        if len(xyz) else None
    mats = table[MATRIX].to_numpy(float)
    out["oriented"] = bool(len(mats) and np.abs(mats - np.eye(3).ravel()).max() > 1e-9)
    out["score_range"] = value_range(table["score"])
    out["extra_columns"] = [str(c) for c in table.columns if c not in CORE and c not in MATRIX]
    if fmt.describe is not None:
        out.update(fmt.describe(path, table))  # type: ignore[typeddict-item]
    out["warnings"] = list(table.attrs.get("warnings", []))
    return out


def _star(path: Path, opts: dict[str, Any]) -> Summary:
    blocks = read_star(path)
    if not blocks:
        raise FormatError(path, "no data_ block: not a STAR file")
    structure = {k: list(v.columns) if isinstance(v, pd.DataFrame) else list(v)
                 for k, v in blocks.items()}
    kind = relion.classify(structure)
    if kind is None and any(_PARTICLE_COLUMN.match(c) for cols in structure.values()
                            for c in cols):
        kind = "relion30"  # particle columns but no coordinates: the reader says what lacks
    if "cryolo" in blocks or path.suffix.lower() == ".cbox":
        out: Summary = describe_cbox(path, blocks)
        if out.get("dimensionality") == "3D":
            out["particles"] = particles(path, opts, "cryolo")  # type: ignore[typeddict-unknown-key]
    elif kind == "tomograms":
        out = describe_tomograms(path, blocks)
    elif kind == "optimisation_set":
        out = relion.describe_optimisation_set(path, blocks)
    elif kind == "tiltseries":
        out = describe_tilt_series_star(blocks)
    elif kind is not None:
        try:
            out = particles(path, opts, kind)
        except FormatError:
            if "tomograms" in opts or not relion.is_centred(structure):
                raise
            out = relion.describe_centred(path, blocks)
    else:
        out = {"kind": "star", "format": "STAR (unrecognised content)"}
    out["blocks"] = block_facts(blocks)  # type: ignore[typeddict-unknown-key]
    return out


def _csv(path: Path, opts: dict[str, Any]) -> Summary:
    try:
        return particles(path, opts, "csv")
    except FormatError as exc:
        try:
            table = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError):
            raise exc from None
        if {str(c).strip().lower() for c in table.columns} & _POSITION_COLUMNS:
            raise  # a particle CSV with a problem: the reader's message says which
    return {"kind": "csv", "format": "CSV (not a particle CSV: no x, y, z columns)",
            "rows": len(table), "columns": [str(c) for c in table.columns],
            "numeric_columns": [str(c) for c in table.columns
                                if pd.api.types.is_numeric_dtype(table[c])]}  # type: ignore


def _text(path: Path) -> Summary:
    lines = path.read_text(encoding="utf-8").splitlines()
    title = next((ln.lstrip("# ").strip() for ln in lines if ln.strip()), "")
    return {"kind": "text", "format": "text document", "lines": len(lines),  # type: ignore
            "title": title}
