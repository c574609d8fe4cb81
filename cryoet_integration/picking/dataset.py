"""Training data of the learned picker from files: tomograms, particle lists in any format
``formats`` reads, optional membrane masks; everything is brought onto the model grid.

Every input is read and checked (shapes, voxel sizes, particle positions) before training
starts, so bad input fails in seconds with a message naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from formats import read_particles_on, read_volume

from ..errors import CryovisError
from .learned import (
    PickerSample,
    build_sample,
    class_order,
    estimate_radii,
    prepare_tomogram,
    split_validation,
)
from .masks import resample_mask
from .targets import ParticleList, prepare_particles


@dataclass
class PickerData:
    """Prepared training and validation samples with the class layout and radii (Å)."""

    train: list[PickerSample]
    val: list[PickerSample]
    classes: list[str]
    particle: list[str]
    excluded: list[str]
    radii_angst: dict[str, float]
    notes: list[str] = field(default_factory=list)


def _pair_lists(tomograms: list[str], particles: list[str], what: str
                ) -> list[tuple[str, str | None]]:
    if len(particles) == len(tomograms):
        return list(zip(tomograms, particles))
    if len(particles) == 1:
        return [(t, particles[0]) for t in tomograms]
    raise CryovisError(f"{what}: {len(tomograms)} tomograms but {len(particles)} particle "
                       "lists (give one list per tomogram, or one list with a tomo_name column)")


def _select_tomogram(table: pd.DataFrame, tomo: str, shared: bool, path: str) -> pd.DataFrame:
    """The rows of a shared particle list that belong to tomogram file ``tomo``."""
    if not shared:
        return table
    stem = Path(tomo).stem
    names = table["tomo_name"].astype(str)
    rows = table[names == stem]
    if rows.empty:
        raise CryovisError(f"{path}: no particles with tomo_name {stem!r} (names in the "
                           f"list: {sorted(names.unique())[:6]})")
    return rows


def load_picker_data(tomograms: list[str], particles: list[str], voxel_size: float,
                     radii: dict[str, float], membranes: list[str] | None = None,
                     val_tomograms: list[str] | None = None,
                     val_particles: list[str] | None = None,
                     val_membranes: list[str] | None = None, patch: int = 64,
                     polarity: str = "auto") -> PickerData:
    """Read, check and prepare everything ``cryovis train picker`` trains on.

    Args:
        tomograms, particles: training tomograms and their particle lists (one per
            tomogram, or one list whose ``tomo_name`` matches the tomogram file stems).
        voxel_size: model voxel size, Å (data are rescaled to it).
        radii: class radii (Å) given by the user; the others are estimated.
        membranes: optional membrane masks (one per tomogram) for the membrane channel.
        val_tomograms, val_particles, val_membranes: validation data; without it the last
            quarter along y of each training tomogram is held out.
        patch: training patch edge (voxels), the smallest part worth keeping.
    """
    notes: list[str] = []
    loaded: list[tuple[str, np.ndarray, ParticleList, np.ndarray | None, bool]] = []
    groups = [(tomograms, particles, membranes, False)]
    if val_tomograms:
        groups.append((val_tomograms, val_particles or [], val_membranes, True))
    for tomos, lists, mems, is_val in groups:
        what = "--val-tomograms" if is_val else "--tomograms"
        if mems and len(mems) != len(tomos):
            raise CryovisError(f"{what}: {len(tomos)} tomograms but {len(mems)} membrane masks")
        pairs = _pair_lists(tomos, lists, what)
        shared = len(lists) == 1 and len(tomos) > 1
        for i, (tomo, plist) in enumerate(pairs):
            vol = read_volume(tomo)
            prep = prepare_tomogram(vol, voxel_size, polarity)
            notes += prep.notes
            table = _select_tomogram(read_particles_on(plist, vol.data.shape,
                                                       prep.input_voxel_size),
                                     tomo, shared, plist)
            pl = prepare_particles(table, vol.data.shape, prep.input_voxel_size, plist)
            notes += pl.notes
            pl.xyz = pl.xyz / prep.model_to_input[None, :]
            mem = None
            if mems:
                mvol = read_volume(mems[i])
                if mvol.data.shape != vol.data.shape:
                    raise CryovisError(f"{mems[i]}: membrane mask shape {mvol.data.shape} "
                                       f"differs from the tomogram's {vol.data.shape} ({tomo})")
                mem = resample_mask(np.asarray(mvol.data) > 0, prep.image.shape)
            loaded.append((Path(tomo).stem, prep.image, pl, mem, is_val))
    if sum(len(pl.classes) for _, _, pl, _, v in loaded if not v) == 0:
        raise CryovisError("no training particles inside the tomograms")
    with_membrane = bool(membranes)
    classes, particle, excluded = class_order([pl for _, _, pl, _, _ in loaded], with_membrane)
    radii_angst, radius_notes = estimate_radii([(img, pl) for _, img, pl, _, v in loaded
                                                if not v], voxel_size, radii)
    notes += radius_notes
    missing = sorted({c for _, _, pl, _, _ in loaded for c in pl.classes} - set(radii_angst))
    if missing:
        raise CryovisError(f"validation lists hold class(es) {missing} that the training "
                           "lists do not")
    train, val = [], []
    for name, image, pl, mem, is_val in loaded:
        sample = build_sample(name, image, pl.xyz, pl.classes, classes, radii_angst,
                              voxel_size, mem)
        if is_val:
            val.append(sample)
        elif val_tomograms:
            train.append(sample)
        else:
            part, held = split_validation(sample, patch)
            train.append(part)
            if held is not None:
                val.append(held)
    if not val:
        notes.append("no validation part: tomograms too small to hold one out (need about "
                     f"{2 * patch} voxels along y at the model voxel size); peak settings are "
                     "the defaults, not tuned")
    return PickerData(train, val, classes, particle, excluded, radii_angst, notes)
