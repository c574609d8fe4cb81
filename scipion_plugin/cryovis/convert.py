"""Between Scipion objects and the engine's files (canonical particle tables of ``formats``).

Positions: the engine's are ``x, y, z`` voxels of the tomogram, 0-based voxel centres; tomo's
``BOTTOM_LEFT_CORNER`` convention counts voxels from the same corner, so they carry over
unchanged. Orientations: the engine's matrix R maps the particle (reference) frame into the
tomogram; Scipion's M is defined by moved(r) = reference(M r), so M = R^-1 = R^T.
"""

import numpy as np
import pandas as pd
from pyworkflow.object import String
from tomo.constants import BOTTOM_LEFT_CORNER
from tomo.objects import Coordinate3D

from formats import make_table, orientations, positions_voxels

from .constants import COORD_CLASS_ATTR


def scipionMatrix(rotation):
    """4x4 Scipion transformation of an engine orientation (3x3, reference -> tomogram)."""
    matrix = np.eye(4)
    matrix[:3, :3] = np.asarray(rotation, dtype=float).T
    return matrix


def engineRotation(matrix):
    """The engine orientation (3x3, reference -> tomogram) of a Scipion transformation."""
    return np.asarray(matrix, dtype=float)[:3, :3].T


def coordinatesFromTable(table, tomo):
    """Coordinate3D objects of one tomogram's picks (a canonical table in its voxels)."""
    xyz = positions_voxels(table)
    rotations = orientations(table)
    scores = table["score"].to_numpy(dtype=float)
    classes = table["class"].tolist()
    for (x, y, z), rot, score, cls in zip(xyz, rotations, scores, classes):
        coord = Coordinate3D()
        coord.setVolume(tomo)
        coord.setPosition(float(x), float(y), float(z), BOTTOM_LEFT_CORNER)
        coord.setMatrix(scipionMatrix(rot))
        coord.setScore(float(score) if np.isfinite(score) else 0.0)
        setattr(coord, COORD_CLASS_ATTR, String("" if cls is None else str(cls)))
        yield coord


def tableFromCoordinates(coordSet):
    """The canonical table of a SetOfCoordinates3D (voxels of its tomograms, its sampling)."""
    xyz, rots, names, classes, scores = [], [], [], [], []
    for coord in coordSet.iterCoordinates(orderBy="id"):
        xyz.append(coord.getPosition(BOTTOM_LEFT_CORNER))
        rots.append(engineRotation(coord.getMatrix()))
        names.append(coord.getTomoId())
        cls = getattr(coord, COORD_CLASS_ATTR, None)
        classes.append(cls.get() if cls is not None and cls.get() else None)
        scores.append(coord.getScore())
    n = len(xyz)
    return make_table(np.reshape(np.asarray(xyz, dtype=float), (n, 3)),
                      voxel_size=coordSet.getSamplingRate(),
                      matrices=np.reshape(np.asarray(rots, dtype=float), (n, 3, 3)),
                      tomo_name=names, classes=classes, scores=scores)


def tomogramsTable(tomos):
    """RELION 5 tomograms.star rows (``global`` block) for ``{name: Tomogram}``.

    Sizes are the tomograms' own voxels; the tilt-series pixel size is their sampling rate
    with binning 1 (Scipion keeps no link to unbinned tilt series on a SetOfTomograms).
    """
    rows = []
    for name, tomo in tomos.items():
        acq = tomo.getAcquisition()
        x, y, z = tomo.getDimensions()
        rows.append({
            "rlnTomoName": name,
            "rlnVoltage": float(acq.getVoltage() or 300.0),
            "rlnSphericalAberration": float(acq.getSphericalAberration() or 2.7),
            "rlnAmplitudeContrast": float(acq.getAmplitudeContrast() or 0.1),
            "rlnMicrographOriginalPixelSize": float(tomo.getSamplingRate()),
            "rlnTomoHand": -1,
            "rlnTomoTiltSeriesPixelSize": float(tomo.getSamplingRate()),
            "rlnTomoTomogramBinning": 1.0,
            "rlnTomoSizeX": int(x), "rlnTomoSizeY": int(y), "rlnTomoSizeZ": int(z),
            "rlnTomoReconstructedTomogram": tomo.getFileName(),
        })
    return pd.DataFrame(rows)
