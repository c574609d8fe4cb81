"""Raw-tomogram preprocessing for rendering: inversion and low-pass filtering (section 5.2).

Cryo-ET density is dark (low values); inverting makes structures bright, and a Gaussian
low-pass removes the high-frequency noise that would otherwise dominate the raw-data ramp.
"""

from __future__ import annotations

import numpy as np


def prepare_raw(raw: np.ndarray, lowpass_sigma: float = 1.5, invert: bool = True,
                percentiles: tuple[float, float] = (1.0, 99.5)) -> np.ndarray:
    """Inverted, low-passed raw data scaled to [0, 1], as float32 ``[z, y, x]``.

    Args:
        raw: tomogram ``[z, y, x]`` (any real dtype).
        lowpass_sigma: standard deviation of the Gaussian low-pass, in voxels (0 disables).
        invert: negate first (True for cryo-ET, where protein is darker than ice).
        percentiles: the intensities mapped to 0 and 1 (robust to hot pixels); values outside
            are clipped.
    """
    from scipy import ndimage

    data = np.asarray(raw, dtype=np.float32)
    if invert:
        data = -data
    if lowpass_sigma > 0:
        data = ndimage.gaussian_filter(data, sigma=float(lowpass_sigma), mode="nearest")
    lo, hi = np.percentile(data, percentiles)
    if not hi > lo:
        return np.zeros_like(data)
    out = (data - np.float32(lo)) / np.float32(hi - lo)
    return np.clip(out, 0.0, 1.0, out=out)
