"""``cryovis open`` and ``cryovis save``: particle files <-> marker sets, through ``formats``.

Every particle format ``formats`` knows is read (RELION 3.0-5, Dynamo, IMOD, EMAN2,
crYOLO, copick, PyTom, TOM/AV3, STOPGAP, CSV). Markers sit on the tomogram's grid (voxel
size and origin honoured, see :mod:`markers`); saving maps them back to voxel indices of
the tomogram, with the orientations, classes and scores the markers carry.
"""

from __future__ import annotations

import os
from pathlib import Path

from chimerax.core.commands import (
    BoolArg,
    CmdDesc,
    FloatArg,
    ModelArg,
    OpenFileNameArg,
    SaveFileNameArg,
    StringArg,
)
from chimerax.core.errors import UserError

from . import volumes
from .markers import create_marker_set, table_from_markers


def _formats():
    import formats

    return formats


def _relion_geometry(fmt: str, tomogram, tomograms: str | None) -> dict:
    """Options RELION 5's centred Å coordinates need: the tomogram size and pixel size."""
    if tomograms is not None:
        return {"tomograms": tomograms}
    if fmt != "relion5" or tomogram is None:
        return {}
    nx, ny, nz = (int(s) for s in tomogram.data.size)
    return {"tomo_size_xyz": f"{nx}x{ny}x{nz}",
            "tilt_series_pixel_size": volumes.voxel_size(tomogram)}


def cryovis_open(session, path, tomogram=None, format=None, voxel_size=None, tomograms=None,
                 radius=None, name=None):
    """Open a particle file as a marker set placed on ``tomogram``.

    Args:
        path: particle file.
        tomogram: the tomogram volume the particles belong to (recommended: without it the
            markers sit at the file's Å positions from the origin).
        format: one of ``formats.FORMATS`` (default: from the file).
        voxel_size: Å per pixel of the file's coordinates, when the file does not say.
        tomograms: RELION 5 tomograms.star for sizes and pixel sizes.
        radius: marker radius in Å.
    """
    fmts = _formats()
    tomo = volumes.require_volume(tomogram, "cryovis open") if tomogram is not None else None
    p = Path(os.path.expanduser(path))
    try:
        fmt = format or fmts.detect_format(p)
        options = _relion_geometry(fmt, tomo, tomograms)
        if voxel_size is not None:
            options["voxel_size"] = voxel_size
        table = fmts.read_particles(p, format=fmt, **options)
    except (fmts.FormatError, ValueError, OSError) as exc:
        raise UserError(f"cryovis open: {' '.join(str(exc).split())}") from None
    ms = create_marker_set(session, table, name or p.name, tomogram=tomo, radius=radius)
    where = (f"on #{tomo.id_string} ({tomo.name})" if tomo is not None
             else "at the file's Å positions (no tomogram given)")
    session.logger.info(f"cryovis open: {len(table)} particles from {p} ({fmt}) as markers "
                        f"#{ms.id_string} {where}")
    return ms


def cryovis_save(session, markers, path, format=None, tomogram=None, tomograms=None,
                 force=False):
    """Save a marker set as a particle file (positions in voxels of its tomogram)."""
    from chimerax.markers import MarkerSet

    fmts = _formats()
    if not isinstance(markers, MarkerSet):
        raise UserError(f"cryovis save: #{markers.id_string} ({markers.name}) is a "
                        f"{type(markers).__name__}, not a marker set")
    tomo = (volumes.require_volume(tomogram, "cryovis save") if tomogram is not None
            else getattr(markers, "cryovis_tomogram", None))
    if tomo is not None and tomo.deleted:
        tomo = None
    p = Path(os.path.expanduser(path))
    if p.exists() and not force:
        raise UserError(f"cryovis save: {p}: file exists (add 'force true' to overwrite)")
    if not p.parent.is_dir():
        raise UserError(f"cryovis save: {p}: folder {p.parent} does not exist")
    table = table_from_markers(markers, tomo)
    try:
        fmt = format or fmts.detect_format(p)
        fmts.write_particles(p, table, format=fmt, overwrite=force,
                             **_relion_geometry(fmt, tomo, tomograms))
    except (fmts.FormatError, ValueError, OSError) as exc:
        raise UserError(f"cryovis save: {' '.join(str(exc).split())}") from None
    session.logger.info(f"cryovis save: {len(table)} particles of #{markers.id_string} to "
                        f"{p} ({fmt}, voxels of #{tomo.id_string} at "
                        f"{table['voxel_size'].iloc[0]:g} Å)")
    return str(p)


open_desc = CmdDesc(
    required=[("path", OpenFileNameArg)],
    keyword=[("tomogram", ModelArg), ("format", StringArg),
             ("voxel_size", FloatArg), ("tomograms", OpenFileNameArg),
             ("radius", FloatArg), ("name", StringArg)],
    synopsis="open a particle file as markers on a tomogram",
    url="help:user/commands/cryovis_open.html")


save_desc = CmdDesc(
    required=[("markers", ModelArg), ("path", SaveFileNameArg)],
    keyword=[("format", StringArg), ("tomogram", ModelArg),
             ("tomograms", OpenFileNameArg), ("force", BoolArg)],
    synopsis="save markers as a particle file (RELION, Dynamo, ...)",
    url="help:user/commands/cryovis_save.html")
