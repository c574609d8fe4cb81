"""cryovis file-format toolkit: volumes, STAR files and particle sets of cryo-ET tools.

Light by design (numpy, pandas, mrcfile, emfile, tifffile), so it imports inside Scipion's
and ChimeraX's Pythons. Arrays are ``[z, y, x]``; coordinates ``x, y, z``; orientations are
rotation matrices mapping the reference into the tomogram.

Layout: ``volumes/`` (MRC, EM, TIFF), ``particles/`` (the canonical table, the format
registry, one module per tool, Euler conventions, tomograms.star), ``text/`` (STAR syntax
and fast column formatting), ``tiltseries/`` (SerialEM mdoc), ``summary`` (what
``cryovis info`` reports, built on the readers). Code outside this package imports only
the names below.
"""

from .atomic import atomic_path, check_writable
from .errors import FormatError, FormatWarning
from .particles import euler
from .particles.common import tomo_name_from_path
from .particles.motl import is_motive_list
from .particles.placement import outside_tomogram, read_particles_on
from .particles.registry import FORMATS, detect_format, read_particles, write_particles
from .particles.table import make_table, orientations, positions_voxels, set_orientations
from .particles.tomograms import normalise_tomo_name, read_tomograms, write_tomograms
from .projects.copick import is_copick_project
from .projects.copick import open_project as open_copick_project
from .summary import describe
from .text.star import read_star, write_star
from .volumes import em as _em
from .volumes import mrc as _mrc
from .volumes import omezarr as _omezarr
from .volumes import tiff as _tiff
from .volumes.mrc import MrcBlockWriter
from .volumes.pages import file_map, read_rows, release_pages, slabs
from .volumes.volume import Volume, check_finite, invert_contrast, read_volume, write_volume

# Extensions ``read_volume`` reads (an .em may instead be a motive list: ``is_motive_list``;
# a .zarr is an OME-Zarr folder).
VOLUME_SUFFIXES = frozenset(_mrc.SUFFIXES | _em.SUFFIXES | _tiff.SUFFIXES | _omezarr.SUFFIXES)
MRC_SUFFIXES = frozenset(_mrc.SUFFIXES)

__all__ = [
    "FORMATS",
    "FormatError",
    "FormatWarning",
    "MRC_SUFFIXES",
    "MrcBlockWriter",
    "VOLUME_SUFFIXES",
    "Volume",
    "atomic_path",
    "check_finite",
    "check_writable",
    "describe",
    "detect_format",
    "euler",
    "file_map",
    "invert_contrast",
    "is_copick_project",
    "is_motive_list",
    "make_table",
    "normalise_tomo_name",
    "open_copick_project",
    "orientations",
    "outside_tomogram",
    "positions_voxels",
    "read_particles",
    "read_particles_on",
    "read_rows",
    "read_star",
    "read_tomograms",
    "read_volume",
    "release_pages",
    "set_orientations",
    "slabs",
    "tomo_name_from_path",
    "write_particles",
    "write_star",
    "write_tomograms",
    "write_volume",
]
