"""Strokes -> dense soft pseudo-labels: the weak classifier of Nano-Ötzi (section 4.2).

A random forest learns the painted classes from the ilastik feature bank at the stroke
voxels of one tomogram; applied slab by slab it gives every voxel of that (or another)
tomogram class probabilities, corrected to the tomogram's own class priors (see
``priors``). Arrays are ``[z, y, x]``; strokes are a label map on the tomogram's grid with
0 = unlabelled and 1..K = classes as painted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from formats import Volume

from ..errors import CryovisError
from . import features as feats
from .forest import Forest, fit_forest
from .priors import correct_volume

# Stroke voxels used per class (random subset): more adds time, not accuracy, once the
# forest has seen a few thousand voxels of a class.
MAX_PER_CLASS = 20_000


@dataclass
class SoftLabels:
    """Class probabilities ``[K, z, y, x]`` (float32, summing to 1 over K) with the stroke
    values (``labels``) and ``names`` of the K classes, the priors used (None when not
    corrected) and facts about the run (``info``)."""

    probabilities: np.ndarray
    labels: np.ndarray
    names: list[str]
    priors: np.ndarray | None
    info: dict[str, Any] = field(default_factory=dict)

    def hard_labels(self) -> np.ndarray:
        """Argmax as the stroke values ``[z, y, x]`` (1..K as painted)."""
        return self.labels[np.argmax(self.probabilities, axis=0)]


def stroke_classes(strokes: np.ndarray, name: str = "strokes") -> np.ndarray:
    """The painted class values of a stroke map (sorted); CryovisError for maps that cannot
    train a classifier: non-integer or negative values, no strokes, one class only."""
    data = np.asarray(strokes)
    if not np.issubdtype(data.dtype, np.integer):
        if not np.all(np.isfinite(data)) or np.any(data != np.round(data)):
            raise CryovisError(f"{name}: stroke labels must be whole numbers (0 = unlabelled, "
                               "1..K = classes)")
    values = np.unique(data)
    if values.min() < 0:
        raise CryovisError(f"{name}: negative label {values.min():g} (0 = unlabelled, 1..K = "
                           "classes)")
    painted = values[values > 0].astype(np.int64)
    if painted.size == 0:
        raise CryovisError(f"{name}: no strokes (every voxel is 0 = unlabelled)")
    if painted.size == 1:
        raise CryovisError(f"{name}: strokes of one class only ({painted[0]}); paint at "
                           "least two (e.g. background and membrane)")
    return painted


def prepare_image(volume: Volume) -> np.ndarray:
    """The tomogram as the features see it: float32, robust z-score."""
    from ..preprocess import robust_normalize

    return robust_normalize(np.asarray(volume.data, np.float32))


def _sample_strokes(strokes: np.ndarray, values: np.ndarray, max_per_class: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    flat = np.asarray(strokes).ravel()
    picked, classes = [], []
    for k, v in enumerate(values):
        idx = np.flatnonzero(flat == v)
        if idx.size > max_per_class:
            idx = rng.choice(idx, max_per_class, replace=False)
        picked.append(np.sort(idx))
        classes.append(np.full(idx.size, k))
    order = np.argsort(np.concatenate(picked), kind="stable")
    return np.concatenate(picked)[order], np.concatenate(classes)[order]


def train_weak_classifier(volume: Volume, strokes: np.ndarray,
                          names: Sequence[str] | None = None,
                          scales: Sequence[float] = feats.DEFAULT_SCALES, n_trees: int = 32,
                          max_depth: int = 14, max_per_class: int = MAX_PER_CLASS,
                          seed: int = 0, threads: int = 1,
                          progress: Callable[[int, int], None] | None = None) -> Forest:
    """A random forest on the ilastik features of ``volume`` at its stroke voxels.

    Args:
        volume: the painted tomogram.
        strokes: label map ``[z, y, x]`` on its grid, 0 = unlabelled, 1..K = classes.
        names: class names for the painted values in increasing order (default ``classN``).
        scales: feature scales in voxels of ``volume``.
        progress: called as ``progress(done, total)`` over the feature slabs.
    """
    values = stroke_classes(strokes)
    names = list(names) if names else [f"class{v}" for v in values]
    if len(names) != len(values):
        raise CryovisError(f"{len(names)} class names for {len(values)} painted classes "
                           f"({', '.join(map(str, values))})")
    if np.asarray(strokes).shape != volume.data.shape:
        raise CryovisError(f"strokes of shape {np.asarray(strokes).shape} on a tomogram of "
                           f"{tuple(volume.data.shape)} (z, y, x)")
    image = prepare_image(volume)
    index, y = _sample_strokes(strokes, values, max_per_class, np.random.default_rng(seed))
    plane = int(np.prod(image.shape[1:]))
    rows = []
    total = len(feats.slab_starts(image.shape))
    for done, slab in enumerate(feats.iter_slabs(image, scales), start=1):
        lo, hi = np.searchsorted(index, [slab.z0 * plane, slab.z1 * plane])
        rows.append(slab.features[index[lo:hi] - slab.z0 * plane])
        if progress is not None:
            progress(done, total)
    return fit_forest(np.concatenate(rows), y, values, names, list(scales),
                      float(volume.voxel_size or 0.0), feats.feature_names(scales),
                      n_trees=n_trees, max_depth=max_depth, seed=seed, threads=threads)


def scales_for(forest: Forest, voxel_size: float) -> list[float]:
    """The forest's feature scales in voxels of a tomogram at ``voxel_size`` Å: the same
    physical scales as in training (unchanged when either voxel size is unknown)."""
    if forest.voxel_size > 0 and voxel_size > 0:
        return [s * forest.voxel_size / voxel_size for s in forest.scales]
    return list(forest.scales)


def classify_volume(volume: Volume, forest: Forest, correct_priors: bool = True,
                    threads: int = 1,
                    progress: Callable[[int, int], None] | None = None) -> SoftLabels:
    """Soft pseudo-labels of every voxel of ``volume`` from a trained weak classifier.

    With ``correct_priors`` the posteriors are moved from the strokes' class mix to this
    tomogram's own priors (EM, :mod:`.priors`).
    """
    image = prepare_image(volume)
    vs = float(volume.voxel_size or 0.0)
    scales = scales_for(forest, vs)
    plane = int(np.prod(image.shape[1:]))
    out = np.empty((forest.n_classes, image.size), np.float32)
    total = len(feats.slab_starts(image.shape))
    for done, slab in enumerate(feats.iter_slabs(image, scales), start=1):
        out[:, slab.z0 * plane:slab.z1 * plane] = forest.predict_proba(slab.features,
                                                                    threads).T
        if progress is not None:
            progress(done, total)
    info: dict[str, Any] = {"scales_voxels": [round(s, 3) for s in scales],
                            "train_priors": forest.train_priors.round(4).tolist()}
    priors = None
    if correct_priors:
        priors, iters = correct_volume(out, forest.train_priors)
        info.update(priors=priors.round(4).tolist(), prior_iterations=iters)
    return SoftLabels(out.reshape((forest.n_classes,) + image.shape), forest.labels.copy(),
                      list(forest.names), priors, info)
