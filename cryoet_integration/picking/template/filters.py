"""Fourier weights and template preparation for template matching.

Frequencies are in cycles per voxel of the tomogram (Nyquist = 0.5); Å values are converted
with the tomogram's voxel size. Arrays are ``[z, y, x]``; half spectra (``rfftn``) have
``x // 2 + 1`` columns on the last axis.

The tilt axis is the tomogram's ``y`` axis, as in the simulator's geometry (a tilt of
``theta`` records the central Fourier slice spanned by ``ky`` and ``(cos theta, sin theta)``
in ``(kx, kz)``), so a Fourier voxel is measured when ``atan(kz / kx)`` lies in the tilt
range: the missing wedge is the rest.
"""

from __future__ import annotations

import numpy as np

# Width (cycles/voxel) of the raised-cosine edges of the band-pass: wide enough to avoid
# ringing of the template, narrow enough to keep the pass band.
EDGE_WIDTH = 0.04


def frequencies(shape_zyx: tuple[int, int, int], half: bool = True) -> tuple[np.ndarray, ...]:
    """(kz, ky, kx) broadcastable frequency axes (cycles/voxel) of a (half) spectrum."""
    nz, ny, nx = shape_zyx
    kz = np.fft.fftfreq(nz)[:, None, None]
    ky = np.fft.fftfreq(ny)[None, :, None]
    kx = (np.fft.rfftfreq(nx) if half else np.fft.fftfreq(nx))[None, None, :]
    return kz, ky, kx


def radial_frequency(shape_zyx: tuple[int, int, int], half: bool = True) -> np.ndarray:
    """|k| (cycles/voxel) on the (half) spectrum grid of ``shape_zyx``."""
    kz, ky, kx = frequencies(shape_zyx, half)
    return np.sqrt(kz ** 2 + ky ** 2 + kx ** 2)


def bandpass(k: np.ndarray, low_pass: float | None, high_pass: float | None) -> np.ndarray:
    """Raised-cosine band-pass of radial frequencies ``k`` (cycles/voxel).

    ``low_pass``: nothing at or beyond this frequency passes (1 up to ``low_pass - EDGE``);
    ``high_pass``: nothing at or below it passes (1 from ``high_pass + EDGE``). None: no edge.
    """
    w = np.ones_like(k, dtype=np.float64)
    if low_pass is not None:
        t = np.clip((low_pass - k) / EDGE_WIDTH, 0.0, 1.0)
        w *= np.sin(0.5 * np.pi * t) ** 2
    if high_pass is not None:
        t = np.clip((k - high_pass) / EDGE_WIDTH, 0.0, 1.0)
        w *= np.sin(0.5 * np.pi * t) ** 2
    return w


def wedge(shape_zyx: tuple[int, int, int], tilt_range_deg: tuple[float, float],
          half: bool = True) -> np.ndarray:
    """0/1 weights of the Fourier voxels a single-axis tilt series (about y) measured, on the
    ``rfftn`` grid (``half``) or the full ``fftn`` grid (zero frequency first)."""
    lo, hi = sorted(float(t) for t in tilt_range_deg)
    kz, _, kx = np.broadcast_arrays(*frequencies(shape_zyx, half=half))
    with np.errstate(divide="ignore", invalid="ignore"):
        angle = np.degrees(np.arctan(kz / kx))  # in [-90, 90]; kx = 0 gives +-90
    angle = np.where(kx == 0, 90.0, angle)
    seen = (angle >= lo - 1e-9) & (angle <= hi + 1e-9)
    if lo <= -90.0 + 1e-9:
        seen |= angle >= 90.0 - 1e-9  # the -90 and +90 rays are the same line
    seen |= (kx == 0) & (kz == 0)
    return seen.astype(np.float64)


def ctf_weight(k_angst: np.ndarray, defocus_um: float, voltage_kv: float = 300.0,
               cs_mm: float = 2.7, amplitude_contrast: float = 0.07,
               phase_flipped: bool = False) -> np.ndarray:
    """Radial contrast transfer at ``k_angst`` (1/Å), the one CTF of ``optics``.

    Positive at low frequency for positive potential, i.e. the factor by which density turns
    into (dark) contrast; underfocus is positive. ``phase_flipped``: its absolute value.
    """
    from ...optics import ctf, ctf_phase

    chi = ctf_phase(k_angst, defocus_um * 1e4, voltage_kv, cs_mm * 1e7)
    transfer = ctf(chi, float(amplitude_contrast))
    return np.abs(transfer) if phase_flipped else transfer


def rescale_cubic(data: np.ndarray, from_voxel: float, to_voxel: float) -> np.ndarray:
    """Resample a cubic ``[z, y, x]`` map from ``from_voxel`` to ``to_voxel`` Å by Fourier
    cropping or zero padding (the centre voxel ``n // 2`` stays the centre; odd output)."""
    import scipy.fft as sfft

    n = data.shape[0]
    m = int(round(n * from_voxel / to_voxel))
    m += 1 - m % 2
    if m < 3:
        raise ValueError(f"template of {n} voxels at {from_voxel:g} Å would be {m} voxels at "
                         f"{to_voxel:g} Å")
    spec = sfft.fftshift(sfft.fftn(np.asarray(data, dtype=np.float64)))
    out = np.zeros((m, m, m), dtype=complex)
    c_in, c_out, h = n // 2, m // 2, min(n, m) // 2
    src = slice(c_in - h, c_in - h + 2 * h + 1)
    dst = slice(c_out - h, c_out - h + 2 * h + 1)
    out[dst, dst, dst] = spec[src, src, src]
    res = sfft.ifftn(sfft.ifftshift(out)).real * (m / n) ** 3
    return res.astype(np.float32)


def make_odd(data: np.ndarray) -> np.ndarray:
    """Pad an even cubic map by one voxel at the end of each axis, so voxel ``n // 2`` is the
    centre of an odd box (the rotation centre and the reported particle position)."""
    if data.shape[0] % 2:
        return data
    return np.pad(data, ((0, 1),) * 3)


def particle_radius(template: np.ndarray, fraction: float = 0.1) -> float:
    """Radius (voxels) from the centre voxel of the farthest voxel whose |density| exceeds
    ``fraction`` of the maximum |density|, plus one voxel; at most the half box."""
    n = template.shape[0]
    c = n // 2
    a = np.abs(template)
    z, y, x = np.nonzero(a > fraction * a.max())
    if len(z) == 0:
        raise ValueError("template is empty (all zeros)")
    r = float(np.sqrt((z - c) ** 2 + (y - c) ** 2 + (x - c) ** 2).max()) + 1.0
    return min(r, (n - 1) / 2)


def sphere(n: int, radius: float) -> np.ndarray:
    """0/1 ball of ``radius`` voxels around voxel ``n // 2`` of an ``n^3`` box (float32)."""
    c = n // 2
    g = np.arange(n) - c
    d2 = g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2
    return (d2 <= radius ** 2 + 1e-6).astype(np.float32)


def rotate(data: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``data`` (cubic ``[z, y, x]``) turned by ``matrix`` (x, y, z) about voxel ``n // 2``:
    ``out(p) = data(R^T p)``, trilinear with zeros beyond the box (as torch grid_sample)."""
    from scipy import ndimage

    c = np.full(3, data.shape[0] // 2, dtype=float)
    perm = np.eye(3)[::-1]
    m = perm @ np.asarray(matrix, dtype=float).T @ perm
    return ndimage.affine_transform(data, m, offset=c - m @ c, order=1, mode="grid-constant",
                                    cval=0.0, prefilter=False)


def is_rotation_invariant(mask: np.ndarray, tol: float = 0.05) -> bool:
    """Whether ``mask`` looks the same after a few arbitrary rotations (a ball does): then it
    needs no rotation with the template and the local statistics can be computed once."""
    from scipy.spatial.transform import Rotation

    total = float(np.abs(mask).sum())
    if total == 0:
        return False
    for r in Rotation.from_euler("ZYZ", [[31, 47, 113], [200, 95, -20]], degrees=True):
        diff = float(np.abs(rotate(mask, r.as_matrix()) - mask).sum())
        if diff > tol * total:
            return False
    return True
