"""Training data of the classifier from files: tomograms, particle lists (any format
``formats`` reads; class from the list) and, optionally, the simulator's instance maps.

Tomogram/list pairing, class and position handling are the picker's
(``picking.dataset``, ``picking.targets``). Everything is read and checked before boxes
are cut, so bad input fails in seconds with a message naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from formats import orientations, read_particles_on, read_volume

from ...errors import CryovisError
from ...picking.dataset import _pair_lists, _select_tomogram
from ...picking.targets import prepare_particles
from .targets import build_targets, centre_polarity, cut_boxes, cut_label_boxes
from .training import SubtomogramSet


@dataclass
class ClassifierData:
    """Training and validation boxes with targets, the class names and notes."""

    train: SubtomogramSet
    val: SubtomogramSet | None
    classes: list[str]
    notes: list[str] = field(default_factory=list)


@dataclass
class _Loaded:
    name: str
    images: np.ndarray
    classes: list[str]
    rotations: np.ndarray | None
    instances: np.ndarray | None
    is_val: bool


def _rotations(table, rows: np.ndarray) -> np.ndarray | None:
    """The orientations of the kept rows, or None when the list has none (all identity)."""
    try:
        mats = orientations(table)[rows]
    except KeyError:
        return None
    if not np.isfinite(mats).all() or np.allclose(mats, np.eye(3)[None]):
        return None
    return mats


def _load(tomos: list[str], lists: list[str], instances: list[str] | None, is_val: bool,
          box: int, voxel_size: float, polarity: str, notes: list[str]) -> list[_Loaded]:
    what = "--val-tomograms" if is_val else "--tomograms"
    if instances and len(instances) != len(tomos):
        raise CryovisError(f"{what}: {len(tomos)} tomograms but {len(instances)} instance maps")
    pairs = _pair_lists(tomos, lists, what)
    shared = len(lists) == 1 and len(tomos) > 1
    out = []
    for i, (tomo, plist) in enumerate(pairs):
        vol = read_volume(tomo)
        vs = float(vol.voxel_size or 0.0)
        if not vs > 0:
            raise CryovisError(f"{tomo}: no voxel size in the header; the classifier needs it "
                               "to work at its voxel size")
        table = _select_tomogram(read_particles_on(plist, vol.data.shape, vs), tomo, shared,
                                 plist)
        pl = prepare_particles(table, vol.data.shape, vs, plist)
        notes += pl.notes
        table = table.reset_index(drop=True)
        boxes = cut_boxes(vol.data, vs, pl.xyz, box, voxel_size)
        pol = centre_polarity(boxes.images) if polarity == "auto" else polarity
        if pol == "light":
            notes.append(f"{tomo}: dense matter looks bright (inverted tomogram); inverting "
                         "its boxes")
            boxes.images = -boxes.images
        inst = None
        if instances:
            ivol = read_volume(instances[i])
            if ivol.data.shape != vol.data.shape:
                raise CryovisError(f"{instances[i]}: instance map shape {ivol.data.shape} "
                                   f"differs from the tomogram's {vol.data.shape} ({tomo})")
            inst = cut_label_boxes(ivol.data, vs, pl.xyz, box, voxel_size)
        kept = np.flatnonzero(boxes.kept)
        rot = _rotations(table, pl.rows[kept])
        out.append(_Loaded(Path(tomo).stem, boxes.images, [pl.classes[k] for k in kept], rot,
                           inst, is_val))
    return out


def load_classifier_data(tomograms: list[str], particles: list[str], box: int, margin: int,
                         voxel_size: float, instances: list[str] | None = None,
                         val_tomograms: list[str] | None = None,
                         val_particles: list[str] | None = None,
                         val_instances: list[str] | None = None,
                         polarity: str = "auto") -> ClassifierData:
    """Read, check and prepare what ``cryovis train classifier`` trains on.

    Args:
        tomograms, particles: training tomograms and their particle lists (one per
            tomogram, or one list whose ``tomo_name`` matches the tomogram file stems).
        box: network box edge (voxels at ``voxel_size`` Å); boxes are cut ``box + 2 *
            margin`` voxels wide so training can shift them.
        voxel_size: model voxel size, Å.
        instances: the simulator's instance maps (one per tomogram) for the particle masks.
        val_*: validation data; without it no validation (the last model is kept).
        polarity: "auto" (from the boxes: picks sit on dense matter), "dark" or "light".
    """
    notes: list[str] = []
    edge = box + 2 * margin
    loaded = _load(tomograms, particles, instances, False, edge, voxel_size, polarity, notes)
    if val_tomograms:
        if not val_particles:
            raise CryovisError("--val-tomograms needs --val-particles")
        loaded += _load(val_tomograms, val_particles, val_instances, True, edge, voxel_size,
                        polarity, notes)
    classes = sorted({c for item in loaded if not item.is_val for c in item.classes})
    if not classes:
        raise CryovisError("no training particles inside the tomograms")
    extra = sorted({c for item in loaded if item.is_val for c in item.classes} - set(classes))
    if extra:
        raise CryovisError(f"validation lists hold class(es) {extra} that the training lists "
                           "do not")
    if len(classes) < 2:
        raise CryovisError(f"the training lists hold one class ({classes[0]!r}); a classifier "
                           "needs at least two")
    sets: dict[bool, list[SubtomogramSet]] = {False: [], True: []}
    for item in loaded:
        labels = np.array([classes.index(c) for c in item.classes], dtype=np.int64)
        tg = build_targets(item.images, labels, len(classes), item.rotations, item.instances)
        notes.append(f"{item.name}: {len(labels)} boxes; masks from the {tg.mask_source}, "
                     "densities from the class averages"
                     + (" under the list's orientations" if item.rotations is not None
                        else " (rotational: the list has no orientations)"))
        sets[item.is_val].append(SubtomogramSet(item.images, tg.masks, tg.densities, labels,
                                                [item.name] * len(labels)))
    val = SubtomogramSet.concat(sets[True]) if sets[True] else None
    return ClassifierData(SubtomogramSet.concat(sets[False]), val, classes, notes)
