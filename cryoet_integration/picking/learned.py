"""The learned picker: a multi-class 3D U-Net from the segmentation engine (one class per
particle type, gold beads, membrane, background) followed by peak extraction (``peaks``).

A picker model is a segmenter model (``MODEL.pt`` + ``MODEL.json``) whose card has a
``picker`` section: which classes are particles, which are learned only to be dropped (gold),
the class radii in Å and the peak-extraction settings tuned on held-out validation data,
with the validation scores they reached.

Positions are voxels ``x, y, z`` of the tomogram given; arrays ``[z, y, x]``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from formats import Volume, make_table

from ..errors import CryovisError
from . import masks
from .peaks import PeakSettings, find_candidates, select
from .targets import EXCLUDED_CLASS_NAMES, ParticleList, ball_maps, estimate_radius

log = logging.getLogger(__name__)

PICKER_KIND = "cryovis-picker"
PICKER_VERSION = 1
DEFAULT_PICKER = "picker_default"
MEMBRANE = "membrane"
# The smallest axis (model voxels) the U-Net's four levels can work on.
MIN_AXIS = 16
# Peak-extraction grid searched on the validation part (see tune_peaks).
TUNE_THRESHOLDS = tuple(np.round(np.arange(0.1, 0.91, 0.05), 2))
TUNE_MIN_CORE = (0.0, 0.15, 0.3, 0.45)
TUNE_SIGMA = (1.0, 2.0)
TUNE_NMS = (0.6, 0.9)
# Validation split when no validation tomograms are given: the last quarter along y.
VAL_FRACTION = 0.25

PICKER_TRAIN_DEFAULTS: dict[str, Any] = {
    "voxel_size": 10.0,
    "loss": {"dice": 1.0, "bce": 1.0},
    "patch_size": [64, 64, 64],
    "foreground_fraction": 0.7,
    "max_steps": 3000,
    "validate_every": 100,
    "patience": 8,
    "val_crop": [64, 128, 128],
    # "auto": bf16 autocast only where the device computes it natively (segmentation/device.py)
    "precision": "auto",
    "augment": {"missing_wedge": {"p": 0.2}, "fourier_amplitude": {"p": 0.3},
                "zoom": {"p": 0.2, "range": (0.85, 1.2)}, "blur": {"p": 0.2, "sigma": (0.5, 1.5)},
                "low_resolution": {"p": 0.2, "scale": (0.5, 1.0)}},
}


def default_picker_path() -> Path:
    """The shipped default picker (``cryoet_integration/models/picker_default.pt``)."""
    return Path(str(resources.files("cryoet_integration") / "models" / f"{DEFAULT_PICKER}.pt"))


def channel_of(classes: list[str], name: str) -> int:
    """Probability channel of class ``name`` (one-class models have a single channel)."""
    return 0 if len(classes) == 1 else classes.index(name) + 1


def load_picker(path: str | Path | None = None, device: str = "cpu"):
    """Load a picker model (default: the shipped one); returns ``(net, card)``.

    CryovisError names the file when it is not a picker (e.g. a membrane segmenter).
    """
    from ..segmentation.checkpoint import load_model, model_paths, read_card

    p = default_picker_path() if path is None else Path(path)
    weights, card_path = model_paths(p)
    if path is None and not weights.exists():
        raise CryovisError(f"{weights}: the default picker is not installed")
    card = read_card(p)
    section = card.get("picker")
    if not isinstance(section, dict) or section.get("kind") != PICKER_KIND:
        raise CryovisError(f"{card_path}: a segmentation model of {card.get('classes')}, not a "
                           "picker (train one with 'cryovis train picker')")
    missing = [c for c in section.get("particle_classes", []) + section.get("excluded_classes", [])
               if c not in card["classes"]]
    if missing or not section.get("particle_classes"):
        raise CryovisError(f"{card_path}: picker classes {missing or '[]'} are not among the "
                           f"model's classes {card['classes']}")
    net, card = load_model(p, device=device)
    return net, card


@dataclass
class PreparedTomogram:
    """A tomogram on the model grid: normalised ``image`` (dense matter dark), the scale
    ``model_to_input`` (x, y, z) from model voxels to input voxels, and notes."""

    image: np.ndarray
    input_voxel_size: float
    model_to_input: np.ndarray
    polarity: str
    notes: list[str] = field(default_factory=list)


def check_pickable(volume: Volume, model_voxel_size: float) -> None:
    """CryovisError (naming the file) when ``volume``, rescaled to the model's
    ``model_voxel_size`` Å, is smaller than the U-Net can work on along some axis; cheap, so
    commands call it before any work."""
    from cryoet_integration.preprocess import rescaled_shape

    from ..segmentation.inference import RESCALE_TOLERANCE

    vs = float(volume.voxel_size or 0.0) or model_voxel_size
    shape = tuple(volume.data.shape)
    if abs(vs / model_voxel_size - 1) > RESCALE_TOLERANCE:
        shape = rescaled_shape(shape, vs, model_voxel_size)
    if min(shape) < MIN_AXIS:
        raise CryovisError(f"{volume.path or 'tomogram'}: {tuple(volume.data.shape)} voxels "
                           f"(z, y, x) at {vs:g} Å are {shape} at the model's "
                           f"{model_voxel_size:g} Å; the picker needs at least {MIN_AXIS} "
                           "voxels per axis there")


def prepare_tomogram(volume: Volume, model_voxel_size: float, polarity: str = "auto"
                     ) -> PreparedTomogram:
    """Rescale ``volume`` to ``model_voxel_size`` Å, normalise it and make dense matter dark.

    ``polarity``: "dark" (as reconstructed), "light" (inverted: it is flipped back) or
    "auto" (detected, see ``masks.detect_polarity``). A volume without a voxel size is taken
    to be at the model's (noted).
    """
    from cryoet_integration.preprocess import rescale_to_voxel_size, robust_normalize

    from ..segmentation.inference import RESCALE_TOLERANCE, check_input

    check_input(volume)
    check_pickable(volume, model_voxel_size)
    if polarity not in ("auto", "dark", "light"):
        raise ValueError(f"polarity must be auto, dark or light, got {polarity!r}")
    notes = []
    vs = float(volume.voxel_size or 0.0)
    if not vs > 0:
        notes.append(f"{volume.path or 'tomogram'} has no voxel size; assuming the model's "
                     f"{model_voxel_size:g} Å (give --voxel-size)")
        vs = model_voxel_size
    data = np.asarray(volume.data, dtype=np.float32)
    if abs(vs / model_voxel_size - 1) > RESCALE_TOLERANCE:
        data = rescale_to_voxel_size(data, vs, model_voxel_size)
    data = robust_normalize(data)
    if polarity == "auto":
        polarity = masks.detect_polarity(data)
        if polarity == "light":
            notes.append("dense matter looks bright (inverted tomogram); inverting it back "
                         "(override with --polarity dark)")
    if polarity == "light":
        data = -data
    scale = np.array(volume.data.shape[::-1], float) / np.array(data.shape[::-1], float)
    return PreparedTomogram(data, vs, scale, polarity, notes)


@dataclass
class PickResult:
    """Picks (canonical table, voxels of the input tomogram, decreasing score) and facts
    about the run (``info``: counts, polarity, excluded fraction, timings, notes)."""

    table: pd.DataFrame
    info: dict[str, Any]


def pick_tomogram(volume: Volume, net, card: dict[str, Any], polarity: str = "auto",
                  threshold: float | None = None, min_score: float | None = None,
                  max_particles: int | None = None, exclude_gold: bool = True,
                  exclude_outside_slab: bool = False, roi: np.ndarray | None = None,
                  tile: int | None = None, bf16: bool = False, device: str = "cpu",
                  tomo_name: str | None = None,
                  progress: Callable[[int, int], None] | None = None) -> PickResult:
    """Pick particles in ``volume`` with a loaded picker (see :func:`load_picker`).

    Args:
        threshold: override the card's tuned peak threshold (0-1).
        min_score: drop picks scoring below this (score = smoothed particle probability).
        max_particles: keep at most this many (highest scores).
        exclude_gold: drop picks near automatically found gold beads.
        exclude_outside_slab: drop picks outside the ice slab found along z.
        roi: optional boolean ``[z, y, x]`` mask on the input grid; picks outside it dropped.
        tile: largest inference tile edge (model voxels); default the engine's.
    """
    from ..segmentation.inference import DEFAULT_TILE, predict_probabilities

    t0 = time.perf_counter()
    section = card["picker"]
    classes = list(card["classes"])
    prep = prepare_tomogram(volume, float(card["voxel_size"]), polarity)
    if roi is not None and roi.shape != volume.data.shape:
        raise CryovisError(f"region-of-interest mask has shape {roi.shape}, the tomogram "
                           f"{tuple(volume.data.shape)} (z, y, x)")
    t1 = time.perf_counter()
    probs = predict_probabilities(net, prep.image, tile=tile or DEFAULT_TILE, bf16=bf16,
                                  device=device, progress=progress)
    t2 = time.perf_counter()
    exclude = np.zeros(prep.image.shape, bool)
    if exclude_gold:
        exclude |= masks.gold_mask(prep.image, float(card["voxel_size"]))
    if exclude_outside_slab:
        exclude |= masks.slab_mask(prep.image, float(card["voxel_size"]))
    if roi is not None:
        exclude |= ~masks.resample_mask(roi.astype(bool), prep.image.shape)
    particle = list(section["particle_classes"])
    competing = particle + list(section.get("excluded_classes", []))
    radii_vox = np.array([section["radii_angst"][c] for c in competing]) / float(card["voxel_size"])
    settings = PeakSettings.from_dict(section.get("peaks"))
    if threshold is not None:
        settings.threshold = float(threshold)
    cands = find_candidates(probs, [channel_of(classes, c) for c in particle],
                            [channel_of(classes, c) for c in competing], radii_vox,
                            settings.sigma, floor=min(settings.threshold, 0.05),
                            exclude=exclude if exclude.any() else None)
    kept = select(cands, settings, set(range(len(particle), len(competing))))
    scores = cands.score[kept]
    if min_score is not None:
        kept, scores = kept[scores >= min_score], scores[scores >= min_score]
    if max_particles is not None:
        kept, scores = kept[:max_particles], scores[:max_particles]
    xyz = cands.xyz[kept] * prep.model_to_input[None, :]
    names = [competing[i] for i in cands.class_index[kept]]
    name = tomo_name if tomo_name is not None else (Path(volume.path).stem if volume.path else "")
    table = make_table(xyz, voxel_size=prep.input_voxel_size, classes=names,
                       scores=np.round(scores, 6), tomo_name=name)
    counts = pd.Series(names, dtype=object).value_counts().to_dict() if names else {}
    info = {"n_picks": len(table), "per_class": {str(k): int(v) for k, v in counts.items()},
            "polarity": prep.polarity, "model_voxel_size": float(card["voxel_size"]),
            "working_shape_zyx": list(prep.image.shape), "peaks": settings.to_dict(),
            "excluded_fraction": round(float(exclude.mean()), 4),
            "timings_s": {"prepare": round(t1 - t0, 2), "network": round(t2 - t1, 2),
                          "peaks": round(time.perf_counter() - t2, 2)},
            "notes": prep.notes}
    return PickResult(table, info)


# --------------------------------------------------------------------------- training

@dataclass
class PickerSample:
    """One training or validation volume on the model grid: normalised image, label map
    (0 background, 1..K), ball instance map and the truth table (for scoring)."""

    name: str
    image: np.ndarray
    labels: np.ndarray
    instances: np.ndarray
    truth: pd.DataFrame


def build_sample(name: str, image: np.ndarray, xyz_model: np.ndarray, classes: list[str],
                 class_order: list[str], radii_angst: dict[str, float], voxel_size: float,
                 membrane: np.ndarray | None = None) -> PickerSample:
    """Label and instance maps of one volume on the model grid (positions in its voxels)."""
    ids = np.array([class_order.index(c) + 1 for c in classes], dtype=np.int8)
    radii = np.array([radii_angst[c] / voxel_size for c in classes], float)
    labels, instances = ball_maps(image.shape, xyz_model, ids, radii)
    if membrane is not None and MEMBRANE in class_order:
        labels[(membrane > 0) & (labels == 0)] = class_order.index(MEMBRANE) + 1
    truth = make_table(xyz_model, voxel_size=voxel_size, classes=classes, tomo_name=name)
    truth.insert(0, "id", np.arange(1, len(truth) + 1))
    return PickerSample(name, image, labels, instances, truth)


def split_validation(sample: PickerSample, patch: int) -> tuple[PickerSample, PickerSample | None]:
    """Cut off the last quarter along y (at least one patch) as validation; the particles
    whose centres lie in the gap of half a patch between the parts are in neither."""
    ny = sample.image.shape[1]
    n_val = max(patch, int(round(ny * VAL_FRACTION)))
    gap = patch // 2
    if ny - n_val - gap < patch:
        return sample, None
    cut = ny - n_val

    def part(lo: int, hi: int, suffix: str) -> PickerSample:
        y = sample.truth["y"].to_numpy()
        inside = (y >= lo) & (y < hi)
        truth = sample.truth[inside].copy()
        truth["y"] -= lo
        keep_ids = truth["id"].to_numpy()
        inst = sample.instances[:, lo:hi]
        inst = np.where(np.isin(inst, keep_ids), inst, 0)
        return PickerSample(sample.name + suffix, sample.image[:, lo:hi].copy(),
                            sample.labels[:, lo:hi].copy(), inst, truth.reset_index(drop=True))

    return part(0, cut - gap, ""), part(cut, ny, "_val")


def _to_train_volume(sample: PickerSample):
    from ..segmentation.data import TrainVolume

    fg = np.flatnonzero(sample.labels > 0)
    if fg.size > 200_000:
        fg = np.random.default_rng(0).choice(fg, 200_000, replace=False)
    return TrainVolume(sample.name, sample.image, sample.labels, fg)


def tune_peaks(net, card: dict[str, Any], particle: list[str], excluded: list[str],
               radii_angst: dict[str, float], val: list[PickerSample], bf16: bool = False
               ) -> tuple[PeakSettings, dict[str, Any]]:
    """Grid-search the peak-extraction settings that maximise localisation F1 (SHREC rules)
    summed over the validation volumes; returns them and the validation scores."""
    from ..evaluate.picks import evaluate_picks
    from ..segmentation.inference import predict_probabilities

    classes = list(card["classes"])
    vs = float(card["voxel_size"])
    competing = particle + excluded
    radii_vox = np.array([radii_angst[c] for c in competing]) / vs
    probs = [predict_probabilities(net, s.image, bf16=bf16) for s in val]
    best: tuple[float, PeakSettings, dict[str, Any]] | None = None
    excluded_idx = set(range(len(particle), len(competing)))
    for sigma in TUNE_SIGMA:
        cands = [find_candidates(p, [channel_of(classes, c) for c in particle],
                                 [channel_of(classes, c) for c in competing], radii_vox, sigma)
                 for p in probs]
        for nms in TUNE_NMS:
            for core in TUNE_MIN_CORE:
                for thr in TUNE_THRESHOLDS:
                    settings = PeakSettings(float(thr), sigma, core, nms)
                    tp = rr = n_true = 0
                    for s, c in zip(val, cands):
                        kept = select(c, settings, excluded_idx)
                        pred = make_table(c.xyz[kept], voxel_size=vs,
                                          classes=[competing[i] for i in c.class_index[kept]],
                                          scores=c.score[kept])
                        r = evaluate_picks(s.instances, s.truth, pred, exclude=excluded)
                        tp += r["TP"]
                        rr += r["RR"]
                        n_true += r["n_true"]
                    precision = tp / rr if rr else 0.0
                    recall = tp / n_true if n_true else 0.0
                    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
                    if best is None or f1 > best[0]:
                        best = (f1, settings, {"f1": round(f1, 4),
                                               "precision": round(precision, 4),
                                               "recall": round(recall, 4),
                                               "n_true": n_true, "n_picks": rr})
    assert best is not None
    return best[1], best[2]


def estimate_radii(samples: list[tuple[np.ndarray, ParticleList]], voxel_size: float,
                   given: dict[str, float]) -> tuple[dict[str, float], list[str]]:
    """Class radii in Å: the given ones, the rest estimated from the tomograms
    (``targets.estimate_radius`` over all of a class's particles)."""
    classes = sorted({c for _, pl in samples for c in pl.classes})
    radii, notes = {}, []
    for c in classes:
        if c in given:
            radii[c] = float(given[c])
            continue
        estimates = [estimate_radius(img, pl.xyz[np.array(pl.classes) == c], voxel_size)
                     for img, pl in samples if c in pl.classes]
        radii[c] = float(np.median(estimates))
        notes.append(f"class {c!r}: radius estimated from the tomogram as {radii[c]:.0f} Å "
                     "(give --radius CLASS=Å to set it)")
    unknown = sorted(set(given) - set(classes))
    if unknown:
        raise CryovisError(f"--radius names class(es) {unknown} that are not in the particle "
                           f"lists (classes: {classes})")
    return radii, notes


def class_order(particle_lists: list[ParticleList], with_membrane: bool
                ) -> tuple[list[str], list[str], list[str]]:
    """(model classes, particle classes, excluded classes): particle classes sorted, then
    the gold classes the picker learns to drop, then ``membrane`` when masks are given."""
    names = sorted({c for pl in particle_lists for c in pl.classes})
    excluded = [c for c in names if c.lower() in EXCLUDED_CLASS_NAMES]
    particle = [c for c in names if c not in excluded]
    if not particle:
        raise CryovisError("the particle lists hold no particles (only gold beads or none)")
    if MEMBRANE in particle:
        raise CryovisError(f"a particle class is called {MEMBRANE!r}, which names the "
                           "membrane channel; rename it")
    return particle + excluded + ([MEMBRANE] if with_membrane else []), particle, excluded


def train_picker(train: list[PickerSample], val: list[PickerSample], out: str | Path,
                 classes: list[str], particle: list[str], excluded: list[str],
                 radii_angst: dict[str, float], config: dict[str, Any] | None = None,
                 minutes: float | None = None, resume: bool = False,
                 provenance: dict[str, Any] | None = None, overwrite: bool = False,
                 progress: bool = False, threads: int = 2) -> dict[str, Any]:
    """Train the picker's U-Net on prepared samples, tune peak extraction on ``val`` and
    write the model with its ``picker`` card section; returns the training summary plus the
    validation scores."""
    from ..segmentation.checkpoint import load_model, update_card
    from ..segmentation.train import train_segmenter

    cfg = {**PICKER_TRAIN_DEFAULTS, **(config or {}), "classes": classes}
    summary = train_segmenter([_to_train_volume(s) for s in train],
                              [_to_train_volume(s) for s in val], out, cfg, minutes=minutes,
                              resume=resume, provenance=provenance, overwrite=overwrite,
                              progress=progress, threads=threads)
    net, card = load_model(out)
    section: dict[str, Any] = {"kind": PICKER_KIND, "version": PICKER_VERSION,
                               "particle_classes": particle, "excluded_classes": excluded,
                               "radii_angst": {c: round(radii_angst[c], 2)
                                               for c in particle + excluded}}
    if val:
        settings, scores = tune_peaks(net, card, particle, excluded, radii_angst, val)
        section.update(peaks=settings.to_dict(), validation=scores,
                       tuned_on=[s.name for s in val])
        log.info("peak extraction tuned on %s: %s -> %s", [s.name for s in val],
                 settings.to_dict(), scores)
    else:
        section.update(peaks=PeakSettings().to_dict(), validation=None, tuned_on=[])
    update_card(out, {"picker": section}, section=None)
    return {**summary, "validation": section["validation"], "peaks": section["peaks"]}
