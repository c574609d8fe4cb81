"""Particle-picking scores with the rules of the SHREC 2021 cryo-ET evaluation script.

Rules (Gubins et al. 2021, section 2.2, and the track's evaluation script):

* The particle-instance map (0 = background, ``k`` = particle ``k``) is dilated once with
  the 6-connected cross (grey dilation: where two dilated particles touch, the larger id
  wins, as in the script).
* Each pick is rounded to the nearest voxel (half to even) and clipped into the volume.
* A pick on background is a false positive (FP). The first pick (in file order) on a
  particle makes it a true positive (TP) and gives it its predicted class; further picks on
  it are multiple hits, not FPs. ``multiple_hits`` counts the particles hit more than once.
* Particles of excluded classes (fiducials by default) are not part of the truth; picks
  on them count in RR (results reported) only.
* precision = TP / RR, recall = TP / number of true particles, miss rate = 1 - recall,
  F1 = harmonic mean; the average distance is from each particle's first hit (rounded,
  clipped) to its true centre, in voxels.
* Classification: a confusion matrix of true class vs. the class of the first pick
  ("background" when not found) over the true particles, per-class F1 from it, and the
  mean per-class F1 of each size group.

Positions are voxels ``x, y, z`` of the instance map (arrays are ``[z, y, x]``). A table
whose known voxel size differs from the map's is rescaled into map voxels.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from formats import Volume

BACKGROUND = "background"
UNCLASSIFIED = "unclassified"
SIZE_GROUPS = ("small", "medium", "large")


def dilate_instances(instances: np.ndarray) -> np.ndarray:
    """The instance map grey-dilated once with the 6-connected cross (array ``[z, y, x]``)."""
    from scipy import ndimage

    cross = ndimage.generate_binary_structure(3, 1)
    return ndimage.grey_dilation(np.asarray(instances), footprint=cross, mode="constant", cval=0)


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _class_names(table: pd.DataFrame) -> list[str]:
    if "class" not in table.columns:
        return [UNCLASSIFIED] * len(table)
    return [UNCLASSIFIED if (c is None or (isinstance(c, float) and np.isnan(c)) or
                             str(c).strip() == "") else str(c).strip()
            for c in table["class"]]


def _positions_in_map_voxels(table: pd.DataFrame, map_voxel_size: float) -> tuple[np.ndarray, bool]:
    """(N, 3) x, y, z in voxels of the map; rescaled when both voxel sizes are known."""
    xyz = table[["x", "y", "z"]].to_numpy(dtype=float)
    if len(table) == 0 or not (map_voxel_size > 0) or "voxel_size" not in table.columns:
        return xyz, False
    vs = table["voxel_size"].to_numpy(dtype=float)
    known = np.isfinite(vs) & (vs > 0)
    scale = np.where(known, vs / map_voxel_size, 1.0)
    rescaled = bool(np.any(np.abs(scale - 1.0) > 1e-3))
    return (xyz * scale[:, None] if rescaled else xyz), rescaled


def _truth_ids(truth: pd.DataFrame, xyz: np.ndarray, instances: np.ndarray) -> np.ndarray:
    """Instance-map value of each true particle: the ``id`` column, else the value at its centre."""
    if "id" in truth.columns:
        ids = pd.to_numeric(truth["id"], errors="coerce").to_numpy(dtype=float)
        if not np.all(np.isfinite(ids)) or np.any(ids <= 0) or np.any(ids != np.round(ids)):
            raise ValueError("truth column 'id' must hold positive integers (instance-map values)")
        ids = ids.astype(np.int64)
    else:
        ijk = np.clip(np.rint(xyz).astype(np.int64), 0, np.array(instances.shape[::-1]) - 1)
        ids = np.asarray(instances[ijk[:, 2], ijk[:, 1], ijk[:, 0]], dtype=np.int64)
        if np.any(ids == 0):
            raise ValueError(f"{int(np.sum(ids == 0))} true particle(s) lie on background of the "
                             "instance map; give the truth an 'id' column")
    if len(np.unique(ids)) != len(ids):
        raise ValueError("two true particles share one instance id")
    return ids


def _size_groups(classes: list[str], volumes: np.ndarray,
                 mapping: Mapping[str, str] | None) -> dict[str, list[str]]:
    """Classes per size group: the mapping if given, else thirds by median region volume."""
    groups: dict[str, list[str]] = {}
    if mapping:
        lower = {k.lower(): v for k, v in mapping.items()}
        for c in sorted(set(classes)):
            if c.lower() in lower:
                groups.setdefault(str(lower[c.lower()]), []).append(c)
        return groups
    names = sorted(set(classes))
    if not names:
        return groups
    arr = np.asarray(classes, dtype=object)
    medians = [float(np.median(volumes[arr == c])) for c in names]
    ordered = [names[i] for i in np.argsort(medians, kind="stable")]
    for rank, name in enumerate(ordered):
        # Rank scaled to 0..2: two classes are small and large, six give two per group.
        level = int(np.round(2 * rank / (len(ordered) - 1))) if len(ordered) > 1 else 1
        groups.setdefault(SIZE_GROUPS[level], []).append(name)
    groups = {g: groups[g] for g in SIZE_GROUPS if g in groups}
    return groups


def evaluate_picks(
    instances: np.ndarray | Volume,
    truth: pd.DataFrame,
    predictions: pd.DataFrame,
    *,
    exclude: Iterable[str] = ("fiducial",),
    size_groups: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Score picks against a particle-instance map with the SHREC 2021 rules.

    Args:
        instances: particle-instance map ``[z, y, x]`` (0 background, k > 0 particle k), or a
            Volume carrying it and its voxel size (Å).
        truth: canonical particle table of the true particles (``x, y, z`` voxels, ``class``);
            an ``id`` column gives each particle's value in the map, otherwise the value at
            its rounded centre is used.
        predictions: canonical particle table of the picks (``x, y, z`` voxels, ``class``),
            in the order they were reported (the first pick on a particle is its hit).
        exclude: class names (case-insensitive) left out of the truth; picks on them only
            count in RR.
        size_groups: optional ``{class: group}``; by default classes are split into three
            groups (small/medium/large) by the median voxel count of their instance regions.

    Returns:
        A JSON-ready dict: ``F1``, ``precision``, ``recall``, ``RR``, ``TP``, ``FP``, ``FN``,
        ``multiple_hits``, ``average_distance`` (voxels; ``average_distance_angst`` when the
        voxel size is known), ``miss_rate``, ``per_class``, ``confusion``, ``size_groups``...
    """
    voxel_size = float(instances.voxel_size) if isinstance(instances, Volume) else 0.0
    inst = _instance_ids(instances)
    excluded = {e.strip().lower() for e in exclude}
    truth_xyz, truth_rescaled = _positions_in_map_voxels(truth, voxel_size)
    truth_classes = _class_names(truth)
    truth_ids = _truth_ids(truth, truth_xyz, inst)
    pred_xyz, pred_rescaled = _positions_in_map_voxels(predictions, voxel_size)
    # Picks are matched to truth classes by name, ignoring case and surrounding blanks.
    spelling = {c.lower(): c for c in truth_classes}
    pred_classes = [spelling.get(c.lower(), c) for c in _class_names(predictions)]
    is_excluded = np.array([c.lower() in excluded for c in truth_classes], dtype=bool)
    match = _match(inst, truth_ids, truth_xyz, is_excluded, pred_xyz, pred_classes)

    result = _localisation(match, ~is_excluded, len(predictions))
    result.update(_classification_scores(match, truth_classes, ~is_excluded, truth_ids, inst,
                                         size_groups))
    result.update({
        "excluded_classes": sorted(excluded),
        "n_excluded_true": int(is_excluded.sum()),
        "rescaled_to_map_voxels": {"truth": truth_rescaled, "predictions": pred_rescaled},
    })
    if voxel_size > 0:
        result["voxel_size"] = voxel_size
        avg = result["average_distance"]
        result["average_distance_angst"] = None if avg is None else avg * voxel_size
    return result


def _instance_ids(instances: np.ndarray | Volume) -> np.ndarray:
    """The instance map as int64 ``[z, y, x]``; ValueError unless 3D non-negative integers."""
    inst = np.asarray(instances.data if isinstance(instances, Volume) else instances)
    if inst.ndim != 3:
        raise ValueError(f"instance map must be 3D, got shape {inst.shape}")
    if not np.issubdtype(inst.dtype, np.integer) and not np.all(np.mod(inst, 1) == 0):
        raise ValueError("instance map must hold integer ids")
    inst = inst.astype(np.int64, copy=False)
    if inst.size and inst.min() < 0:
        raise ValueError("instance map has negative values")
    return inst


@dataclass
class _Match:
    """Picks matched to true particles (arrays along the truth table)."""

    n_hits: np.ndarray
    first_class: list[str | None]
    first_distance: np.ndarray
    false_positives: int
    on_excluded: int
    on_unlisted: int
    clipped: int


def _match(inst: np.ndarray, truth_ids: np.ndarray, truth_xyz: np.ndarray,
           is_excluded: np.ndarray, pred_xyz: np.ndarray, pred_classes: list[str]) -> _Match:
    """Each pick, in file order, on the dilated map: a hit, a multiple hit or a false pick."""
    dilated = dilate_instances(inst)
    upper = np.array(inst.shape[::-1]) - 1
    rounded = np.rint(pred_xyz).astype(np.int64) if len(pred_xyz) else np.zeros((0, 3), np.int64)
    clipped = np.clip(rounded, 0, upper)
    hit_ids = dilated[clipped[:, 2], clipped[:, 1], clipped[:, 0]] if len(clipped) else \
        np.zeros(0, np.int64)
    row_of_id = {int(i): r for r, i in enumerate(truth_ids)}
    match = _Match(np.zeros(len(truth_ids), dtype=np.int64), [None] * len(truth_ids),
                   np.full(len(truth_ids), np.nan), 0, 0, 0,
                   int(np.any(clipped != rounded, axis=1).sum()))
    for k, pid in enumerate(hit_ids):
        row = row_of_id.get(int(pid))
        if row is None:
            match.false_positives += 1
            match.on_unlisted += int(pid != 0)
            continue
        if is_excluded[row]:
            match.on_excluded += 1
            continue
        if match.n_hits[row] == 0:
            match.first_class[row] = pred_classes[k]
            match.first_distance[row] = float(np.linalg.norm(clipped[k] - truth_xyz[row]))
        match.n_hits[row] += 1
    return match


def _localisation(match: _Match, included: np.ndarray, reported: int) -> dict[str, Any]:
    """SHREC localisation counts and ratios of the included true particles."""
    hits = match.n_hits[included]
    n_true = int(included.sum())
    tp = int((hits > 0).sum())
    precision, recall = _ratio(tp, reported), _ratio(tp, n_true)
    distances = match.first_distance[included & (match.n_hits > 0)]
    return {
        "F1": _f1(precision, recall),
        "precision": precision,
        "recall": recall,
        "miss_rate": 1.0 - recall,
        "RR": reported,
        "TP": tp,
        "FP": match.false_positives,
        "FN": n_true - tp,
        "multiple_hits": int((hits > 1).sum()),
        "duplicate_picks": int(hits.sum()) - tp,
        "picks_on_excluded": match.on_excluded,
        "picks_on_unlisted_instances": match.on_unlisted,
        "picks_clipped": match.clipped,
        "average_distance": float(distances.mean()) if len(distances) else None,
        "n_true": n_true,
    }


def _classification_scores(match: _Match, truth_classes: list[str], included: np.ndarray,
                           truth_ids: np.ndarray, inst: np.ndarray,
                           size_groups: Mapping[str, str] | None) -> dict[str, Any]:
    """Confusion matrix, per-class and per-size-group F1 of the first hits."""
    actual = [c for c, inc in zip(truth_classes, included) if inc]
    predicted = [match.first_class[r] or BACKGROUND for r in np.flatnonzero(included)]
    confusion, per_class = _classification(actual, predicted)
    # Class-agnostic pickers score 0 in classification; how many of each class they found
    # at all is still worth knowing (not part of the SHREC tables).
    found = match.n_hits[included] > 0
    for c in set(actual):
        of_class = np.array([a == c for a in actual])
        per_class[c]["localisation_recall"] = float(found[of_class].mean())
    region_volume = np.bincount(inst.ravel(), minlength=int(truth_ids.max(initial=0)) + 1)
    volumes = region_volume[truth_ids[included]] if len(actual) else np.zeros(0)
    group_scores = {}
    for name, members in _size_groups(actual, volumes, size_groups).items():
        f1s = [per_class[c]["F1"] for c in members if per_class.get(c, {}).get("F1") is not None]
        group_scores[name] = {"classes": members,
                              "F1": float(np.mean(f1s)) if f1s else None}
    return {
        "per_class": per_class,
        "classification_F1_macro": _macro(per_class, actual),
        "confusion": confusion,
        "size_groups": group_scores,
        "size_group_rule": "given mapping" if size_groups else
        "classes ranked by median instance-region volume (voxels), split in thirds",
    }


def _macro(per_class: dict[str, dict[str, Any]], actual: list[str]) -> float | None:
    f1s = [per_class[c]["F1"] for c in sorted(set(actual)) if per_class[c]["F1"] is not None]
    return float(np.mean(f1s)) if f1s else None


def _classification(actual: list[str], predicted: list[str]
                    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Confusion matrix (rows true, columns predicted) and per-class scores derived from it."""
    labels = sorted(set(actual) | (set(predicted) - {BACKGROUND})) + [BACKGROUND]
    index = {c: i for i, c in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for a, p in zip(actual, predicted):
        matrix[index[a], index[p]] += 1
    per_class: dict[str, dict[str, Any]] = {}
    for c in labels[:-1]:
        i = index[c]
        tp = int(matrix[i, i])
        fp = int(matrix[:, i].sum()) - tp
        fn = int(matrix[i, :].sum()) - tp
        den = 2 * tp + fp + fn
        per_class[c] = {
            "n_true": int(matrix[i, :].sum()),
            "TP": tp, "FP": fp, "FN": fn,
            "precision": _ratio(tp, tp + fp) if tp + fp else None,
            "recall": _ratio(tp, tp + fn) if tp + fn else None,
            "F1": 2 * tp / den if den else None,
        }
    return {"labels": labels, "matrix": matrix.tolist()}, per_class



def orientation_errors(instances: np.ndarray | Volume, truth: pd.DataFrame,
                       predictions: pd.DataFrame, *, symmetry: str = "C1",
                       classes: Iterable[str] | None = None) -> dict[str, Any]:
    """Angular error (degrees) of oriented picks against the true particles they land on.

    Picks are matched as in :func:`evaluate_picks` (rounded, clipped, on the once-dilated
    instance map; the first pick on a particle is its hit). Orientations are the
    ``formats`` convention (reference -> tomogram) of both tables; the error is the
    smallest rotation between them over the template's point group ``symmetry`` (``Cn`` /
    ``Dn`` about the template's z axis).

    Args:
        instances: particle-instance map ``[z, y, x]`` or a Volume carrying it.
        truth: true particles (``x, y, z`` voxels, ``class``, orientations, optional ``id``).
        predictions: oriented picks (``x, y, z`` voxels of the map, orientations).
        symmetry: point group of the template.
        classes: compare only with true particles of these classes (the template's);
            hits on particles of other classes are counted as ``n_other_class``.

    Returns:
        ``n_picks``, ``n_matched`` (first hits on a particle of ``classes``),
        ``n_other_class``, ``n_background``, ``median_deg``, ``mean_deg``,
        ``fraction_within_15_deg``, ``fraction_within_30_deg`` (None when nothing matched)
        and ``errors_deg`` (per matched pick, in pick order).
    """
    from formats import orientations

    from ..picking.template.so3 import angular_distance

    voxel_size = float(instances.voxel_size) if isinstance(instances, Volume) else 0.0
    inst = _instance_ids(instances)
    truth_xyz, _ = _positions_in_map_voxels(truth, voxel_size)
    truth_ids = _truth_ids(truth, truth_xyz, inst)
    wanted = None if classes is None else {c.strip().lower() for c in classes}
    truth_classes = [c.lower() for c in _class_names(truth)]
    pred_xyz, _ = _positions_in_map_voxels(predictions, voxel_size)
    dilated = dilate_instances(inst)
    ijk = np.clip(np.rint(pred_xyz).astype(np.int64), 0, np.array(inst.shape[::-1]) - 1) \
        if len(pred_xyz) else np.zeros((0, 3), np.int64)
    hit_ids = dilated[ijk[:, 2], ijk[:, 1], ijk[:, 0]]
    row_of_id = {int(i): r for r, i in enumerate(truth_ids)}
    seen: set[int] = set()
    pick_rows, truth_rows = [], []
    other = background = 0
    for k, pid in enumerate(hit_ids):
        row = row_of_id.get(int(pid))
        if row is None:
            background += 1
        elif wanted is not None and truth_classes[row] not in wanted:
            other += 1
        elif row not in seen:
            seen.add(row)
            pick_rows.append(k)
            truth_rows.append(row)
    errors = angular_distance(orientations(predictions)[pick_rows],
                              orientations(truth)[truth_rows], symmetry) if pick_rows \
        else np.zeros(0)
    matched = len(errors) > 0
    return {
        "n_picks": len(predictions), "n_matched": len(errors), "n_other_class": other,
        "n_background": background, "symmetry": symmetry,
        "median_deg": float(np.median(errors)) if matched else None,
        "mean_deg": float(np.mean(errors)) if matched else None,
        "fraction_within_15_deg": float(np.mean(errors <= 15)) if matched else None,
        "fraction_within_30_deg": float(np.mean(errors <= 30)) if matched else None,
        "errors_deg": [round(float(e), 3) for e in errors],
    }
