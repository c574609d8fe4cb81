"""Training data: tomogram/label pairs at the model's voxel size and random patch sampling.

Labels: 0 background, 1..K classes, -1 ignore. Pseudo-labels (soft maps in [0, 1] from
another tool) keep only their confident voxels: above 0.7 is class 1, below 0.3 background,
and the uncertain band in between is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from formats import read_volume

from ..errors import CryovisError

IGNORE = -1
PSEUDO_LOW, PSEUDO_HIGH = 0.3, 0.7
_MAX_FOREGROUND_SAMPLES = 200_000


@dataclass
class TrainVolume:
    """One training tomogram at the model voxel size: normalised ``image`` float32 and
    ``label`` int8 ``[z, y, x]`` (padded with ignore to at least one patch), and a sample
    of foreground voxel indices for foreground-biased sampling."""

    name: str
    image: np.ndarray
    label: np.ndarray
    foreground: np.ndarray


def _resample_labels(label: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Resample an integer label map to ``shape`` by linear interpolation of each class's
    indicator and taking the most likely class (thin membranes survive, unlike nearest).

    Target sample ``j`` sits at ``j * n_src / n_target`` of the source, the grid of the
    Fourier-rescaled tomogram.
    """
    from scipy import ndimage

    values = np.unique(label)
    scale = [n / s for n, s in zip(label.shape, shape)]
    best = np.full(shape, -np.inf, dtype=np.float32)
    out = np.zeros(shape, dtype=np.int8)
    for v in values:
        ind = ndimage.affine_transform((label == v).astype(np.float32), scale,
                                       output_shape=tuple(shape), order=1, mode="nearest")
        take = ind > best
        out[take] = v
        best[take] = ind[take]
    return out


def pseudolabels_to_labels(soft: np.ndarray) -> np.ndarray:
    """Confident voxels of a soft map: 1 above 0.7, 0 below 0.3, ignore (-1) between."""
    lab = np.full(soft.shape, IGNORE, dtype=np.int8)
    lab[soft >= PSEUDO_HIGH] = 1
    lab[soft <= PSEUDO_LOW] = 0
    return lab


def load_pair(tomogram: str | Path, labels: str | Path, voxel_size: float,
              patch_size: tuple[int, int, int], pseudo: bool = False) -> TrainVolume:
    """Read a tomogram and its label map (same shape), rescale both to ``voxel_size`` Å and
    normalise the tomogram. ``pseudo`` treats ``labels`` as a soft pseudo-label map."""
    from cryoet_integration.preprocess import rescale_to_voxel_size, robust_normalize

    from .inference import check_input

    vol = read_volume(tomogram)
    check_input(vol)
    lab_vol = read_volume(labels)
    if lab_vol.data.shape != vol.data.shape:
        raise CryovisError(f"{labels}: label map shape {lab_vol.data.shape} differs from the "
                           f"tomogram's {vol.data.shape} ({tomogram})")
    raw = np.asarray(lab_vol.data)
    if pseudo:
        lab = pseudolabels_to_labels(raw.astype(np.float32))
    else:
        if np.issubdtype(raw.dtype, np.floating) and not np.all(raw == np.round(raw)):
            raise CryovisError(f"{labels}: labels must be integers (0 background, 1..K, -1 "
                               "ignore); use --pseudolabels for soft maps")
        if raw.min() < IGNORE or raw.max() > 127:
            raise CryovisError(f"{labels}: label values must lie in -1..127, got "
                               f"{raw.min()}..{raw.max()}")
        lab = raw.astype(np.int8)
    vs = float(vol.voxel_size) or voxel_size
    image = np.asarray(vol.data, dtype=np.float32)
    if abs(vs / voxel_size - 1) > 0.02:
        image = rescale_to_voxel_size(image, vs, voxel_size)
        lab = _resample_labels(lab, image.shape)
    image = robust_normalize(image)
    pad = [(0, max(0, p - n)) for n, p in zip(image.shape, patch_size)]
    if any(b for _, b in pad):
        image = np.pad(image, pad, mode="reflect")
        lab = np.pad(lab, pad, constant_values=IGNORE)
    fg = np.flatnonzero(lab > 0)
    if fg.size > _MAX_FOREGROUND_SAMPLES:
        fg = np.random.default_rng(0).choice(fg, _MAX_FOREGROUND_SAMPLES, replace=False)
    return TrainVolume(Path(tomogram).stem, image, lab, fg)


class PatchSampler:
    """Random patches ``[z, y, x]`` from several volumes; a fraction ``foreground_fraction``
    is centred (with jitter) on a labelled voxel so rare classes are seen often."""

    def __init__(self, volumes: list[TrainVolume], patch_size: tuple[int, int, int],
                 foreground_fraction: float, rng: np.random.Generator):
        if not volumes:
            raise ValueError("no training volumes")
        self.volumes = volumes
        self.patch = tuple(int(p) for p in patch_size)
        self.fg_fraction = foreground_fraction
        self.rng = rng

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        """One ``(image, label)`` patch pair (copies)."""
        vol = self.volumes[int(self.rng.integers(len(self.volumes)))]
        shape = vol.image.shape
        if vol.foreground.size and self.rng.random() < self.fg_fraction:
            centre = np.unravel_index(vol.foreground[int(self.rng.integers(vol.foreground.size))],
                                      shape)
            jitter = self.rng.integers(-(np.array(self.patch) // 4), np.array(self.patch) // 4 + 1)
            start = np.array(centre) + jitter - np.array(self.patch) // 2
        else:
            start = [self.rng.integers(0, n - p + 1) for n, p in zip(shape, self.patch)]
        start = [int(np.clip(s, 0, n - p)) for s, n, p in zip(start, shape, self.patch)]
        box = tuple(slice(s, s + p) for s, p in zip(start, self.patch))
        return vol.image[box].copy(), vol.label[box].copy()
