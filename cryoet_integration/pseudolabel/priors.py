"""Class priors of an unlabelled tomogram, re-estimated from a classifier's own output.

Strokes do not sample the classes in their true proportions (membrane is painted about as
much as background but covers a few percent of a tomogram), and a classifier's posteriors
carry the painted mix. Saerens, Latinne and Decaestecker (Neural Computation 14, 2002) give the
EM fix used here: reweight each posterior by new prior / training prior, renormalise, take
the mean posterior as the new prior, repeat. No ground truth is needed.

The one home of the rule for the weak classifier (``weak.classify_volume``) and the network
trained on its output (``cryovis segment --priors``) alike: the posteriors of a whole
tomogram are moved to priors re-estimated on it (:func:`correct_volume`).
"""

from __future__ import annotations

import numpy as np


def reweight(proba: np.ndarray, train_priors: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """Posteriors ``[n, K]`` under class ``priors`` instead of ``train_priors`` (float32)."""
    w = (np.asarray(priors, np.float64) / np.maximum(train_priors, 1e-12)).astype(np.float32)
    out = np.asarray(proba, np.float32) * w
    out /= np.maximum(out.sum(axis=1, keepdims=True), 1e-12)
    return out


def estimate_priors(proba: np.ndarray, train_priors: np.ndarray, max_iter: int = 200,
                    tol: float = 1e-6) -> tuple[np.ndarray, int]:
    """EM estimate of the class priors of the voxels whose posteriors are ``proba``
    ``[n, K]`` (from a classifier trained at ``train_priors``); returns (priors, iterations).

    A class may vanish (prior -> 0) when the tomogram has none of it.
    """
    train = np.asarray(train_priors, np.float64)
    priors = train.copy()
    for it in range(1, max_iter + 1):
        new = reweight(proba, train, priors).mean(axis=0, dtype=np.float64)
        new /= new.sum()
        if np.abs(new - priors).max() < tol:
            return new, it
        priors = new
    return priors, max_iter


# Posteriors sampled (evenly strided) to estimate a tomogram's class priors.
PRIOR_SAMPLES = 2_000_000
_CHUNK_VOXELS = 1 << 20


def correct_volume(probabilities: np.ndarray, train_priors: np.ndarray,
                   max_samples: int = PRIOR_SAMPLES) -> tuple[np.ndarray, int]:
    """Move the class posteriors ``[K, z, y, x]`` of a whole tomogram (float32, summing to 1
    over K; modified in place) from ``train_priors`` to the priors EM estimates from at most
    ``max_samples`` evenly strided voxels of them; returns (priors, EM iterations)."""
    k = probabilities.shape[0]
    flat = probabilities.reshape(k, -1)
    step = max(1, flat.shape[1] // max_samples)
    priors, iters = estimate_priors(np.asarray(flat[:, ::step]).T, train_priors)
    for start in range(0, flat.shape[1], _CHUNK_VOXELS):
        part = flat[:, start:start + _CHUNK_VOXELS]
        part[:] = reweight(np.asarray(part).T, train_priors, priors).T
    return priors, iters
