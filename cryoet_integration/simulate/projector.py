"""Single-axis tilt geometry: forward projection and back-projection around the y axis.

A volume ``[z, y, x]`` is tilted by ``theta`` about the y axis through its centre. The
detector coordinate of a voxel is ``u = x' cos(theta) + z' sin(theta)`` where ``x', z'`` are
voxel offsets from the volume centre, and ``u`` is an offset from the centre of a detector
row as wide as the volume. Projections are ``[y, u]`` images, one row per volume y slice.
Both directions interpolate linearly along x / the detector row with numpy, with the same
geometry.
"""

from __future__ import annotations

import numpy as np


def forward_project(volume: np.ndarray, angles_deg: np.ndarray) -> np.ndarray:
    """Line integrals of ``volume`` (C, Z, Y, X) along the beam for each tilt angle.

    Returns (n_angles, C, Y, X) float32 sums in voxel units (multiply by the voxel size in Å
    for a projected potential in V·Å). Joseph's method: each z slice is resampled linearly
    along x onto the detector row and weighted by the ray length through the slice,
    1 / cos(theta); the box is zero outside.
    """
    c, nz, ny, nx = volume.shape
    # (Z, C*Y, X+3): zero columns on both sides stand for "outside the box"
    rows = np.pad(volume.astype(np.float32, copy=False).transpose(1, 0, 2, 3)
                  .reshape(nz, c * ny, nx), ((0, 0), (0, 0), (1, 2)))
    u = np.arange(nx, dtype=np.float64) - (nx - 1) / 2
    zs = np.arange(nz, dtype=np.float64) - (nz - 1) / 2
    out = np.empty((len(angles_deg), c, ny, nx), np.float32)
    for i, ang in enumerate(np.deg2rad(np.asarray(angles_deg, float))):
        cos, sin = float(np.cos(ang)), float(np.sin(ang))
        acc = np.zeros((c * ny, nx), np.float32)
        for k, z in enumerate(zs):
            xi = (u - z * sin) / cos + (nx - 1) / 2 + 1
            inside = (xi > 0) & (xi < nx + 1)
            if not inside.any():
                continue
            xi = np.clip(xi, 0, nx + 1)
            j0 = xi.astype(np.intp)
            w = (xi - j0).astype(np.float32)
            lo = rows[k][:, j0]
            acc += lo
            acc += (rows[k][:, j0 + 1] - lo) * w
        out[i] = (acc / np.float32(abs(cos))).reshape(c, ny, nx)
    return out


def back_project(projections: np.ndarray, angles_deg: np.ndarray, nz: int) -> np.ndarray:
    """Sum of ``projections`` (n, Y, X) smeared back along their rays into a (Z, Y, X) volume.

    The adjoint of ``forward_project`` up to interpolation; filtering is the caller's job.
    """
    n, ny, nx = projections.shape
    x = np.arange(nx, dtype=np.float32) - (nx - 1) / 2
    z = np.arange(nz, dtype=np.float32) - (nz - 1) / 2
    acc = np.zeros((ny, nz * nx), dtype=np.float32)
    for i, ang in enumerate(np.deg2rad(np.asarray(angles_deg, float))):
        q = np.pad(projections[i].astype(np.float32, copy=False), ((0, 0), (1, 2)))
        u = (z[:, None] * np.float32(np.sin(ang)) + x[None, :] * np.float32(np.cos(ang))
             + np.float32((nx - 1) / 2 + 1)).reshape(-1)
        np.clip(u, 0, nx + 1, out=u)
        j0 = u.astype(np.intp)  # u >= 0, so truncation is floor
        w = u - j0
        lo = np.take(q, j0, axis=1)
        hi = np.take(q, j0 + 1, axis=1)
        acc += lo
        acc += (hi - lo) * w
    return np.ascontiguousarray(acc.reshape(ny, nz, nx).transpose(1, 0, 2))
