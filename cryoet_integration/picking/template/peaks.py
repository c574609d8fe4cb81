"""Peaks of a template-matching score map and the false-positive score cut-off.

The cut-off follows pytom-match-pick (Chaillet et al. 2023): if single-orientation scores of
background are Gaussian with standard deviation ``sigma``, a search space of
``n_voxels * n_orientations`` values holds ``n_fp`` false positives on average above

    erfcinv(2 n_fp / search_space) * sqrt(2) * sigma.
"""

from __future__ import annotations

import numpy as np

from ..peaks import suppress_close


def false_positive_threshold(sigma: float, search_space: float,
                             n_false_positives: float = 1.0) -> float:
    """Score above which ``n_false_positives`` background values are expected.

    Args:
        sigma: standard deviation of single-orientation scores over the search.
        search_space: number of (voxel, orientation) scores searched.
        n_false_positives: tolerated expected number of false positives (> 0).
    """
    from scipy.special import erfcinv

    if not n_false_positives > 0:
        raise ValueError(f"expected false positives must be > 0, got {n_false_positives}")
    if not search_space > 2 * n_false_positives:
        raise ValueError("search space too small for the false-positive cut-off")
    return float(erfcinv(2.0 * n_false_positives / search_space) * np.sqrt(2.0) * sigma)


def extract_peaks(scores: np.ndarray, radius: float, threshold: float,
                  max_peaks: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Greedy peak picking: the highest score, then the next one farther than ``radius``...

    Args:
        scores: (Z, Y, X) score map.
        radius: exclusion radius in voxels (no two peaks closer than this).
        threshold: only scores strictly above it.
        max_peaks: keep at most this many (highest first).
    Returns:
        (P, 3) integer positions ``x, y, z`` (voxels) and their (P,) scores, best first.
    """
    from scipy import ndimage

    local_max = ndimage.maximum_filter(scores, size=3, mode="constant", cval=-np.inf)
    zyx = np.argwhere((scores == local_max) & (scores > threshold))
    values = scores[tuple(zyx.T)]
    order = np.argsort(-values, kind="stable")
    zyx, values = zyx[order], values[order]
    keep = suppress_close(zyx, radius, max_kept=max_peaks)
    return zyx[keep][:, ::-1].astype(int), values[keep].astype(float)
