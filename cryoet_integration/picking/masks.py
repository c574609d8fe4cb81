"""Where not to pick, and which way the contrast goes: gold beads, the ice slab, a user's
region of interest, and the tomogram's polarity.

Inputs are normalised tomograms (robust z-score) ``[z, y, x]``; sizes are Å with the voxel
size given. Masks are boolean, True where picks are excluded.
"""

from __future__ import annotations

import numpy as np

# Gold is ten times denser than protein: after a 1-voxel blur its beads sit far below
# anything biological (proteins reach about -4 robust sigmas in simulated and real data).
GOLD_Z = -8.0
GOLD_MARGIN_ANGST = 40.0
# A slice belongs to the ice when its structure is above this fraction of the way from the
# emptiest slice to the busiest ones (90th percentile).
SLAB_LEVEL = 0.3
SLAB_MIN_CONTRAST = 1.5
SLAB_MARGIN_ANGST = 30.0


def gold_mask(image: np.ndarray, voxel_size: float, z_threshold: float = GOLD_Z,
              margin_angst: float = GOLD_MARGIN_ANGST) -> np.ndarray:
    """Voxels near gold beads: blurred density below ``z_threshold`` robust sigmas (dense
    dark), grown by ``margin_angst`` Å so the bead's ring artefacts are covered too.

    Args:
        image: robust-normalised tomogram ``[z, y, x]`` with dense matter dark.
        voxel_size: Å per voxel of ``image``.
    """
    from scipy import ndimage

    core = ndimage.gaussian_filter(image, 1.0) < z_threshold
    if not core.any():
        return core
    grow = max(1, int(np.ceil(margin_angst / voxel_size)))
    dist = ndimage.distance_transform_edt(~core)
    return dist <= grow


def slab_mask(image: np.ndarray, voxel_size: float, level: float = SLAB_LEVEL,
              margin_angst: float = SLAB_MARGIN_ANGST) -> np.ndarray:
    """Voxels outside the ice slab, judged slice by slice along z from the structure (the
    standard deviation of the blurred slice); nothing is excluded when the profile shows no
    clear slab (busiest / emptiest slice below 1.5).

    Args:
        image: robust-normalised tomogram ``[z, y, x]``.
        voxel_size: Å per voxel; ``margin_angst`` widens the kept slab on both faces.
    """
    from scipy import ndimage

    profile = ndimage.gaussian_filter(image, 1.5).std(axis=(1, 2))
    lo, hi = float(profile.min()), float(np.percentile(profile, 90))
    out = np.zeros(image.shape, dtype=bool)
    if not (lo > 0 and hi / lo >= SLAB_MIN_CONTRAST):
        return out
    inside = np.flatnonzero(profile >= lo + level * (hi - lo))
    margin = int(np.ceil(margin_angst / voxel_size))
    z0, z1 = max(0, inside.min() - margin), min(image.shape[0], inside.max() + margin + 1)
    out[:z0] = True
    out[z1:] = True
    return out


def detect_polarity(image: np.ndarray) -> str:
    """"dark" when dense matter is darker than the background (as reconstructed), "light"
    when the tomogram has been inverted: dense matter is the long tail of the blurred
    density's distribution, so the sign of its skewness tells which side it is on."""
    from scipy import ndimage, stats

    step = max(1, int(round((image.size / 2_000_000) ** (1 / 3))))
    blurred = ndimage.gaussian_filter(image[::step, ::step, ::step].astype(np.float32), 1.0)
    return "dark" if float(stats.skew(blurred, axis=None)) <= 0 else "light"


def resample_mask(mask: np.ndarray, shape_zyx: tuple[int, ...]) -> np.ndarray:
    """A boolean mask on another grid of the same field of view (nearest sample; sample
    ``j`` of the target sits at ``j * n_src / n_target`` of the source)."""
    idx = [np.minimum((np.arange(n) * (m / n)).round().astype(int), m - 1)
           for n, m in zip(shape_zyx, mask.shape)]
    return np.asarray(mask)[np.ix_(*idx)].astype(bool)
