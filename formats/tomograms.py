"""RELION 5 ``tomograms.star``: tomogram names, sizes and pixel sizes.

RELION 5 stores particle positions in Å from the tomogram centre; turning them into
voxels needs, per tomogram, the size ``rlnTomoSizeX/Y/Z`` (unbinned tilt-series px) and
the tilt-series pixel size ``rlnTomoTiltSeriesPixelSize`` (Å). This module reads and
writes that table and resolves the geometry of each particle from it or from explicit
options (``tomo_size_xyz``, ``tilt_series_pixel_size``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Union

import numpy as np
import pandas as pd

from .errors import FormatError, PathLike
from .particle_common import parse_size_xyz, positive_or_none
from .star import read_star, write_star

COLUMNS = ["tomo_name", "size_x", "size_y", "size_z", "tilt_series_pixel_size", "binning"]
TomogramsLike = Union[PathLike, pd.DataFrame, None]


def read_tomograms(path: PathLike) -> pd.DataFrame:
    """Read a RELION 5 tomograms.star (Warp 2's too).

    Returns:
        DataFrame with ``tomo_name`` (str), ``size_x, size_y, size_z`` (unbinned
        tilt-series px), ``tilt_series_pixel_size`` (Å) and ``binning``
        (rlnTomoTomogramBinning, NaN if absent), one row per tomogram.
    """
    blocks = read_star(path)
    table = None
    for block in blocks.values():
        if isinstance(block, pd.DataFrame) and "rlnTomoName" in block.columns \
                and "rlnTomoSizeX" in block.columns:
            table = block
            break
    if table is None:
        raise FormatError(path, "not a RELION 5 tomograms.star (no loop with rlnTomoName "
                                "and rlnTomoSizeX/Y/Z)")
    missing = [c for c in ("rlnTomoSizeY", "rlnTomoSizeZ", "rlnTomoTiltSeriesPixelSize")
               if c not in table.columns]
    if missing:
        raise FormatError(path, f"tomograms.star lacks {missing}")
    out = pd.DataFrame({
        "tomo_name": table["rlnTomoName"].astype(str).str.strip(),
        "size_x": pd.to_numeric(table["rlnTomoSizeX"], errors="coerce"),
        "size_y": pd.to_numeric(table["rlnTomoSizeY"], errors="coerce"),
        "size_z": pd.to_numeric(table["rlnTomoSizeZ"], errors="coerce"),
        "tilt_series_pixel_size": pd.to_numeric(table["rlnTomoTiltSeriesPixelSize"],
                                                errors="coerce"),
        "binning": pd.to_numeric(table.get("rlnTomoTomogramBinning", np.nan),
                                 errors="coerce"),
    })
    bad = out[["size_x", "size_y", "size_z", "tilt_series_pixel_size"]].isna().any(axis=1)
    if bad.any():
        raise FormatError(path, f"tomogram {out['tomo_name'][bad].iloc[0]!r} has a missing or "
                                "non-numeric size or pixel size")
    twice = out["tomo_name"][out["tomo_name"].duplicated()]
    if len(twice):
        raise FormatError(path, f"tomogram {twice.iloc[0]!r} is listed twice")
    return out.reset_index(drop=True)


def write_tomograms(path: PathLike, tomograms: pd.DataFrame, overwrite: bool = False,
                    voltage: float = 300.0, cs: float = 2.7, amplitude_contrast: float = 0.1,
                    hand: float = -1.0) -> None:
    """Write a minimal RELION 5 tomograms.star from a ``read_tomograms``-style table.

    The microscope values (kV, mm, fraction) are RELION's required columns; give the real
    ones when the file is used for reconstruction rather than only for coordinates.
    """
    t = tomograms
    binning = t["binning"] if "binning" in t else pd.Series(np.nan, index=t.index)
    block = pd.DataFrame({
        "rlnTomoName": t["tomo_name"].astype(str),
        "rlnVoltage": float(voltage),
        "rlnSphericalAberration": float(cs),
        "rlnAmplitudeContrast": float(amplitude_contrast),
        "rlnMicrographOriginalPixelSize": t["tilt_series_pixel_size"].astype(float),
        "rlnTomoHand": float(hand),
        "rlnOpticsGroupName": "optics1",
        "rlnTomoTiltSeriesPixelSize": t["tilt_series_pixel_size"].astype(float),
        "rlnTomoTomogramBinning": binning.fillna(1.0).astype(float),
        "rlnTomoSizeX": t["size_x"].round().astype(np.int64),
        "rlnTomoSizeY": t["size_y"].round().astype(np.int64),
        "rlnTomoSizeZ": t["size_z"].round().astype(np.int64),
    })
    write_star(path, {"global": block}, overwrite=overwrite, version="50001")


def as_tomograms(tomograms: TomogramsLike, path: PathLike | None) -> pd.DataFrame | None:
    """A tomograms table from a path, an existing table, or None."""
    if tomograms is None:
        return None
    if isinstance(tomograms, pd.DataFrame):
        return tomograms
    p = Path(tomograms)
    if not p.exists():
        raise FormatError(p, "no such tomograms.star")
    return read_tomograms(p)


def geometry(names: pd.Series, path: PathLike | None, tomograms: TomogramsLike = None,
             tomo_size_xyz: Any = None, tilt_series_pixel_size: Any = None,
             need_size: bool = True, fallback_pixel: np.ndarray | None = None,
             ) -> tuple[np.ndarray, np.ndarray]:
    """Per-particle tomogram size (N, 3; unbinned px) and tilt-series pixel size (N,; Å).

    Explicit options win over ``tomograms``; ``fallback_pixel`` (e.g. the optics table's
    value) is used where neither gives a pixel size. Raises FormatError naming what is
    missing when a size (if ``need_size``) or a pixel size cannot be found.
    """
    n = len(names)
    size = np.full((n, 3), np.nan)
    # a copy: the fallback may be a read-only view of a pandas column (copy-on-write)
    pixel = np.full(n, np.nan) if fallback_pixel is None else np.array(fallback_pixel, float)
    tomos = as_tomograms(tomograms, path)
    if tomos is not None:
        keyed = tomos.set_index("tomo_name")
        codes, uniques = pd.factorize(names, use_na_sentinel=False)
        uniques = [str(u) for u in uniques]
        unknown = sorted(set(uniques) - set(keyed.index))
        if unknown and tomo_size_xyz is None:
            raise FormatError(path, f"tomogram(s) {unknown[:5]} are not in tomograms.star "
                                    f"(it lists {list(keyed.index)[:8]}); names must match "
                                    "exactly")
        cols = ["size_x", "size_y", "size_z", "tilt_series_pixel_size"]
        per_unique = keyed.reindex(uniques)[cols].to_numpy(dtype=float)[codes]
        size[:] = per_unique[:, :3]
        pixel = np.where(np.isfinite(per_unique[:, 3]), per_unique[:, 3], pixel)
    explicit_size = parse_size_xyz(tomo_size_xyz, path)
    if explicit_size is not None:
        size[:] = explicit_size
    explicit_px = positive_or_none(tilt_series_pixel_size, "tilt-series pixel size", path)
    if explicit_px is not None:
        pixel[:] = explicit_px
    if need_size and n and not np.isfinite(size).all():
        raise FormatError(path, "RELION 5 centred coordinates need the tomogram sizes "
                                "(rlnTomoSizeX/Y/Z): pass tomograms=tomograms.star "
                                "(--tomograms) or tomo_size_xyz (--tomo-size XxYxZ, unbinned "
                                "tilt-series px)")
    if n and not np.isfinite(pixel).all():
        raise FormatError(path, "the tilt-series pixel size is unknown: pass "
                                "tomograms=tomograms.star (--tomograms) or "
                                "tilt_series_pixel_size (--tilt-series-pixel-size)")
    return size, pixel
