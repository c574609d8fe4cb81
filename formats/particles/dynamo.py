"""Dynamo tables (.tbl) and table maps (.doc).

A table is plain whitespace-separated numbers, one particle per row, columns 1-based as
in the Dynamo wiki: 1 tag, 2 aligned, 3 averaged, 4-6 dx dy dz (px, added to the
position), 7-9 tdrot tilt narot (ZXZ; R = zxz(tdrot, tilt, narot) extrinsic, inverted),
10 cc, 13 ftype, 14-17 tilt ranges, 20 tomo (integer), 22 class, 24-26 x y z (px of the
binned tomogram, MATLAB 1-based), 36 apix (Å/px, 0 when unset).
The canonical position is x + dx - 1 (0-based voxel centres).

A table map (``.doc``) lines ``index path`` name the tomogram of each index; the reader
uses ``table_map=`` or a ``<stem>.doc`` next to the table, and the writer writes one
when tomogram names are not plain integers.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import atomic_path, check_writable
from ..errors import FormatError, PathLike, warn
from ..facts import Summary
from ..text.raw import read_text_bytes
from ..text.textfmt import format_column, format_rows
from . import euler
from .common import (
    apply_binning,
    class_ids,
    class_map_path,
    class_names,
    file_positions,
    ids_for_names,
    index_map_text,
    map_unique,
    positive_or_none,
    read_index_map,
    recompute_angst,
    tomo_name_from_path,
)
from .registry import ParticleFormat, register
from .table import make_table, orientations

N_COLUMNS = 36
MIN_COLUMNS = 26


def _parse(p: Path) -> np.ndarray:
    data = read_text_bytes(p, "Dynamo table")
    try:
        df = pd.read_csv(io.BytesIO(data), sep=r"\s+", header=None, index_col=False,
                         dtype=float, comment="#", engine="c")
        values = df.to_numpy(dtype=float)
    except ValueError as exc:  # pandas' ParserError and UnicodeDecodeError are ValueErrors
        if not _COMPLEX.search(data[:1 << 20]):
            first = str(exc).strip().splitlines()[-1] if str(exc).strip() \
                else type(exc).__name__
            raise FormatError(p, f"not a numeric Dynamo table ({first})") from None
        values = _parse_complex(p, data)
    if values.shape[1] < MIN_COLUMNS:
        raise FormatError(p, f"Dynamo tables need at least {MIN_COLUMNS} columns (x y z are "
                             f"24-26); found {values.shape[1]}")
    if np.isnan(values[:, :MIN_COLUMNS]).any():
        row = int(np.flatnonzero(np.isnan(values[:, :MIN_COLUMNS]).any(axis=1))[0]) + 1
        raise FormatError(p, f"row {row} has fewer than {MIN_COLUMNS} columns or a NaN")
    return values


# MATLAB writes complex numbers as "0+1.2074e-06i"; Dynamo tables saved from a complex
# computation hold them in columns such as cc or the free columns beyond 26.
_COMPLEX = re.compile(rb"[0-9.](?:[eE][+-]?[0-9]+)?[+-][0-9.]+(?:[eE][+-]?[0-9]+)?[ij]\b")
# 0-based columns that place or orient a particle: 4-9 shifts and angles, 20 tomogram,
# 22 class, 24-26 position.
_GEOMETRIC = [3, 4, 5, 6, 7, 8, 19, 21, 23, 24, 25]


def _parse_complex(p: Path, data: bytes) -> np.ndarray:
    """A table with MATLAB complex values: each complex value becomes its real part; a
    complex value with a non-zero imaginary part in a geometric column is an error."""
    try:
        df = pd.read_csv(io.BytesIO(data), sep=r"\s+", header=None, index_col=False,
                         dtype=str, comment="#", engine="c")
    except ValueError as exc:
        raise FormatError(p, f"not a numeric Dynamo table ({exc})") from None
    values = np.full(df.shape, np.nan)
    complex_columns = []
    for c in range(df.shape[1]):
        text = df[c].dropna()
        try:
            parsed = np.array([complex(s.replace("i", "j")) for s in text])
        except ValueError:
            bad = next(s for s in text if not _is_number(s))
            raise FormatError(p, f"column {c + 1}: '{bad[:30]}' is not a number") from None
        if np.iscomplexobj(parsed) and (parsed.imag != 0).any():
            if c in _GEOMETRIC:
                row = int(np.flatnonzero(parsed.imag != 0)[0]) + 1
                raise FormatError(p, f"row {row}, column {c + 1} (a position, shift, angle, "
                                     "tomogram or class) holds a complex value")
            complex_columns.append(c + 1)
        values[text.index.to_numpy(), c] = parsed.real
    if complex_columns:
        warn(p, f"MATLAB complex values in column(s) {complex_columns[:8]}: read their real "
                "parts (the geometric columns are real)")
    return values


def _is_number(text: str) -> bool:
    try:
        complex(text.replace("i", "j"))
    except ValueError:
        return False
    return True


def read_dynamo(path: PathLike, voxel_size: float | None = None,
                table_map: PathLike | None = None, binning: float | None = None) -> pd.DataFrame:
    """Read a Dynamo table into the canonical table.

    Args:
        path: the .tbl file.
        voxel_size: Å per px (overrides column 36).
        table_map: .doc naming the tomogram of each index (default: ``<stem>.doc`` beside).
        binning: table voxel size / table px.
    """
    p = Path(path)
    v = _parse(p)
    xyz = v[:, 23:26] + v[:, 3:6] - 1.0
    matrices = euler.dynamo_to_matrix(v[:, 6:9])
    tomo = v[:, 19].astype(np.int64)
    map_path = Path(table_map) if table_map is not None else p.with_suffix(".doc")
    if table_map is not None and not map_path.exists():
        raise FormatError(map_path, "no such table map")
    if map_path.exists():
        mapping = read_index_map(map_path)
        missing = sorted(set(tomo.tolist()) - set(mapping))
        if missing:
            raise FormatError(map_path, f"table map lacks tomogram index(es) {missing[:5]}")
        names = map_unique(tomo, lambda t: tomo_name_from_path(mapping[t]))
    else:
        names = tomo
    vs = positive_or_none(voxel_size, "voxel size", p)
    if vs is None and v.shape[1] >= 36:
        apix = v[:, 35]
        vs = np.where(apix > 0, apix, np.nan)
    extra = pd.DataFrame({"dynamo_tag": v[:, 0].astype(np.int64)})
    table = make_table(xyz, vs, matrices, names, class_names(p, v[:, 21]), v[:, 9], extra)
    table.attrs["format"] = "dynamo"
    return recompute_angst(apply_binning(table, positive_or_none(binning, "binning", p)))


def write_dynamo(path: PathLike, table: pd.DataFrame, overwrite: bool = False,
                 binning: float | None = None, table_map: PathLike | None = None,
                 class_numbers: Mapping[str, int] | None = None) -> None:
    """Write a Dynamo table (36 columns), and beside it the index maps names need.

    A table map ``<stem>.doc`` (``index tomogram.mrc``) is written when tomogram names are
    not plain integers, a class map ``<stem>_classes.doc`` (``number name``) when class
    names are not; the reader picks both up again.

    Args:
        path: output .tbl.
        table: canonical particle table.
        overwrite: replace existing files (table and maps).
        binning: table voxel size / written px.
        table_map: where to write the table map (default ``<stem>.doc``).
        class_numbers: ``{class name: number}`` to store (default: names numbered 1..k in
            order of appearance, canonical integers kept).
    """
    p = Path(path)
    n = len(table)
    if n == 0:
        raise FormatError(p, "no particles to write (an empty Dynamo table is not readable)")
    xyz, pixel = file_positions(table, positive_or_none(binning, "binning", p))
    tomo_ids, id_names, plain = ids_for_names(table["tomo_name"])
    angles = euler.matrix_to_dynamo(orientations(table))
    class_numbers, class_names, class_plain = class_ids(table["class"], class_numbers, p)
    cols = np.zeros((n, N_COLUMNS))
    cols[:, 0] = table["dynamo_tag"].to_numpy() if "dynamo_tag" in table.columns \
        else np.arange(1, n + 1)
    cols[:, 1] = 1
    cols[:, 2] = 1
    cols[:, 6:9] = angles
    cols[:, 9] = np.nan_to_num(table["score"].to_numpy(dtype=float))
    cols[:, 19] = tomo_ids
    cols[:, 21] = class_numbers
    cols[:, 23:26] = xyz + 1.0
    cols[:, 35] = np.nan_to_num(pixel)
    maps: dict[Path, str] = {}
    if not plain:
        target = Path(table_map) if table_map is not None else p.with_suffix(".doc")
        maps[target] = index_map_text({i: _volume_file(name) for i, name in id_names.items()})
    if not class_plain:
        maps[class_map_path(p)] = index_map_text(class_names)
    for target in maps:
        check_writable(target, overwrite)
    with atomic_path(p, overwrite) as tmp:
        tmp.write_bytes(_format(cols))
        for target, text in maps.items():
            with atomic_path(target, overwrite) as tmp_map:
                tmp_map.write_text(text, encoding="utf-8")


_VOLUME_SUFFIXES = (".mrc", ".rec", ".st", ".map", ".em")


def _volume_file(name: str) -> str:
    """The tomogram file a table map names: ``NAME.mrc``, never ``NAME.mrc.mrc``."""
    return name if name.lower().endswith(_VOLUME_SUFFIXES) else f"{name}.mrc"


def _format(cols: np.ndarray) -> bytes:
    """Rows as text: integer columns as integers, the rest fixed-point (see textfmt)."""
    ints = {0, 1, 2, 12, 19, 20, 21, 22, 30, 31, 33, 34}
    return format_rows([format_column(cols[:, c].astype(np.int64) if c in ints else cols[:, c])
                        for c in range(cols.shape[1])])


register(ParticleFormat("dynamo", (".tbl",), read_dynamo, write_dynamo,
                        "Dynamo table (px of the binned tomogram, 1-based, ZXZ)"))


def describe_table_map(path: PathLike) -> Summary:
    """``cryovis info`` facts of a Dynamo table map: ``{index: tomogram path}``."""
    mapping = read_index_map(path)
    if not mapping:
        raise FormatError(path, "no 'index path' lines: empty Dynamo table map")
    return {"kind": "table_map", "format": "Dynamo table map (.doc)",  # type: ignore
            "count": len(mapping), "tomograms": {str(k): v for k, v in mapping.items()}}
