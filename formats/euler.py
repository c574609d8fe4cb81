"""Euler-angle conventions of the field, as rotation matrices (particle -> tomogram).

Angles are degrees. Conventions follow ../shared/formats/README.md section 1:

* RELION (rot, tilt, psi), ZYZ: R = from_euler('ZYZ', [rot, tilt, psi]).inv()
* Dynamo (tdrot, tilt, narot), ZXZ: R = from_euler('zxz', [tdrot, tilt, narot]).inv()
* TOM/AV3/PyTom/STOPGAP (phi, psi, theta): R = from_euler('zxz', [phi, theta, psi])

The matrices come from eulerangles (teamtomo), vectorised over (N, 3) arrays.
"""

from __future__ import annotations

import numpy as np
from eulerangles import euler2matrix, matrix2euler


def _as_n3(angles: np.ndarray) -> np.ndarray:
    return np.asarray(angles, dtype=float).reshape(-1, 3)


def _transpose(m: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.swapaxes(m, -1, -2))


def relion_to_matrix(angles: np.ndarray) -> np.ndarray:
    """(N, 3) RELION rot, tilt, psi (deg) -> (N, 3, 3) orientation R (particle -> tomogram)."""
    m = euler2matrix(_as_n3(angles), axes="zyz", intrinsic=True, right_handed_rotation=True)
    return _transpose(m.reshape(-1, 3, 3))


def matrix_to_relion(matrices: np.ndarray) -> np.ndarray:
    """(N, 3, 3) orientation R -> (N, 3) RELION rot, tilt, psi (deg)."""
    m = _transpose(np.asarray(matrices, dtype=float).reshape(-1, 3, 3))
    return np.asarray(matrix2euler(m, axes="zyz", intrinsic=True,
                                   right_handed_rotation=True)).reshape(-1, 3)


def dynamo_to_matrix(angles: np.ndarray) -> np.ndarray:
    """(N, 3) Dynamo tdrot, tilt, narot (deg) -> (N, 3, 3) orientation R."""
    m = euler2matrix(_as_n3(angles), axes="zxz", intrinsic=False, right_handed_rotation=True)
    return _transpose(m.reshape(-1, 3, 3))


def matrix_to_dynamo(matrices: np.ndarray) -> np.ndarray:
    """(N, 3, 3) orientation R -> (N, 3) Dynamo tdrot, tilt, narot (deg)."""
    m = _transpose(np.asarray(matrices, dtype=float).reshape(-1, 3, 3))
    return np.asarray(matrix2euler(m, axes="zxz", intrinsic=False,
                                   right_handed_rotation=True)).reshape(-1, 3)


def tom_to_matrix(angles: np.ndarray) -> np.ndarray:
    """(N, 3) TOM/AV3 phi, psi, theta (deg, file order) -> (N, 3, 3) orientation R."""
    a = _as_n3(angles)
    zxz = np.stack([a[:, 0], a[:, 2], a[:, 1]], axis=1)  # phi, theta, psi
    return euler2matrix(zxz, axes="zxz", intrinsic=False,
                        right_handed_rotation=True).reshape(-1, 3, 3)


def matrix_to_tom(matrices: np.ndarray) -> np.ndarray:
    """(N, 3, 3) orientation R -> (N, 3) TOM/AV3 phi, psi, theta (deg, file order)."""
    zxz = np.asarray(matrix2euler(np.asarray(matrices, dtype=float).reshape(-1, 3, 3),
                                  axes="zxz", intrinsic=False,
                                  right_handed_rotation=True)).reshape(-1, 3)
    return np.stack([zxz[:, 0], zxz[:, 2], zxz[:, 1]], axis=1)
