"""Segmentation scores: Dice/F1, IoU, pixel accuracy, Surface-Dice, per-slice Dice.

Conventions (arrays ``[z, y, x]``):

* Binary mode: truth voxels are foreground where an integer/bool map is non-zero or a
  float map is >= 0.5; prediction voxels where an integer/bool map is non-zero or a soft
  (float) map is >= ``threshold``.
* Multi-class mode: label values (0 = background); a float 3D prediction is rounded to
  labels, a 4D prediction ``[C, z, y, x]`` of class scores is arg-maxed (channel c = label c).
* A ratio whose denominator is empty is 1.0 when truth and prediction are both empty
  (nothing to find, nothing found) and 0.0 otherwise; per-slice Dice is NaN (JSON null)
  on slices where both are empty.
* Surface-Dice follows MemBrain v2 (Lamm et al. 2024, eq. 1-2): surface precision is the
  fraction of the predicted skeleton inside the true mask, surface recall the fraction of
  the true skeleton inside the predicted mask, Surface-Dice their harmonic mean. The
  skeleton is the morphological skeleton MemBrain's (clDice) soft skeleton computes on
  binary masks: erosion with the 6-connected cross, opening as that erosion followed by a
  3x3x3 dilation, and the union over erosion steps of (mask minus its opening). Unlike
  scikit-image's topology-preserving thinning, which shrinks an open sheet to a line, it
  keeps a sheet a surface.
* ``region`` restricts every count to its voxels (skeletons are still computed on the
  whole masks, so the region does not create artificial skeleton borders).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from formats import Volume


def _array(x: np.ndarray | Volume) -> np.ndarray:
    return np.asarray(x.data if isinstance(x, Volume) else x)


def binarize(volume: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Foreground mask: non-zero for integer/bool maps, ``>= threshold`` for float maps."""
    arr = np.asarray(volume)
    if np.issubdtype(arr.dtype, np.floating):
        return arr >= threshold
    return arr != 0


def to_labels(volume: np.ndarray) -> np.ndarray:
    """Integer label map: labels as given, floats rounded, ``[C, z, y, x]`` scores arg-maxed."""
    arr = np.asarray(volume)
    if arr.ndim == 4:
        return np.argmax(arr, axis=0).astype(np.int64)
    if np.issubdtype(arr.dtype, np.floating):
        return np.rint(arr).astype(np.int64)
    return arr.astype(np.int64, copy=False)


def skeleton(mask: np.ndarray) -> np.ndarray:
    """Morphological skeleton of a binary mask ``[z, y, x]`` (MemBrain/clDice, binary form).

    The volume border does not erode (as max-pooling with padding does not), so a sheet
    that runs into the border keeps its skeleton there.
    """
    from scipy import ndimage

    cross = ndimage.generate_binary_structure(3, 1)
    cube = np.ones((3, 3, 3), dtype=bool)
    current = np.asarray(mask, dtype=bool)
    result = np.zeros_like(current)
    while current.any():
        eroded = ndimage.binary_erosion(current, cross, border_value=1)
        opened = ndimage.binary_dilation(eroded, cube)
        result |= current & ~opened
        if np.array_equal(eroded, current):  # a mask filling the volume never erodes
            result |= current
            break
        current = eroded
    return result


def _safe(num: int, den: int, both_empty: bool) -> float:
    if den:
        return float(num) / float(den)
    return 1.0 if both_empty else 0.0


def surface_dice(truth: np.ndarray, prediction: np.ndarray, *,
                 region: np.ndarray | None = None) -> dict[str, float]:
    """Surface precision, recall and Surface-Dice of two binary masks ``[z, y, x]``."""
    pred = np.asarray(prediction, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    s_pred, s_true = skeleton(pred), skeleton(truth)
    if region is not None:
        s_pred, s_true = s_pred & region, s_true & region
    both_empty = not s_pred.any() and not s_true.any()
    precision = _safe(int((s_pred & truth).sum()), int(s_pred.sum()), both_empty)
    recall = _safe(int((s_true & pred).sum()), int(s_true.sum()), both_empty)
    dice = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"surface_dice": dice, "surface_precision": precision, "surface_recall": recall}


def per_slice_dice(truth: np.ndarray, prediction: np.ndarray, *,
                   region: np.ndarray | None = None) -> np.ndarray:
    """Dice of each z slice (length ``nz``); NaN where a slice has neither truth nor prediction."""
    pred = np.asarray(prediction, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    if region is not None:
        pred, truth = pred & region, truth & region
    inter = (pred & truth).sum(axis=(1, 2)).astype(float)
    total = pred.sum(axis=(1, 2)).astype(float) + truth.sum(axis=(1, 2))
    out = np.full(pred.shape[0], np.nan)
    np.divide(2 * inter, total, out=out, where=total > 0)
    return out


def binary_scores(truth: np.ndarray, prediction: np.ndarray, *,
                  region: np.ndarray | None = None, surface: bool = True) -> dict[str, Any]:
    """Voxel counts, Dice/F1, IoU, precision, recall, accuracy, Surface-Dice, per-slice Dice
    of two binary masks ``[z, y, x]`` (the project's one Dice)."""
    pred = np.asarray(prediction, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    sel = np.ones(pred.shape, dtype=bool) if region is None else region
    p, t = pred[sel], truth[sel]
    tp = int(np.count_nonzero(p & t))
    fp = int(np.count_nonzero(p & ~t))
    fn = int(np.count_nonzero(~p & t))
    tn = int(p.size) - tp - fp - fn
    empty = tp + fp + fn == 0
    iou = _safe(tp, tp + fp + fn, empty)
    iou_bg = _safe(tn, tn + fp + fn, tn + fp + fn == 0)
    curve = per_slice_dice(truth, pred, region=region)
    scores: dict[str, Any] = {
        "dice": _safe(2 * tp, 2 * tp + fp + fn, empty),
        "iou": iou,
        "miou": (iou + iou_bg) / 2,
        "precision": _safe(tp, tp + fp, empty),
        "recall": _safe(tp, tp + fn, empty),
        "pixel_accuracy": _safe(tp + tn, int(p.size), True),
        "TP": tp, "FP": fp, "FN": fn, "TN": tn,
        "per_slice_dice": curve.tolist(),
        "per_slice_dice_mean": float(np.nanmean(curve)) if np.isfinite(curve).any() else None,
    }
    scores["F1"] = scores["dice"]
    if surface:
        scores.update(surface_dice(truth, pred, region=region))
    return scores


def evaluate_segmentation(
    truth: np.ndarray | Volume,
    prediction: np.ndarray | Volume,
    *,
    threshold: float = 0.5,
    multiclass: bool = False,
    region: np.ndarray | Volume | None = None,
    class_names: dict[int, str] | None = None,
    surface: bool = True,
) -> dict[str, Any]:
    """Score a segmentation against the truth.

    Args:
        truth: true mask or label map ``[z, y, x]``.
        prediction: prediction ``[z, y, x]`` (soft map, mask or label map) or, in
            multi-class mode, class scores ``[C, z, y, x]``.
        threshold: binarisation threshold for soft (float) predictions in binary mode.
        multiclass: score each label value > 0 separately and report their means.
        region: optional mask ``[z, y, x]``; only its voxels are scored (e.g. the
            missing-wedge caps from :func:`missing_wedge_cap_mask`).
        class_names: optional ``{label: name}`` for the multi-class report.
        surface: compute Surface-Dice (skeletons cost a few erosions per class).

    Returns:
        A JSON-ready dict with ``dice``, ``surface_dice``, ``F1``, ``iou``, ``miou``,
        ``pixel_accuracy``, ``precision``, ``recall``, ``per_slice_dice`` (length nz) and,
        in multi-class mode, ``per_class`` (the top-level scores are means over classes).
    """
    t = _array(truth)
    p = _array(prediction)
    spatial = p.shape[1:] if (multiclass and p.ndim == 4) else p.shape
    if t.ndim != 3 or len(spatial) != 3:
        raise ValueError(f"volumes must be 3D: truth {t.shape}, prediction {p.shape}")
    if tuple(spatial) != t.shape:
        raise ValueError(f"shape mismatch: truth {t.shape} vs prediction {tuple(spatial)}")
    reg = None
    if region is not None:
        reg = np.asarray(_array(region)) != 0
        if reg.shape != t.shape:
            raise ValueError(f"shape mismatch: truth {t.shape} vs region {reg.shape}")
    if not multiclass:
        result = binary_scores(binarize(t, 0.5), binarize(p, threshold), region=reg,
                               surface=surface)
        result.update({"mode": "binary", "threshold": threshold})
    else:
        result = _multiclass(to_labels(t), to_labels(p), reg, class_names or {}, surface)
    result["shape_zyx"] = list(t.shape)
    result["region_voxels"] = int(reg.sum()) if reg is not None else int(t.size)
    return result


def _multiclass(t: np.ndarray, p: np.ndarray, region: np.ndarray | None,
                names: dict[int, str], surface: bool) -> dict[str, Any]:
    sel = np.ones(t.shape, dtype=bool) if region is None else region
    labels = sorted((set(np.unique(t[sel]).tolist()) | set(np.unique(p[sel]).tolist())) - {0})
    per_class = {}
    for lab in labels:
        scores = binary_scores(t == lab, p == lab, region=region, surface=surface)
        scores["label"] = int(lab)
        per_class[names.get(lab, str(lab))] = scores
    background = binary_scores(t == 0, p == 0, region=region, surface=False)

    def mean(key: str) -> float:
        # No label in truth or prediction: both empty, which scores 1.0 by convention.
        return float(np.mean([s[key] for s in per_class.values()])) if per_class else 1.0

    curve = np.full(t.shape[0], np.nan)
    if per_class:
        curves = np.array([s["per_slice_dice"] for s in per_class.values()], dtype=float)
        finite = np.isfinite(curves)
        np.divide(np.where(finite, curves, 0.0).sum(axis=0), finite.sum(axis=0), out=curve,
                  where=finite.any(axis=0))
    result: dict[str, Any] = {
        "mode": "multiclass",
        "dice": mean("dice"),
        "iou": mean("iou"),
        "miou": float(np.mean([background["iou"]] + [s["iou"] for s in per_class.values()])),
        "precision": mean("precision"),
        "recall": mean("recall"),
        "pixel_accuracy": float(np.count_nonzero(t[sel] == p[sel])) / max(int(sel.sum()), 1),
        "per_slice_dice": curve.tolist(),
        "per_slice_dice_mean": float(np.nanmean(curve)) if np.isfinite(curve).any() else None,
        "per_class": per_class,
    }
    result["F1"] = result["dice"]
    if surface:
        for key in ("surface_dice", "surface_precision", "surface_recall"):
            result[key] = mean(key)
    return result


def membrane_normals(membrane_mask: np.ndarray, sigma: float = 1.0, rho: float = 3.0
                     ) -> tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray]:
    """Unit surface normals at the voxels of a binary membrane mask ``[z, y, x]``.

    The normal is the dominant eigenvector of the structure tensor of the mask (gradients at
    ``sigma`` voxels, averaged over ``rho`` voxels), which is defined in the middle of a thick
    membrane where the gradient of the smoothed mask itself vanishes.

    Returns:
        ``(index, normals, defined)``: the ``np.nonzero`` index of the mask voxels, their
        normals as ``(n, 3)`` rows in ``z, y, x`` order (sign arbitrary), and whether each
        normal is defined (the tensor is not zero there).
    """
    from scipy import ndimage

    f = membrane_mask.astype(np.float32)
    grads = [ndimage.gaussian_filter(f, sigma, order=order)
             for order in ((1, 0, 0), (0, 1, 0), (0, 0, 1))]
    idx = np.nonzero(membrane_mask)
    tensor = np.empty((len(idx[0]), 3, 3), dtype=np.float64)
    for i in range(3):
        for j in range(i, 3):
            smoothed = ndimage.gaussian_filter(grads[i] * grads[j], rho)[idx]
            tensor[:, i, j] = smoothed
            tensor[:, j, i] = smoothed
    eigval, eigvec = np.linalg.eigh(tensor)
    return idx, eigvec[:, :, 2], eigval[:, 2] > 1e-6


def _binary_3d(membrane_mask: np.ndarray | Volume) -> np.ndarray:
    mask = np.asarray(_array(membrane_mask)) != 0
    if mask.ndim != 3:
        raise ValueError(f"membrane mask must be 3D, got shape {mask.shape}")
    return mask


def missing_wedge_cap_mask(membrane_mask: np.ndarray | Volume, angle_deg: float = 30.0,
                           sigma: float = 1.0, rho: float = 3.0) -> np.ndarray:
    """Membrane voxels whose surface normal lies within ``angle_deg`` of the z axis.

    These "caps" (tops and bottoms of vesicles, sheets lying in the x-y plane) are the
    membrane parts the missing wedge blurs out of tomograms reconstructed from a tilt
    series around the y axis. Normals as in :func:`membrane_normals`.

    Args:
        membrane_mask: binary mask ``[z, y, x]``.
        angle_deg: half-angle (degrees) of the cone around z.
        sigma, rho: gradient and integration scales in voxels.

    Returns:
        bool array ``[z, y, x]``, a subset of the mask.
    """
    mask = _binary_3d(membrane_mask)
    cap = np.zeros(mask.shape, dtype=bool)
    if not mask.any():
        return cap
    idx, normals, defined = membrane_normals(mask, sigma, rho)
    cap[idx] = defined & (np.abs(normals[:, 0]) >= np.cos(np.deg2rad(angle_deg)))
    return cap


def edge_on_gap_deg(normals_zyx: np.ndarray, tilt_range_deg: tuple[float, float]
                    ) -> np.ndarray:
    """Smallest angle (degrees) between the beam and the membrane plane over a tilt series.

    The beam of the tilt at angle t (rotation about the y axis) is ``(x, z) = (sin t,
    cos t)``; a membrane with unit normal ``n`` shows its bilayer edge-on, with full contrast,
    when the beam lies in its plane (``n . beam = 0``). A gap of 0 means some tilt in
    ``tilt_range_deg`` views it edge-on; membranes with a large gap are hidden by the missing
    wedge whatever their angle to z (a sheet whose normal points along y is always edge-on;
    one tilted towards z about the x axis never is). ``normals_zyx``: ``(n, 3)`` rows.
    """
    lo, hi = np.deg2rad(np.sort(np.asarray(tilt_range_deg, dtype=float)))
    nz, nx = normals_zyx[:, 0], normals_zyx[:, 2]
    # n . beam = nx sin t + nz cos t is a sinusoid in t with zeros 180 degrees apart: a
    # range shorter than that holds a zero exactly when the sign changes between its ends,
    # and otherwise |n . beam| is smallest at one of the ends.
    at_lo = nx * np.sin(lo) + nz * np.cos(lo)
    at_hi = nx * np.sin(hi) + nz * np.cos(hi)
    edge_on = (at_lo * at_hi <= 0) | (hi - lo >= np.pi)
    smallest = np.where(edge_on, 0.0, np.minimum(np.abs(at_lo), np.abs(at_hi)))
    return np.rad2deg(np.arcsin(np.clip(smallest, 0.0, 1.0)))


# A flat membrane viewed a degrees off edge-on spreads over (extent x sin a) in projection, so
# beyond a few degrees its contrast is gone: 5 degrees is about two steps of a typical series.
EDGE_ON_TOLERANCE_DEG = 5.0


def wedge_hidden_mask(membrane_mask: np.ndarray | Volume, tilt_range_deg: tuple[float, float],
                      tolerance_deg: float = EDGE_ON_TOLERANCE_DEG, sigma: float = 1.0,
                      rho: float = 3.0) -> np.ndarray:
    """Membrane voxels that no tilt of ``tilt_range_deg`` (about y) views within
    ``tolerance_deg`` of edge-on (:func:`edge_on_gap_deg`): the membrane a tomogram from that
    tilt series barely shows. Unlike the 30-degree caps this uses the actual tilt range and
    the tilt axis. Returns a bool array ``[z, y, x]``, a subset of the mask."""
    mask = _binary_3d(membrane_mask)
    hidden = np.zeros(mask.shape, dtype=bool)
    if not mask.any():
        return hidden
    idx, normals, defined = membrane_normals(mask, sigma, rho)
    hidden[idx] = defined & (edge_on_gap_deg(normals, tilt_range_deg) > tolerance_deg)
    return hidden


def _inside_outside(truth: np.ndarray, prediction: np.ndarray | Volume, threshold: float,
                    region: np.ndarray) -> dict[str, Any]:
    inside = evaluate_segmentation(truth, prediction, threshold=threshold, region=region)
    outside = evaluate_segmentation(truth, prediction, threshold=threshold, region=~region)
    keys = ("dice", "surface_dice", "precision", "recall", "iou", "region_voxels")
    return {"membrane_voxels": int(truth.sum()),
            "inside": {k: inside[k] for k in keys}, "outside": {k: outside[k] for k in keys}}


def wedge_cap_scores(truth: np.ndarray | Volume, prediction: np.ndarray | Volume, *,
                     threshold: float = 0.5, angle_deg: float = 30.0) -> dict[str, Any]:
    """Binary scores inside and outside the missing-wedge caps of the true membranes.

    The caps come from :func:`missing_wedge_cap_mask` of the binarised truth; "outside" is
    every other voxel (the rest of the membranes and the background), so precision there
    also counts false positives away from the caps. Inside the caps every voxel is true
    membrane, so precision is 1 whenever anything is predicted there and recall (and the
    Dice that follows from it) is the informative number. Arrays are ``[z, y, x]``.
    """
    t = binarize(_array(truth), 0.5)
    caps = missing_wedge_cap_mask(t, angle_deg)
    return {"angle_deg": angle_deg, "cap_voxels": int(caps.sum()),
            **_inside_outside(t, prediction, threshold, caps)}


def wedge_hidden_scores(truth: np.ndarray | Volume, prediction: np.ndarray | Volume, *,
                        tilt_range_deg: tuple[float, float], threshold: float = 0.5,
                        tolerance_deg: float = EDGE_ON_TOLERANCE_DEG) -> dict[str, Any]:
    """Binary scores on the true membrane that the tilt series hides
    (:func:`wedge_hidden_mask`) and on everything else, as :func:`wedge_cap_scores`."""
    t = binarize(_array(truth), 0.5)
    hidden = wedge_hidden_mask(t, tilt_range_deg, tolerance_deg)
    return {"tilt_range_deg": [float(a) for a in tilt_range_deg],
            "tolerance_deg": tolerance_deg, "hidden_voxels": int(hidden.sum()),
            **_inside_outside(t, prediction, threshold, hidden)}
