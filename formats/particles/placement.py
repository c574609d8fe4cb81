"""Particles placed on one tomogram: positions in that tomogram's voxels.

Every command that takes picks together with a tomogram (extraction, template matching at
given positions, classification, training) needs the same thing: the picks' ``x, y, z`` in
voxels of *that* tomogram. Two facts make this more than a read:

* RELION 4/5 centred coordinates (Å from the tomogram's centre) need the tomogram's geometry
  (size and tilt-series pixel size). When the caller gives none, the ``<stem>_tomograms.star``
  cryovis writes beside its picks is used, else the tomogram itself is taken as the
  reconstruction of an unbinned tilt series (optionally ``binning`` times finer);
* picks listed at another voxel size (their ``voxel_size`` column, e.g. picked on a binned
  copy) are rescaled to the tomogram's voxel size, since their positions are physical.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .registry import FORMATS, detect_format, read_particles
from .table import POSITION, positions_voxels


def read_particles_on(path: str | Path, shape_zyx: tuple[int, ...], voxel_size: float, *,
                      binning: float | None = None, **geometry: Any) -> pd.DataFrame:
    """Read the particle file ``path`` with positions in voxels of a tomogram.

    Args:
        path: any particle file ``read_particles`` reads.
        shape_zyx: the tomogram's array shape ``[z, y, x]`` (voxels).
        voxel_size: the tomogram's voxel size in Å.
        binning: the tomogram's binning relative to its tilt series, used only when no
            geometry is known (default 1: an unbinned tilt series at ``voxel_size``).
        **geometry: the reader's geometry options (``tomograms``, ``tomo_size_xyz``,
            ``tilt_series_pixel_size``, ``tomo_name_map``); those the file's format does not
            take are ignored, since they only matter to RELION-style centred coordinates.

    Returns:
        The canonical table, ``x, y, z`` in voxels of the tomogram and ``voxel_size`` set to
        ``voxel_size`` (positions read at another voxel size are rescaled).

    Raises:
        FormatError: the file does not parse, or its geometry is missing or inconsistent.
    """
    p = Path(path)
    name = detect_format(p)
    accepted = FORMATS[name].read_options or frozenset()
    options = {k: v for k, v in geometry.items() if v is not None and k in accepted}
    companion = p.with_name(f"{p.stem}_tomograms.star")
    if "tomograms" in accepted and "tomograms" not in options and companion.exists() \
            and "tomo_size_xyz" not in options:
        options["tomograms"] = companion
    elif "tomo_size_xyz" in accepted and not options:
        factor = binning or 1.0
        size = np.rint(np.array(shape_zyx[::-1], dtype=float) * factor).astype(int)
        options["tomo_size_xyz"] = "x".join(map(str, size))
        options["tilt_series_pixel_size"] = float(voxel_size) / factor
    table = read_particles(p, format=name, **options)
    listed = table["voxel_size"].to_numpy(dtype=float) if "voxel_size" in table else \
        np.full(len(table), np.nan)
    scale = np.where(np.isfinite(listed) & (listed > 0), listed / float(voxel_size), 1.0)
    table[POSITION] = positions_voxels(table) * scale[:, None]
    table["voxel_size"] = float(voxel_size)
    return table


def outside_tomogram(xyz: np.ndarray, shape_zyx: tuple[int, ...]) -> np.ndarray:
    """Boolean (N,): positions ``x, y, z`` (voxels) outside the voxel centres' span,
    i.e. more than half a voxel beyond the first or last voxel along an axis."""
    size = np.array(shape_zyx[::-1], dtype=float)
    return ~np.all((xyz >= -0.5) & (xyz <= size - 0.5), axis=1)
