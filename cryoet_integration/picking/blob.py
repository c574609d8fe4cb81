"""Difference-of-Gaussians (DoG) blob picker: the picking baseline.

A particle of diameter ``d`` is a blob; the Laplacian-of-Gaussian response of a solid ball
of radius ``r`` peaks at the scale sigma = r / sqrt(3), and a difference of two Gaussians
whose scales bracket that sigma (ratio 1.6) approximates it. Local maxima of the response,
at least a minimum distance apart, whose robust z-score (median / MAD of the whole
response) exceeds a threshold are the picks.

Raw cryo-ET has dark particles on a lighter background (more mass scatters more electrons
away), so by default the tomogram is inverted first; ``polarity="light"`` is for tomograms
already inverted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from formats import Volume, make_table

from ..preprocess import robust_normalize

DOG_RATIO = 1.6
# Robust statistics from every third voxel along each axis are plenty for a whole tomogram.
SAMPLE_STEP = 3


def dog_response(data: np.ndarray, radius_voxels: float, polarity: str = "dark") -> np.ndarray:
    """DoG filter ``[z, y, x]`` tuned to balls of ``radius_voxels``; positive on particles."""
    from scipy import ndimage

    if polarity not in ("dark", "light"):
        raise ValueError(f"polarity must be 'dark' or 'light', got {polarity!r}")
    signal = np.asarray(data, dtype=np.float32)
    if polarity == "dark":
        signal = -signal
    sigma = max(radius_voxels / np.sqrt(3.0), 0.5)
    small, large = sigma / np.sqrt(DOG_RATIO), sigma * np.sqrt(DOG_RATIO)
    return ndimage.gaussian_filter(signal, small) - ndimage.gaussian_filter(signal, large)


def pick_blobs(
    tomogram: Volume,
    diameter_angst: float,
    polarity: str = "dark",
    threshold_z: float = 4.0,
    min_distance_angst: float | None = None,
    border_angst: float | None = None,
    max_picks: int | None = None,
    class_name: str = "blob",
) -> pd.DataFrame:
    """Pick blob-like particles of about ``diameter_angst`` in a tomogram.

    Args:
        tomogram: the tomogram (``data [z, y, x]``; its ``voxel_size`` in Å must be known).
        diameter_angst: expected particle diameter in Å.
        polarity: "dark" (raw cryo-ET: particles darker than the background) or "light".
        threshold_z: minimum robust z-score of the DoG response at a pick.
        min_distance_angst: minimum distance between picks (Å); default the particle radius.
        border_angst: picks closer than this to the volume edge are dropped (Å); default
            the particle radius, where the filter sees the padding.
        max_picks: keep at most this many picks (highest scores).
        class_name: class written into the table.

    Returns:
        Canonical particle table, positions in voxels of ``tomogram`` at its voxel size,
        ``score`` = robust z-score of the DoG response, sorted by decreasing score.
    """
    from scipy import ndimage

    vs = float(tomogram.voxel_size)
    if not vs > 0:
        raise ValueError("the tomogram has no voxel size; pass one (Å) to compute the "
                         "particle size in voxels")
    if not diameter_angst > 0:
        raise ValueError(f"particle diameter must be positive, got {diameter_angst} Å")
    data = np.asarray(tomogram.data)
    if data.ndim != 3:
        raise ValueError(f"tomogram must be 3D, got shape {data.shape}")
    radius = diameter_angst / 2 / vs
    zscore = robust_normalize(dog_response(data, radius, polarity), axis_step=SAMPLE_STEP)
    min_dist = (min_distance_angst if min_distance_angst is not None else diameter_angst / 2) / vs
    size = 2 * max(int(round(min_dist)), 1) + 1
    peaks = (ndimage.maximum_filter(zscore, size=size, mode="nearest") == zscore)
    peaks &= zscore >= threshold_z
    border = int(np.ceil((border_angst if border_angst is not None else diameter_angst / 2) / vs))
    if border > 0:
        inner = np.zeros_like(peaks)
        inner[border:-border, border:-border, border:-border] = True
        peaks &= inner
    z, y, x = np.nonzero(peaks)
    scores = zscore[z, y, x]
    order = np.argsort(-scores, kind="stable")
    if max_picks is not None:
        order = order[:max_picks]
    xyz = np.stack([x[order], y[order], z[order]], axis=1).astype(float)
    return make_table(xyz, voxel_size=vs, classes=[class_name] * len(order),
                      scores=scores[order].astype(float),
                      tomo_name=Path(tomogram.path).stem if tomogram.path else None)
