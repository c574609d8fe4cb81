"""Single-axis tilt geometry: forward projection and back-projection around the y axis.

A volume ``[z, y, x]`` is tilted by ``theta`` about the y axis through its centre. The
detector coordinate of a voxel is ``u = x' cos(theta) + z' sin(theta)`` where ``x', z'`` are
voxel offsets from the volume centre, and ``u`` is an offset from the centre of a detector
row as wide as the volume. Projections are ``[y, u]`` images, one row per volume y slice.
Forward projection samples with torch (bilinear); back-projection interpolates linearly along
the detector row with numpy; both use the same geometry.
"""

from __future__ import annotations

import numpy as np


def forward_project(volume: np.ndarray, angles_deg: np.ndarray, chunk: int = 64) -> np.ndarray:
    """Line integrals of ``volume`` (C, Z, Y, X) along the beam for each tilt angle.

    Returns (n_angles, C, Y, X) float32 sums in voxel units (multiply by the voxel size in Å
    for a projected potential in V·Å). Rays are sampled every voxel along their full path
    through the box; the box is zero outside.
    """
    import torch
    import torch.nn.functional as F

    c, nz, ny, nx = volume.shape
    vol = torch.from_numpy(np.ascontiguousarray(volume.transpose(2, 0, 1, 3)))  # (Y, C, Z, X)
    u = torch.arange(nx, dtype=torch.float32) - (nx - 1) / 2
    out = np.empty((len(angles_deg), c, ny, nx), np.float32)
    with torch.no_grad():
        for i, ang in enumerate(np.deg2rad(np.asarray(angles_deg, float))):
            cos, sin = float(np.cos(ang)), float(np.sin(ang))
            half = 0.5 * (nz / max(abs(cos), 1e-3) + 2)
            half = min(half, 0.5 * float(np.hypot(nz, nx)) + 1)
            s = torch.arange(-half, half + 1e-6, 1.0, dtype=torch.float32)
            xs = u[None, :] * cos - s[:, None] * sin
            zs = u[None, :] * sin + s[:, None] * cos
            grid = torch.stack([xs / max((nx - 1) / 2, 0.5), zs / max((nz - 1) / 2, 0.5)], -1)
            for y0 in range(0, ny, chunk):
                part = vol[y0:y0 + chunk]
                g = grid[None].expand(part.shape[0], -1, -1, -1)
                sampled = F.grid_sample(part, g, mode="bilinear", padding_mode="zeros",
                                        align_corners=True)
                out[i, :, y0:y0 + chunk] = sampled.sum(dim=2).permute(1, 0, 2).numpy()
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
