"""cryovis plain CSV particle files (our interchange format).

Columns: ``x,y,z`` in voxels of the tomogram (0-based voxel centres); optional ``class``
(name), ``score``, ``tomo_name``, ``x_angst,y_angst,z_angst``, ``voxel_size`` (Å) and the
orientation as ``rot,tilt,psi`` in RELION's convention (degrees, ZYZ; see ``euler``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import atomic_path
from ..errors import FormatError
from . import euler
from .common import apply_binning, file_positions, positive_or_none, recompute_angst
from .registry import ParticleFormat, register
from .table import CORE, MATRIX, make_table, orientations

SUFFIXES = {".csv"}


def read_csv(path: Path, voxel_size: float | None = None,
             binning: float | None = None) -> pd.DataFrame:
    """Read a cryovis CSV; ``voxel_size`` (Å) overrides or supplies the voxel size;
    ``binning``: table voxel size / the CSV's voxel size."""
    try:
        df = pd.read_csv(path, dtype={"tomo_name": str, "class": str}, keep_default_na=False,
                         na_values={c: ["", "nan", "NaN"] for c in
                                    ("x", "y", "z", "score", "rot", "tilt", "psi",
                                     "x_angst", "y_angst", "z_angst", "voxel_size")})
    except pd.errors.EmptyDataError:
        raise FormatError(path, "empty CSV file") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise FormatError(path, f"not a readable CSV file ({str(exc).splitlines()[0]})") from None
    df.columns = [str(c).strip() for c in df.columns]
    tardis = {f"{c.upper()} [A]": f"{c}_angst" for c in "xyz"}
    if set(tardis) <= set(df.columns) and not {"x", "y", "z"} <= set(df.columns):
        # TARDIS instance CSV: positions in Å; without a voxel size they stay in 1 Å voxels.
        df = df.rename(columns=tardis)
        if voxel_size is None and "voxel_size" not in df.columns:
            voxel_size = 1.0
    vs = voxel_size
    if vs is None and "voxel_size" in df.columns:
        vs = pd.to_numeric(df["voxel_size"], errors="coerce").to_numpy()
    if not {"x", "y", "z"} <= set(df.columns):
        if {"x_angst", "y_angst", "z_angst"} <= set(df.columns) and vs is not None:
            for c in "xyz":
                df[c] = pd.to_numeric(df[f"{c}_angst"], errors="coerce") / vs
        else:
            raise FormatError(path, "CSV needs columns x,y,z (voxels) or x_angst,y_angst,z_angst "
                                    f"with a voxel size; found {list(df.columns)}")
    try:
        xyz = df[["x", "y", "z"]].apply(pd.to_numeric, errors="raise").to_numpy(dtype=float)
    except (ValueError, TypeError):
        raise FormatError(path, "non-numeric value in columns x,y,z") from None
    matrices = None
    if {"rot", "tilt", "psi"} <= set(df.columns):
        angles = df[["rot", "tilt", "psi"]].apply(pd.to_numeric, errors="coerce").to_numpy(float)
        matrices = euler.relion_to_matrix(np.nan_to_num(angles))
    classes = None
    if "class" in df.columns:
        classes = [None if (c is None or c == "") else str(c) for c in df["class"]]
    scores = pd.to_numeric(df["score"], errors="coerce").to_numpy() if "score" in df else None
    tomo = [str(t) for t in df["tomo_name"]] if "tomo_name" in df.columns else None
    extra = df.drop(columns=[c for c in df.columns if c in CORE or c in ("rot", "tilt", "psi")])
    table = make_table(xyz, vs, matrices, tomo, classes, scores, extra)
    return recompute_angst(apply_binning(table, positive_or_none(binning, "binning", path)))


def write_csv(path: Path, table: pd.DataFrame, overwrite: bool = False,
              binning: float | None = None) -> None:
    """Write a canonical table as cryovis CSV (positions in voxels, angles RELION ZYZ).

    ``binning``: table voxel size / the written voxel size.
    """
    xyz, pixel = file_positions(table, positive_or_none(binning, "binning", path))
    out = pd.DataFrame({"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]})
    if np.isfinite(pixel).any():
        out["voxel_size"] = pixel
    for c in ("class", "score", "tomo_name", "x_angst", "y_angst", "z_angst"):
        if c in table.columns and not table[c].isna().all():
            out[c] = table[c]
    angles = euler.matrix_to_relion(orientations(table))
    out["rot"], out["tilt"], out["psi"] = angles[:, 0], angles[:, 1], angles[:, 2]
    for c in table.columns:
        if c not in CORE and c not in MATRIX and c not in out.columns:
            out[c] = table[c]
    with atomic_path(path, overwrite) as tmp:
        # 9 significant digits: a binned voxel size (e.g. 10/1.5 Å) keeps 1e-4 Å at 10^4 px
        out.to_csv(tmp, index=False, float_format="%.9g")


register(ParticleFormat("csv", (".csv",), read_csv, write_csv,
                        "cryovis CSV (voxels, RELION angles)"))
