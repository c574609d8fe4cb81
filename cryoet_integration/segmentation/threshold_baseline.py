"""Thresholded smoothed density: the membrane-segmentation baseline.

Membranes are dense (dark in raw cryo-ET) sheets about 4-5 nm thick. The baseline inverts
the contrast, smooths with a Gaussian whose FWHM is the membrane thickness (a matched
filter for the sheet's cross-section), removes slow background variations (ice thickness,
reconstruction ramps) with a much wider Gaussian, standardises the result by its median
and MAD, and thresholds it (a percentile by default; Otsu on the upper tail or a fixed z-score on
request). Connected components smaller than a minimum size can be dropped.
It knows nothing about shape beyond scale, so dense particles and the ice surface also
light up: it is the floor a learned segmenter must clear, not a method to use.
"""

from __future__ import annotations

import numpy as np

from formats import Volume

from ..preprocess import robust_normalize

FWHM_TO_SIGMA = 1.0 / 2.3548


def membrane_evidence(tomogram: Volume, thickness_angst: float = 45.0, polarity: str = "dark",
                      background_angst: float | None = None) -> np.ndarray:
    """Robust z-score ``[z, y, x]`` of the band-passed, contrast-corrected density."""
    from scipy import ndimage

    vs = float(tomogram.voxel_size)
    if not vs > 0:
        raise ValueError("the tomogram has no voxel size; pass one (Å)")
    if polarity not in ("dark", "light"):
        raise ValueError(f"polarity must be 'dark' or 'light', got {polarity!r}")
    data = np.asarray(tomogram.data, dtype=np.float32)
    if data.ndim != 3:
        raise ValueError(f"tomogram must be 3D, got shape {data.shape}")
    signal = -data if polarity == "dark" else data
    sigma = max(thickness_angst * FWHM_TO_SIGMA / vs, 0.5)
    wide = (background_angst if background_angst is not None else 6 * thickness_angst) / vs
    smooth = ndimage.gaussian_filter(signal, sigma)
    smooth -= ndimage.gaussian_filter(signal, max(wide * FWHM_TO_SIGMA, 2 * sigma))
    # statistics on an even grid of every third voxel, as the blob picker's
    return robust_normalize(smooth, axis_step=3)


def choose_threshold(evidence: np.ndarray, method: str = "percentile",
                     value: float | None = None) -> float:
    """Threshold on the z-scored evidence.

    ``"otsu"``: Otsu's threshold of the voxels above the median (membranes are a small
    bright tail, so Otsu on all voxels would split the noise in half); ``"percentile"``:
    the ``value``-th percentile (default 90); ``"zscore"``: ``value`` itself (default 2).
    """
    if method == "otsu":
        from skimage.filters import threshold_otsu

        tail = evidence[::2, ::2, ::2]
        tail = tail[tail > 0]
        return float(threshold_otsu(tail)) if tail.size > 1 else 0.0
    if method == "percentile":
        return float(np.percentile(evidence[::2, ::2, ::2], 90.0 if value is None else value))
    if method == "zscore":
        return 2.0 if value is None else float(value)
    raise ValueError(f"threshold method must be otsu, percentile or zscore, got {method!r}")


def membrane_map(
    tomogram: Volume,
    thickness_angst: float = 45.0,
    polarity: str = "dark",
    method: str = "percentile",
    value: float | None = None,
    min_size_voxels: int = 0,
    softness: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Membrane soft map and mask of a tomogram by thresholding its smoothed density.

    Args:
        tomogram: the tomogram (``data [z, y, x]``, ``voxel_size`` in Å).
        thickness_angst: membrane thickness (Å); sets the smoothing scale.
        polarity: "dark" (raw cryo-ET: membranes darker than the background) or "light".
        method, value: thresholding rule, see :func:`choose_threshold`; the default keeps
            the top 10 % of the evidence (membranes fill a few % of a cellular tomogram).
        min_size_voxels: connected components (26-connected) smaller than this are dropped
            (0: keep all; on simulated tomograms dropping them did not help, because at
            this threshold membranes are as fragmented as the particles are compact).
        softness: width (z-score units) of the logistic ramp that maps the evidence to [0, 1].

    Returns:
        ``(soft, mask)``: float32 soft map in [0, 1] (0.5 at the threshold) and bool mask,
        both ``[z, y, x]`` like the tomogram; ``soft >= 0.5`` equals ``mask`` (the soft map
        is capped below 0.5 on the dropped small components).
    """
    from scipy import ndimage

    evidence = membrane_evidence(tomogram, thickness_angst, polarity)
    threshold = choose_threshold(evidence, method, value)
    with np.errstate(over="ignore"):
        soft = (1.0 / (1.0 + np.exp(-(evidence - threshold) / softness))).astype(np.float32)
    mask = evidence >= threshold
    if min_size_voxels > 1 and mask.any():
        labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        small = sizes < min_size_voxels
        small[0] = False
        drop = small[labels]
        mask &= ~drop
        soft[drop] = np.minimum(soft[drop], 0.49)
    return soft, mask
