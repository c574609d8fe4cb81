"""cryovis file-format toolkit: volumes, STAR files and particle sets of cryo-ET tools.

Light by design (numpy, pandas, mrcfile, starfile, emfile, tifffile, eulerangles), so it
imports inside Scipion's and ChimeraX's Pythons. Arrays are ``[z, y, x]``; coordinates
``x, y, z``; orientations are rotation matrices mapping the reference into the tomogram.
"""

from .errors import FormatError
from .particle_io import FORMATS, detect_format, read_particles, write_particles
from .particles import make_table, orientations, positions_voxels, set_orientations
from .volume import Volume, read_volume, write_volume

__all__ = [
    "FORMATS",
    "FormatError",
    "Volume",
    "detect_format",
    "make_table",
    "orientations",
    "positions_voxels",
    "read_particles",
    "read_volume",
    "set_orientations",
    "write_particles",
    "write_volume",
]
