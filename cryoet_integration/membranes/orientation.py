"""Membrane normals as orientation priors of particles (the MemBrain-pick use case).

Positions are voxels ``x, y, z``; distances voxels. A particle near a membrane gets the
orientation that maps the reference z axis onto the membrane's normal there (outwards for a
vesicle, along the sheet's plane normal for a sheet) with no in-plane rotation: in RELION's
convention that is ``rot = 0`` and the normal's ``tilt`` and ``psi``, which RELION's
``rlnAngleTiltPrior``/``rlnAnglePsiPrior`` then hold so refinement searches near them.
The matrices go through ``formats``, which writes every other convention (Dynamo, ...).
"""

from __future__ import annotations

import numpy as np

from formats import euler


def normal_matrices(normals_xyz: np.ndarray) -> np.ndarray:
    """``(n, 3, 3)`` orientations (reference -> tomogram) mapping z onto each unit normal
    ``(n, 3)`` x, y, z, with RELION ``rot = 0``."""
    n = np.asarray(normals_xyz, dtype=float).reshape(-1, 3)
    n = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    tilt = np.degrees(np.arccos(np.clip(n[:, 2], -1, 1)))
    # R e_z = (-sin(tilt) cos(psi), sin(tilt) sin(psi), cos(tilt)) for R = relion(0, tilt, psi)
    psi = np.degrees(np.arctan2(n[:, 1], -n[:, 0]))
    return euler.relion_to_matrix(np.column_stack([np.zeros(len(n)), tilt, psi]))


def nearest_normals(positions_xyz: np.ndarray, surface_xyz: np.ndarray,
                    surface_normals: np.ndarray, surface_ids: np.ndarray,
                    max_distance: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each position (voxels), the nearest surface point's normal, membrane id and
    distance (voxels); id 0 and a NaN normal where no surface point is within
    ``max_distance`` voxels."""
    from scipy.spatial import cKDTree

    pos = np.asarray(positions_xyz, dtype=float).reshape(-1, 3)
    normals = np.full((len(pos), 3), np.nan)
    ids = np.zeros(len(pos), dtype=np.int64)
    dist = np.full(len(pos), np.inf)
    if len(surface_xyz) and len(pos):
        d, k = cKDTree(surface_xyz).query(pos)
        near = d <= max_distance
        normals[near] = surface_normals[k[near]]
        ids[near] = surface_ids[k[near]]
        dist = d
    return normals, ids, dist
