"""Euler-angle conventions of the field, as rotation matrices (particle -> tomogram).

Angles are degrees. Conventions follow docs/formats.md (Euler angles)
(``from_euler`` below means scipy's, uppercase axes = intrinsic):

* RELION (rot, tilt, psi), ZYZ: R = from_euler('ZYZ', [rot, tilt, psi]).inv()
* Dynamo (tdrot, tilt, narot), ZXZ: R = from_euler('zxz', [tdrot, tilt, narot]).inv()
* TOM/AV3/PyTom/STOPGAP (phi, psi, theta): R = from_euler('zxz', [phi, theta, psi])

Everything is vectorised numpy over (N, 3) angle arrays and (N, 3, 3) matrices. The
matrix -> angle direction is written here rather than taken from eulerangles because
eulerangles snaps tilts within ~0.3 degrees of 0 or 180 to the gimbal-lock branch, which
moves the orientation by up to 1e-3; here the branch is taken only for |sin(tilt)| < 1e-9
and every matrix comes back to within 1e-9 (1e-15 away from gimbal lock). Tests check both
directions against scipy and eulerangles on the worked examples of the formats reference.
"""

from __future__ import annotations

import numpy as np

_GIMBAL = 1e-9


def _as_n3(angles: np.ndarray) -> np.ndarray:
    return np.asarray(angles, dtype=float).reshape(-1, 3)


def _as_n33(matrices: np.ndarray) -> np.ndarray:
    return np.asarray(matrices, dtype=float).reshape(-1, 3, 3)


def _rz_rmid_rz(a: np.ndarray, b: np.ndarray, c: np.ndarray, mid: str,
                transpose: bool = False) -> np.ndarray:
    """Rz(a) . R_mid(b) . Rz(c) (or its transpose) for mid axis 'y' or 'x' (radians)."""
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    full = np.empty((len(a), 3, 3))
    m = np.swapaxes(full, 1, 2) if transpose else full
    if mid == "y":
        m[:, 0, 0] = ca * cb * cc - sa * sc
        m[:, 0, 1] = -ca * cb * sc - sa * cc
        m[:, 0, 2] = ca * sb
        m[:, 1, 0] = sa * cb * cc + ca * sc
        m[:, 1, 1] = -sa * cb * sc + ca * cc
        m[:, 1, 2] = sa * sb
        m[:, 2, 0] = -sb * cc
        m[:, 2, 1] = sb * sc
    else:
        m[:, 0, 0] = ca * cc - sa * cb * sc
        m[:, 0, 1] = -ca * sc - sa * cb * cc
        m[:, 0, 2] = sa * sb
        m[:, 1, 0] = sa * cc + ca * cb * sc
        m[:, 1, 1] = -sa * sc + ca * cb * cc
        m[:, 1, 2] = -ca * sb
        m[:, 2, 0] = sb * sc
        m[:, 2, 1] = sb * cc
    m[:, 2, 2] = cb
    return full


def _angles_rz_rmid_rz(m: np.ndarray, mid: str) -> np.ndarray:
    """(a, b, c) in degrees with m = Rz(a) . R_mid(b) . Rz(c), b in [0, 180]."""
    sb = np.hypot(m[:, 0, 2], m[:, 1, 2])
    b = np.arctan2(sb, m[:, 2, 2])
    if mid == "y":
        a = np.arctan2(m[:, 1, 2], m[:, 0, 2])
        c = np.arctan2(m[:, 2, 1], -m[:, 2, 0])
    else:
        a = np.arctan2(m[:, 0, 2], -m[:, 1, 2])
        c = np.arctan2(m[:, 2, 0], m[:, 2, 1])
    lock = sb < _GIMBAL
    if lock.any():
        # Only a +- c is defined: put it all in a, c = 0.
        up = m[:, 2, 2] > 0
        flip = -1.0 if mid == "y" else 1.0
        a_up = np.arctan2(m[:, 1, 0], m[:, 0, 0])
        a_down = np.arctan2(flip * m[:, 1, 0], flip * m[:, 0, 0])
        a = np.where(lock, np.where(up, a_up, a_down), a)
        c = np.where(lock, 0.0, c)
    return np.degrees(np.stack([a, b, c], axis=1))


def relion_to_matrix(angles: np.ndarray) -> np.ndarray:
    """(N, 3) RELION rot, tilt, psi (deg) -> (N, 3, 3) orientation R (particle -> tomogram)."""
    a = np.radians(_as_n3(angles))
    return _rz_rmid_rz(a[:, 0], a[:, 1], a[:, 2], "y", transpose=True)


def matrix_to_relion(matrices: np.ndarray) -> np.ndarray:
    """(N, 3, 3) orientation R -> (N, 3) RELION rot, tilt, psi (deg), tilt in [0, 180]."""
    return _angles_rz_rmid_rz(np.swapaxes(_as_n33(matrices), 1, 2), "y")


def dynamo_to_matrix(angles: np.ndarray) -> np.ndarray:
    """(N, 3) Dynamo tdrot, tilt, narot (deg) -> (N, 3, 3) orientation R."""
    a = np.radians(_as_n3(angles))
    # extrinsic zxz (tdrot, tilt, narot) = Rz(narot) Rx(tilt) Rz(tdrot); R is its inverse
    return _rz_rmid_rz(a[:, 2], a[:, 1], a[:, 0], "x", transpose=True)


def matrix_to_dynamo(matrices: np.ndarray) -> np.ndarray:
    """(N, 3, 3) orientation R -> (N, 3) Dynamo tdrot, tilt, narot (deg)."""
    narot_tilt_tdrot = _angles_rz_rmid_rz(np.swapaxes(_as_n33(matrices), 1, 2), "x")
    return narot_tilt_tdrot[:, ::-1].copy()


def tom_to_matrix(angles: np.ndarray) -> np.ndarray:
    """(N, 3) TOM/AV3 phi, psi, theta (deg, file order) -> (N, 3, 3) orientation R."""
    a = np.radians(_as_n3(angles))
    # extrinsic zxz (phi, theta, psi) = Rz(psi) Rx(theta) Rz(phi), not inverted
    return _rz_rmid_rz(a[:, 1], a[:, 2], a[:, 0], "x")


def matrix_to_tom(matrices: np.ndarray) -> np.ndarray:
    """(N, 3, 3) orientation R -> (N, 3) TOM/AV3 phi, psi, theta (deg, file order)."""
    psi_theta_phi = _angles_rz_rmid_rz(_as_n33(matrices), "x")
    return np.stack([psi_theta_phi[:, 2], psi_theta_phi[:, 0], psi_theta_phi[:, 1]], axis=1)


def imod_slicer_to_matrix(angles: np.ndarray) -> np.ndarray:
    """(N, 3) IMOD slicer angles x_rot, y_rot, z_rot (deg) -> (N, 3, 3) orientation R.

    As the CZ cryoET Data Portal imports PEET-style models: R = from_euler('xyz',
    [-x_rot, -y_rot, -z_rot]) (extrinsic), i.e. Rz(-z) . Ry(-y) . Rx(-x).
    """
    a, b, c = np.radians(-_as_n3(angles)).T
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    m = np.empty((len(a), 3, 3))
    m[:, 0] = np.stack([cc * cb, cc * sb * sa - sc * ca, cc * sb * ca + sc * sa], axis=1)
    m[:, 1] = np.stack([sc * cb, sc * sb * sa + cc * ca, sc * sb * ca - cc * sa], axis=1)
    m[:, 2] = np.stack([-sb, cb * sa, cb * ca], axis=1)
    return m


def matrix_to_imod_slicer(matrices: np.ndarray) -> np.ndarray:
    """(N, 3, 3) orientation R -> (N, 3) IMOD slicer angles x_rot, y_rot, z_rot (deg)."""
    m = _as_n33(matrices)
    cb = np.hypot(m[:, 0, 0], m[:, 1, 0])
    b = np.arctan2(-m[:, 2, 0], cb)
    a = np.arctan2(m[:, 2, 1], m[:, 2, 2])
    c = np.arctan2(m[:, 1, 0], m[:, 0, 0])
    lock = cb < _GIMBAL
    if lock.any():
        # b = +-90 deg: only a -+ c is defined; put it all in c, a = 0.
        up = m[:, 2, 0] < 0
        c_lock = np.where(up, -np.arctan2(m[:, 0, 1], m[:, 1, 1]),
                          np.arctan2(-m[:, 0, 1], m[:, 1, 1]))
        a = np.where(lock, 0.0, a)
        c = np.where(lock, c_lock, c)
    return -np.degrees(np.stack([a, b, c], axis=1))
