"""Label conventions of simulated tomograms (other parts of cryovis rely on them).

* class labels: 0 background, 1 membrane, then the particle classes in ``CLASS_ORDER``,
  then the filaments (``FILAMENT_CLASSES``: labelled, but not particles);
* membrane mask: every voxel within 2.5 nm of a bilayer mid-surface (5 nm thick);
* particle instance region: the particle's density above ``INSTANCE_THRESHOLD`` of its
  interior density, plus every voxel within ``CENTRE_BALL_VOXELS`` of its centre (so hollow
  particles are hit at their centre).
"""

from __future__ import annotations

import numpy as np

from .membranes import MASK_HALF_WIDTH_ANGST
from .shapes import FIDUCIAL, INSTANCE_THRESHOLD, PROTEIN_CLASSES, RANDOM_SHAPE

BACKGROUND = 0
MEMBRANE = 1
CLASS_ORDER: tuple[str, ...] = PROTEIN_CLASSES + (FIDUCIAL,)
FILAMENT_CLASSES: tuple[str, ...] = ("microtubule", "actin")
# After the filaments, so that the older labels keep their ids.
EXTRA_CLASSES: tuple[str, ...] = (RANDOM_SHAPE,)
CENTRE_BALL_VOXELS = 2.0

__all__ = ["BACKGROUND", "CENTRE_BALL_VOXELS", "CLASS_ORDER", "EXTRA_CLASSES",
           "FILAMENT_CLASSES", "INSTANCE_THRESHOLD", "MASK_HALF_WIDTH_ANGST", "MEMBRANE",
           "centre_ball", "class_label", "label_names"]


def class_label(name: str) -> int:
    """Label id of a particle or filament class name (2, 3, ...)."""
    return (CLASS_ORDER + FILAMENT_CLASSES + EXTRA_CLASSES).index(name) + 2


def label_names() -> dict[str, int]:
    """All label names -> ids, background and membrane included."""
    out = {"background": BACKGROUND, "membrane": MEMBRANE}
    out.update({name: class_label(name)
                for name in CLASS_ORDER + FILAMENT_CLASSES + EXTRA_CLASSES})
    return out


def centre_ball(shape_zyx: tuple[int, int, int], centre_xyz: np.ndarray) -> np.ndarray:
    """Boolean mask ``[z, y, x]`` of voxels within ``CENTRE_BALL_VOXELS`` of ``centre_xyz``.

    ``centre_xyz`` is in voxels of the grid (0-based voxel centres).
    """
    z, y, x = np.ogrid[:shape_zyx[0], :shape_zyx[1], :shape_zyx[2]]
    cx, cy, cz = (float(c) for c in centre_xyz)
    return (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= CENTRE_BALL_VOXELS ** 2
