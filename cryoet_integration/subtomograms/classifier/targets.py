"""Subtomogram boxes on the classifier's grid, and its training targets.

Boxes: around each pick a whole-voxel crop (``subtomograms.extract.crop_subtomograms``,
memory-mapped reads) of ``round(box * model voxel size / tomogram voxel size)`` tomogram
voxels is resampled (anti-aliased, linear) to ``box`` voxels at the model voxel size, then
scaled by the robust z-score (median, 1.4826 MAD) of all the tomogram's boxes together, so
contrast between particles is kept and a box's values do not depend on the tomogram's
voxel size, with dense matter dark (negative). Boxes are ``[z, y, x]``.

Targets of a particle (DSM-Net, paper 004: the recovered structure is the average of its
class):

* class: its class in the particle list;
* density: the average of its class's boxes in the particle frame (each box rotated by
  its orientation, ``formats.orientations``, reference -> tomogram), rotated back into
  the particle's own orientation; lists without orientations get the class's rotational
  (spherical) average. Dense matter positive, in the z-score units of the boxes;
* particle mask: from the simulator's instance map when given (the voxels of the
  instance found at the box centre), else the class average above
  ``MASK_FRACTION`` of its peak, rotated like the density.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ...preprocess import robust_stats
from ..extract import crop_subtomograms

# The class average (smoothed) above this fraction of its peak is the particle's mask.
MASK_FRACTION = 0.3
# Smoothing (voxels) of class averages before they become targets: the recovery is coarse.
AVERAGE_SIGMA = 0.7


@dataclass
class Boxes:
    """Boxes ``[n, z, y, x]`` (float32) at ``voxel_size`` Å and which picks they are:
    ``kept`` (N,) bool over the input picks (picks whose centre voxel is outside the
    tomogram are dropped; boxes crossing its border are padded)."""

    images: np.ndarray
    kept: np.ndarray
    voxel_size: float


def native_box(box: int, model_voxel_size: float, voxel_size: float) -> int:
    """Edge (tomogram voxels) of the crop that covers ``box`` voxels at
    ``model_voxel_size`` Å in a tomogram of ``voxel_size`` Å per voxel."""
    return max(2, int(round(box * model_voxel_size / voxel_size)))


def _resample(stack: np.ndarray, box: int, order: int) -> np.ndarray:
    """Boxes resampled to ``box^3``; images shrunk by more than a few percent are low-passed
    first (Gaussian, sigma = (1/factor - 1)/2 voxels, as scikit-image's anti-aliasing), so
    a finely sampled tomogram gives boxes with the noise texture of a coarse one."""
    if stack.shape[1] == box:
        return stack
    factor = box / stack.shape[1]
    sigma = (1.0 / factor - 1.0) / 2.0 if order > 0 and factor < 1 else 0.0
    out = np.empty((len(stack), box, box, box), dtype=np.float32)
    for i, sub in enumerate(stack):
        if sigma > 0.05:
            sub = ndimage.gaussian_filter(sub, sigma, mode="mirror")
        out[i] = ndimage.zoom(sub, factor, order=order, grid_mode=True, mode="grid-mirror")
    return out


def cut_boxes(data: np.ndarray, voxel_size: float, xyz: np.ndarray, box: int,
              model_voxel_size: float, stats: tuple[float, float] | None = None,
              dark: bool = True) -> Boxes:
    """Normalised boxes around picks (see the module docstring).

    Args:
        data: tomogram ``[z, y, x]`` (in memory or memory-mapped), ``voxel_size`` Å/voxel.
        xyz: (N, 3) picks ``x, y, z`` in voxels of ``data``.
        box: box edge in voxels at ``model_voxel_size`` Å.
        stats: ``(centre, scale)`` of the z-score (default: ``robust_stats`` of the
            resampled boxes together).
        dark: True when dense matter is dark in ``data`` (as reconstructed); else the boxes
            are inverted.
    """
    stack, kept, _ = crop_subtomograms(data, xyz, native_box(box, model_voxel_size, voxel_size))
    stack = _resample(stack, box, order=1)
    if stats is not None:
        centre, scale = stats
    else:
        centre, scale = robust_stats(stack) if stack.size else (0.0, 1.0)
    stack = (stack - np.float32(centre)) / np.float32(scale)
    return Boxes(stack if dark else -stack, kept, float(model_voxel_size))


def cut_label_boxes(labels: np.ndarray, voxel_size: float, xyz: np.ndarray, box: int,
                    model_voxel_size: float) -> np.ndarray:
    """Integer label boxes (nearest-neighbour resampling), e.g. of an instance map, laid out
    as :func:`cut_boxes` lays out the image boxes (same picks, same grid)."""
    stack, _, _ = crop_subtomograms(labels, xyz, native_box(box, model_voxel_size, voxel_size))
    return np.rint(_resample(stack, box, order=0)).astype(np.int32)


def centre_polarity(images: np.ndarray) -> str:
    """``"dark"`` when the centres of the boxes (picks sit on particles) are darker than
    their borders on average, else ``"light"``."""
    n = images.shape[1]
    z, y, x = np.ogrid[:n, :n, :n]
    r = np.sqrt((z - n // 2) ** 2 + (y - n // 2) ** 2 + (x - n // 2) ** 2)
    centre = images[:, r <= max(1.5, n / 10)].mean()
    border = images[:, r >= n / 2 - 1].mean()
    return "dark" if centre < border else "light"


def _matrix_zyx(rotation_xyz: np.ndarray) -> np.ndarray:
    """A rotation acting on ``x, y, z`` written for ``[z, y, x]`` array indices."""
    return rotation_xyz[::-1, ::-1]


def rotate_box(box: np.ndarray, rotation_xyz: np.ndarray, order: int = 1) -> np.ndarray:
    """``out(p) = box(R p)`` about the box centre (voxel ``n // 2``): with ``R`` the
    particle's orientation (reference -> tomogram, acting on ``x, y, z``), a tomogram-frame
    box becomes a particle-frame one; ``R.T`` turns it back. Outside: 0."""
    m = _matrix_zyx(np.asarray(rotation_xyz, float))
    c = np.full(3, box.shape[0] // 2, float)
    return ndimage.affine_transform(box, m, c - m @ c, order=order, mode="constant",
                                    cval=0.0, prefilter=False)


def _rotational_average(box: np.ndarray) -> np.ndarray:
    """Spherical average of ``box`` about its centre voxel, as a box."""
    n = box.shape[0]
    z, y, x = np.ogrid[:n, :n, :n]
    shell = np.rint(np.sqrt((z - n // 2) ** 2 + (y - n // 2) ** 2
                            + (x - n // 2) ** 2)).astype(int)
    sums = np.bincount(shell.ravel(), box.ravel())
    counts = np.bincount(shell.ravel())
    return (sums / np.maximum(counts, 1))[shell].astype(np.float32)


def class_averages(images: np.ndarray, class_index: np.ndarray, n_classes: int,
                   rotations: np.ndarray | None) -> np.ndarray:
    """Per-class averages ``[k, z, y, x]`` of the boxes in the particle frame, dense matter
    positive (``-images``), smoothed by ``AVERAGE_SIGMA`` voxels. ``rotations`` (N, 3, 3)
    are the orientations (reference -> tomogram); None: rotational averages. A class with
    no boxes has a zero average."""
    out = np.zeros((n_classes,) + images.shape[1:], dtype=np.float32)
    for k in range(n_classes):
        rows = np.flatnonzero(class_index == k)
        if rows.size == 0:
            continue
        acc = np.zeros(images.shape[1:], dtype=np.float64)
        for i in rows:
            acc += rotate_box(-images[i], rotations[i]) if rotations is not None else -images[i]
        mean = (acc / rows.size).astype(np.float32)
        if rotations is None:
            mean = _rotational_average(mean)
        out[k] = ndimage.gaussian_filter(mean, AVERAGE_SIGMA)
    return out


def average_masks(averages: np.ndarray) -> np.ndarray:
    """Particle masks ``[k, z, y, x]`` of class averages: above ``MASK_FRACTION`` of the
    peak, the connected part that holds the box centre (or the largest one)."""
    masks = np.zeros(averages.shape, dtype=bool)
    c = averages.shape[1] // 2
    for k, avg in enumerate(averages):
        peak = float(avg.max())
        if not peak > 0:
            continue
        parts, n = ndimage.label(avg >= MASK_FRACTION * peak)
        if n == 0:
            continue
        keep = parts[c, c, c] or int(np.argmax(np.bincount(parts.ravel())[1:]) + 1)
        masks[k] = parts == keep
    return masks


@dataclass
class Targets:
    """Per-box training targets: ``masks`` uint8 ``[n, z, y, x]`` (1 particle),
    ``densities`` float32 ``[n, z, y, x]`` and where the mask came from."""

    masks: np.ndarray
    densities: np.ndarray
    mask_source: str


def build_targets(images: np.ndarray, class_index: np.ndarray, n_classes: int,
                  rotations: np.ndarray | None = None,
                  instance_boxes: np.ndarray | None = None) -> Targets:
    """Masks and densities of boxes (see the module docstring).

    Args:
        images: boxes ``[n, z, y, x]`` from :func:`cut_boxes` (dense matter dark).
        class_index: (n,) class of each box (0..n_classes-1).
        rotations: (n, 3, 3) orientations (reference -> tomogram, on ``x, y, z``) or None.
        instance_boxes: integer instance boxes (:func:`cut_label_boxes`) or None.
    """
    averages = class_averages(images, class_index, n_classes, rotations)
    class_masks = average_masks(averages)
    n = len(images)
    densities = np.empty(images.shape, dtype=np.float32)
    masks = np.empty(images.shape, dtype=np.uint8)
    c = images.shape[1] // 2
    for i in range(n):
        k = int(class_index[i])
        if rotations is None:
            densities[i] = averages[k]
            masks[i] = class_masks[k]
        else:
            back = rotations[i].T
            densities[i] = rotate_box(averages[k], back)
            masks[i] = rotate_box(class_masks[k].astype(np.float32), back) >= 0.5
        if instance_boxes is not None and instance_boxes[i, c, c, c] > 0:
            masks[i] = instance_boxes[i] == instance_boxes[i, c, c, c]
    source = "instance map" if instance_boxes is not None else "class average"
    return Targets(masks, densities, source)
