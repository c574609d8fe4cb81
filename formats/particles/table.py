"""The canonical particle table and the dispatch of particle formats.

Every particle format converts to and from ONE pandas DataFrame at its boundary:

==============  =========================================================================
column          meaning
==============  =========================================================================
x, y, z         effective position (origin shifts applied) in voxels of the tomogram,
                0-based voxel centres, at ``voxel_size``
voxel_size      Å per voxel of the tomogram the voxel coordinates refer to (NaN: unknown)
x_angst ...     the same position in Å from the corner of voxel 0's centre
                (``x_angst = x * voxel_size``); NaN when the voxel size is unknown
r00 ... r22     orientation matrix R, row-major; R maps the reference (particle frame)
                into the tomogram frame (columns are the particle's axes in tomogram x,y,z)
tomo_name       tomogram name, always a string (never parsed as a number)
class           class name (string) or missing
score           float or NaN
==============  =========================================================================

Any other column is carried through untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..errors import FormatError

POSITION = ["x", "y", "z"]
POSITION_ANGST = ["x_angst", "y_angst", "z_angst"]
MATRIX = [f"r{i}{j}" for i in range(3) for j in range(3)]
CORE = POSITION + ["voxel_size"] + POSITION_ANGST + MATRIX + ["tomo_name", "class", "score"]


def make_table(
    xyz_voxels: np.ndarray,
    voxel_size: float | np.ndarray | None = None,
    matrices: np.ndarray | None = None,
    tomo_name: str | Sequence[str] | None = None,
    classes: Sequence[str | None] | None = None,
    scores: Sequence[float] | np.ndarray | None = None,
    extra: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Build a canonical particle table.

    Args:
        xyz_voxels: (N, 3) positions ``x, y, z`` in voxels (0-based voxel centres).
        voxel_size: Å per voxel, scalar or per particle; None/0 means unknown.
        matrices: (N, 3, 3) orientations (reference -> tomogram); identity when None.
        tomo_name: one name for all particles or one per particle.
        classes: class names per particle.
        scores: score per particle.
        extra: more columns to carry (same row order).
    """
    xyz = np.asarray(xyz_voxels, dtype=float).reshape(-1, 3)
    n = len(xyz)
    vs = np.full(n, np.nan) if voxel_size is None else np.broadcast_to(
        np.asarray(voxel_size, dtype=float), (n,)).copy()
    vs[vs <= 0] = np.nan
    table = pd.DataFrame({"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2], "voxel_size": vs})
    for c, a in zip(POSITION, POSITION_ANGST):
        table[a] = table[c] * table["voxel_size"]
    set_orientations(table, np.broadcast_to(np.eye(3), (n, 3, 3)) if matrices is None
                     else np.asarray(matrices, dtype=float).reshape(n, 3, 3))
    if tomo_name is None or isinstance(tomo_name, str):
        table["tomo_name"] = pd.Series([tomo_name or ""] * n, dtype=object)
    else:
        table["tomo_name"] = pd.Series(as_text(tomo_name, missing=""), dtype=object)
    table["class"] = pd.Series([None] * n if classes is None else as_text(classes),
                               dtype=object)
    table["score"] = np.full(n, np.nan) if scores is None else np.asarray(scores, dtype=float)
    if extra is not None:
        for col in extra.columns:
            if col not in table.columns:
                table[col] = extra[col].reset_index(drop=True)
    return table


def as_text(values, missing: str | None = None) -> np.ndarray:
    """Labels as an object array of strings; numbers without a fraction print as integers.

    ``1.0`` -> ``"1"`` (class numbers read as floats), ``"001"`` stays ``"001"``; missing
    values (None/NaN) become ``missing``. Formats each distinct value once.
    """
    series = values if isinstance(values, pd.Series) else pd.Series(values, dtype=object)
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    labels = [_label(u) for u in uniques]
    return np.array(labels + [missing], dtype=object)[codes]


def _label(value) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def orientations(table: pd.DataFrame) -> np.ndarray:
    """The (N, 3, 3) orientation matrices (reference -> tomogram) of a canonical table."""
    return table[MATRIX].to_numpy(dtype=float).reshape(-1, 3, 3)


def set_orientations(table: pd.DataFrame, matrices: np.ndarray) -> None:
    """Store (N, 3, 3) orientation matrices in ``table`` in place."""
    flat = np.asarray(matrices, dtype=float).reshape(-1, 9)
    for k, col in enumerate(MATRIX):
        table[col] = flat[:, k]


def positions_voxels(table: pd.DataFrame) -> np.ndarray:
    """(N, 3) positions ``x, y, z`` in voxels."""
    return table[POSITION].to_numpy(dtype=float)


def validate(table: pd.DataFrame, path=None) -> pd.DataFrame:
    """Check a canonical table: required columns present, positions finite."""
    missing = [c for c in CORE if c not in table.columns]
    if missing:
        raise FormatError(path, f"particle table lacks columns {missing}")
    bad = ~np.isfinite(table[POSITION].to_numpy(dtype=float)).all(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise FormatError(path, f"{int(bad.sum())} particle(s) have non-finite positions "
                                f"(first at row {first + 1})")
    return table
