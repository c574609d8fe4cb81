"""Instance extraction from a picker's class probabilities (DeepFinder / MC DS Net style).

Per-class connected components fragment a particle into several hits, so localisation
uses one "any particle" map instead: the sum of the particle classes' probabilities,
smoothed by a Gaussian of ``sigma`` voxels. Its local maxima above ``threshold`` are the
candidates; each takes the class whose probability summed around the peak (a Gaussian of
half the smallest class radius) is largest; a candidate whose mean "any particle"
probability in a cube of edge about the class radius is below ``min_core`` is too small to be a
particle; finally a greedy non-maximum suppression in decreasing score removes candidates
closer than ``nms_factor`` x the class radius to a kept one (``suppress_close``, the
greedy suppression every picker here uses). Candidates of excluded classes (gold beads) are
dropped.

All of this runs on the model's grid: positions and radii are voxels at the model's voxel
size, arrays ``[z, y, x]``, coordinates ``x, y, z``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class PeakSettings:
    """Peak-extraction parameters (tuned on validation data and stored in the model card).

    threshold: minimum smoothed "any particle" probability at a peak (0-1).
    sigma: Gaussian smoothing of the "any particle" map, voxels of the model grid.
    min_core: minimum mean "any particle" probability in a cube of edge ~ the class radius.
    nms_factor: suppression distance as a multiple of the kept candidate's class radius.
    """

    threshold: float = 0.3
    sigma: float = 1.0
    min_core: float = 0.2
    nms_factor: float = 0.8

    def to_dict(self) -> dict[str, float]:
        """JSON-ready dict."""
        return {k: float(v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> PeakSettings:
        """Settings from a card's dict (unknown keys ignored, missing ones default)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: float(v) for k, v in (data or {}).items() if k in names})


@dataclass
class Candidates:
    """Local maxima of one smoothed "any particle" map before thresholding: positions
    ``xyz`` (N, 3, model voxels, sub-voxel), ``score`` (smoothed probability), ``core``
    (mean probability in a cube of edge ~ the class radius), ``class_index`` into the channel list
    and ``radius`` (voxels) of that class."""

    xyz: np.ndarray
    score: np.ndarray
    core: np.ndarray
    class_index: np.ndarray
    radius: np.ndarray


def any_particle_map(probabilities: np.ndarray, channels: list[int]) -> np.ndarray:
    """Sum of the given probability channels ``(C, z, y, x)``, clipped to 1."""
    total = np.zeros(probabilities.shape[1:], dtype=np.float32)
    for c in channels:
        total += probabilities[c]
    return np.minimum(total, 1.0, out=total)


def find_candidates(probabilities: np.ndarray, particle_channels: list[int],
                    class_channels: list[int], radii_voxels: np.ndarray, sigma: float,
                    floor: float = 0.05, exclude: np.ndarray | None = None) -> Candidates:
    """Local maxima of the smoothed "any particle" map with their class, core and score.

    Args:
        probabilities: ``(C, z, y, x)`` softmax output on the model grid.
        particle_channels: channels summed into the "any particle" map.
        class_channels: channels that compete for a peak's class (particle classes and
            excluded ones such as gold); ``radii_voxels[i]`` belongs to ``class_channels[i]``.
        radii_voxels: class radius, voxels of the model grid.
        sigma: smoothing of the "any particle" map, voxels.
        floor: candidates below this smoothed probability are not kept at all.
        exclude: optional boolean mask ``[z, y, x]``; peaks inside it are dropped.
    """
    from scipy import ndimage

    anymap = any_particle_map(probabilities, particle_channels)
    smooth = ndimage.gaussian_filter(anymap, sigma) if sigma > 0 else anymap
    r_min = float(np.min(radii_voxels))
    size = max(3, 2 * int(np.floor(r_min / 2)) + 1)
    peaks = (ndimage.maximum_filter(smooth, size=size, mode="nearest") == smooth)
    peaks &= smooth >= floor
    if exclude is not None:
        peaks &= ~exclude
    zyx = np.argwhere(peaks)
    score = smooth[peaks].astype(float)
    class_sigma = max(1.0, r_min / 2)
    summed = np.stack([ndimage.gaussian_filter(probabilities[c], class_sigma)[peaks]
                       for c in class_channels], axis=0)
    cls = np.argmax(summed, axis=0) if len(zyx) else np.zeros(0, dtype=int)
    radius = np.asarray(radii_voxels, float)[cls]
    core = np.zeros(len(zyx))
    for r in np.unique(radius):
        # a cube of edge ~ the class radius: the mean "any particle" probability of the core
        box = ndimage.uniform_filter(anymap, size=2 * int(round(r / 2)) + 1, mode="constant")
        sel = radius == r
        core[sel] = box[tuple(zyx[sel].T)]
    xyz = _refine(smooth, zyx)[:, ::-1] if len(zyx) else np.zeros((0, 3))
    return Candidates(xyz, score, core, cls.astype(int), radius)


def _refine(smooth: np.ndarray, zyx: np.ndarray) -> np.ndarray:
    """Sub-voxel peak positions: the centroid of the 3x3x3 neighbourhood above its minimum."""
    offsets = np.stack(np.meshgrid(*[np.arange(-1, 2)] * 3, indexing="ij"), -1).reshape(-1, 3)
    q = np.clip(zyx[:, None, :] + offsets[None], 0, np.array(smooth.shape) - 1)  # (N, 27, 3)
    w = smooth[q[..., 0], q[..., 1], q[..., 2]].astype(float)
    w -= w.min(axis=1, keepdims=True)
    total = w.sum(axis=1, keepdims=True)
    centroid = (q * w[..., None]).sum(axis=1) / np.where(total > 0, total, 1.0)
    return np.where(total > 0, centroid, zyx.astype(float))


def suppress_close(xyz: np.ndarray, radius: float | np.ndarray,
                   max_kept: int | None = None) -> np.ndarray:
    """Greedy non-maximum suppression of points given best first.

    Walking ``xyz`` (N, 3) in order, a point is kept unless it lies within the radius of a
    point kept before it (distance <= radius). ``radius`` is one distance or one per point
    (a kept point suppresses with its own), in the units of ``xyz``; ``max_kept`` stops after
    that many. Returns the indices of the kept points, in order.
    """
    from scipy.spatial import cKDTree

    points = np.asarray(xyz, dtype=float).reshape(-1, 3)
    radii = np.broadcast_to(np.asarray(radius, dtype=float), (len(points),))
    if len(points) == 0:
        return np.zeros(0, dtype=int)
    tree = cKDTree(points)
    kept: list[int] = []
    suppressed = np.zeros(len(points), bool)
    for j in range(len(points)):
        if suppressed[j]:
            continue
        kept.append(j)
        if max_kept is not None and len(kept) >= max_kept:
            break
        suppressed[tree.query_ball_point(points[j], radii[j])] = True
    return np.array(kept, dtype=int)


def select(cands: Candidates, settings: PeakSettings, excluded_classes: set[int] = frozenset()
           ) -> np.ndarray:
    """Indices of the candidates kept by ``settings``, in decreasing score (the order picks
    are reported, which SHREC scoring relies on)."""
    keep = (cands.score >= settings.threshold) & (cands.core >= settings.min_core)
    idx = np.flatnonzero(keep)
    idx = idx[np.argsort(-cands.score[idx], kind="stable")]
    kept_idx = idx[suppress_close(cands.xyz[idx], settings.nms_factor * cands.radius[idx])]
    # Gold beads take part in the suppression (their halo is no particle) and are then dropped.
    if excluded_classes:
        kept_idx = kept_idx[~np.isin(cands.class_index[kept_idx], list(excluded_classes))]
    return kept_idx
