"""Weighted back-projection (R-weighting) of a single-axis tilt series."""

from __future__ import annotations

import numpy as np

from .projector import back_project


def ramp_filter(n: int, cutoff: float) -> np.ndarray:
    """Ramp ``|k|`` (k in cycles/voxel) for an ``n``-sample rfft, rolled off by a cosine.

    The roll-off runs from 0.8 x ``cutoff`` to ``cutoff`` cycles/voxel, where the filter is 0.
    """
    k = np.fft.rfftfreq(n)
    start = 0.8 * cutoff
    window = np.clip((cutoff - k) / max(cutoff - start, 1e-6), 0.0, 1.0)
    window = 0.5 - 0.5 * np.cos(np.pi * window)
    return (np.abs(k) * window).astype(np.float32)


def sirt_like_weighting(n: int, iterations: int) -> np.ndarray:
    """Factor that turns the ramp into the filter of ``iterations`` SIRT/Landweber steps.

    After N steps, SIRT equals back-projection filtered by ``|k| (1 - (1 - k0/|k|)^N)``
    (Zeng 2012), with ``k0`` the lowest frequency of the padded row: a ramp at low
    frequencies that levels off above about ``N k0``, the smooth look of SIRT tomograms.
    """
    k = np.fft.rfftfreq(n)
    k0 = 1.0 / n
    ratio = np.clip(k0 / np.maximum(k, k0), 0.0, 1.0)
    return (1.0 - (1.0 - ratio) ** int(iterations)).astype(np.float32)


def weighted_back_projection(projections: np.ndarray, angles_deg: np.ndarray, nz: int,
                             cutoff: float = 0.5, sirt_iterations: int = 0) -> np.ndarray:
    """Reconstruct a (Z, Y, X) float32 volume from projections (n, Y, X) at ``angles_deg``.

    Each projection row (along x, perpendicular to the tilt axis y) is ramp-filtered with
    zero padding to twice its length, then back-projected; angles missing from the series
    stay missing (the missing wedge). ``sirt_iterations`` > 0 swaps the ramp for the
    equivalent filter of that many SIRT iterations.
    """
    n, ny, nx = projections.shape
    pad = 2 * nx
    ramp = ramp_filter(pad, cutoff)
    if sirt_iterations > 0:
        ramp = ramp * sirt_like_weighting(pad, sirt_iterations)
    spec = np.fft.rfft(projections.astype(np.float32), n=pad, axis=-1)
    filtered = np.fft.irfft(spec * ramp, n=pad, axis=-1)[..., :nx].astype(np.float32)
    step = np.deg2rad(np.ptp(angles_deg) / max(n - 1, 1)) if n > 1 else 1.0
    return back_project(filtered, angles_deg, nz) * np.float32(np.pi * step)
