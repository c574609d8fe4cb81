"""Particle picking: the difference-of-Gaussians blob picker (the baseline every picker must
beat); heavier pickers live in their own modules.

Pickers return the canonical particle table of ``formats.particles`` (positions in voxels
of the tomogram, ``score`` per pick).
"""

from .blob import pick_blobs

__all__ = ["pick_blobs"]
