"""Particle tables of extracted subtomograms: RELION 3.1 subtomogram STAR and Dynamo crop
table, and the subtomogram set read back for averaging.

RELION 3.1 (``particles.star``): an optics block (rlnOpticsGroup, rlnImagePixelSize Å,
rlnImageSize px, rlnImageDimensionality 3, rlnVoltage kV, rlnSphericalAberration mm,
rlnAmplitudeContrast) and a particle block: rlnImageName (the subtomogram), rlnCtfImage (its
missing-wedge weight, when known), rlnCoordinateX/Y/Z (the crop centre, px of the tomogram),
rlnAngleRot/Tilt/Psi, rlnOriginX/Y/ZAngst, rlnClassNumber, rlnMicrographName (tomogram) and
rlnOpticsGroup. RELION's position is ``coordinate - origin``, and its image of a particle
has the particle's centre at ``box // 2 - origin / pixel``; a crop centred on the nearest
voxel with remainder ``shift`` (voxels, see ``extract``) therefore gets ``rlnOrigin*Angst =
-shift * pixel size``, and ``formats.read_particles`` reads the exact pick back.

Dynamo (``crop.tbl`` beside ``particle_00001.em`` ...): tag t is ``particle_%05d.em``;
columns 24-26 hold the crop centre (1-based px) and 4-6 (dx, dy, dz) the remainder, since
Dynamo's position is ``x + dx``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

AXES = ("X", "Y", "Z")
# What the optics block states when neither the picks nor the command line say otherwise:
# a 300 kV microscope with the usual Cs and amplitude contrast of cryo-ET.
DEFAULT_MICROSCOPE = {"rlnVoltage": 300.0, "rlnSphericalAberration": 2.7,
                      "rlnAmplitudeContrast": 0.07}
DYNAMO_COLUMNS = 36


def particle_file_name(index: int, fmt: str) -> str:
    """File name of subtomogram ``index`` (0-based): RELION ``subtomo_000001.mrc``, Dynamo
    ``particle_00001.em`` (Dynamo's name for tag ``index + 1``)."""
    return f"subtomo_{index + 1:06d}.mrc" if fmt == "relion3" else f"particle_{index + 1:05d}.em"


def microscope_values(table: pd.DataFrame, overrides: Mapping[str, float | None]
                      ) -> dict[str, float]:
    """Voltage (kV), Cs (mm) and amplitude contrast for the optics block: ``overrides`` (by
    RELION label) first, then the picks' own optics (``optics_rln...``), then the defaults."""
    out = {}
    for label, default in DEFAULT_MICROSCOPE.items():
        value = overrides.get(label)
        column = f"optics_{label}"
        if value is None and column in table.columns:
            known = pd.to_numeric(table[column], errors="coerce").dropna()
            value = float(known.iloc[0]) if len(known) else None
        out[label] = float(default if value is None else value)
    return out


def class_numbers(classes: pd.Series) -> np.ndarray:
    """rlnClassNumber / Dynamo class per particle: integer names kept, other names numbered
    1..k in order of appearance, missing classes 1."""
    names = [None if c is None or (isinstance(c, float) and np.isnan(c)) else str(c)
             for c in classes]
    if all(n is None or n.lstrip("-").isdigit() for n in names):
        return np.array([1 if n is None else int(n) for n in names], dtype=np.int64)
    order = {n: i + 1 for i, n in enumerate(dict.fromkeys(n for n in names if n is not None))}
    return np.array([order.get(n, 1) if n is not None else 1 for n in names], dtype=np.int64)


def write_relion_subtomograms(path: Path, image_names: Sequence[str], centres_xyz: np.ndarray,
                              shifts_xyz: np.ndarray, matrices: np.ndarray,
                              classes: np.ndarray, tomogram: str, voxel_size: float, box: int,
                              microscope: Mapping[str, float],
                              ctf_images: Sequence[str] | None = None,
                              overwrite: bool = False) -> None:
    """Write a RELION 3.1 subtomogram STAR (see the module's conventions).

    Args:
        path: the STAR file; image paths are written as given (relative to where RELION
            runs: extract writes them relative to the STAR's folder).
        image_names: subtomogram file of each particle.
        centres_xyz: (N, 3) integer crop centres ``x, y, z``, voxels of the tomogram.
        shifts_xyz: (N, 3) remainders (voxels): the particle's centre is at ``box // 2 +
            shift`` of its subtomogram.
        matrices: (N, 3, 3) orientations (reference -> tomogram).
        classes: (N,) rlnClassNumber.
        tomogram: rlnMicrographName.
        voxel_size: Å per voxel of the tomogram (the subtomograms' pixel size).
        box: subtomogram edge (px).
        microscope: rlnVoltage, rlnSphericalAberration, rlnAmplitudeContrast.
        ctf_images: rlnCtfImage of each particle (missing-wedge weights), or None.
    """
    from formats import euler, write_star

    n = len(image_names)
    angles = euler.matrix_to_relion(np.asarray(matrices, dtype=float).reshape(n, 3, 3))
    origins = -np.asarray(shifts_xyz, dtype=float).reshape(n, 3) * voxel_size
    centres = np.asarray(centres_xyz, dtype=float).reshape(n, 3)
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["opticsGroup1"],
                           "rlnImagePixelSize": [float(voxel_size)], "rlnImageSize": [int(box)],
                           "rlnImageDimensionality": [3],
                           **{k: [float(v)] for k, v in microscope.items()}})
    particles = {"rlnImageName": list(image_names)}
    if ctf_images is not None:
        particles["rlnCtfImage"] = list(ctf_images)
    particles.update({f"rlnCoordinate{a}": centres[:, i] for i, a in enumerate(AXES)})
    particles.update({"rlnAngleRot": angles[:, 0], "rlnAngleTilt": angles[:, 1],
                      "rlnAnglePsi": angles[:, 2]})
    particles.update({f"rlnOrigin{a}Angst": origins[:, i] for i, a in enumerate(AXES)})
    particles.update({"rlnClassNumber": np.asarray(classes, dtype=np.int64),
                      "rlnMicrographName": [tomogram] * n,
                      "rlnOpticsGroup": np.ones(n, dtype=np.int64)})
    write_star(path, {"optics": optics, "particles": pd.DataFrame(particles)},
               overwrite=overwrite, version="30001")


def write_dynamo_crop_table(path: Path, tags: np.ndarray, centres_xyz: np.ndarray,
                            shifts_xyz: np.ndarray, matrices: np.ndarray, classes: np.ndarray,
                            voxel_size: float, tilt_range: tuple[float, float] | None = None,
                            overwrite: bool = False) -> None:
    """Write the Dynamo table of a particle folder (36 columns, see the module's doc).

    ``tags`` (N,) 1-based particle tags; ``centres_xyz`` (N, 3) integer crop centres and
    ``shifts_xyz`` the remainders, voxels ``x, y, z`` (0-based; written 1-based).
    ``tilt_range`` (degrees): Dynamo's wedge, ftype 1 (single axis about y) with columns
    14-15 ymintilt, ymaxtilt.
    """
    from formats import atomic_path, euler

    n = len(tags)
    cols = np.zeros((n, DYNAMO_COLUMNS))
    cols[:, 0] = tags
    cols[:, 1:3] = 1  # aligned, averaged
    cols[:, 3:6] = shifts_xyz
    cols[:, 6:9] = euler.matrix_to_dynamo(np.asarray(matrices, dtype=float).reshape(n, 3, 3))
    if tilt_range is not None:
        cols[:, 12] = 1
        cols[:, 13:15] = sorted(tilt_range)
    cols[:, 19] = 1  # tomogram index
    cols[:, 21] = classes
    cols[:, 23:26] = np.asarray(centres_xyz, dtype=float) + 1.0
    cols[:, 35] = voxel_size
    integer = {0, 1, 2, 12, 19, 21}
    lines = [" ".join(str(int(v)) if c in integer else f"{v:.6f}" for c, v in enumerate(row))
             for row in cols]
    with atomic_path(path, overwrite) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")


@dataclasses.dataclass
class SubtomogramSet:
    """Subtomograms listed by a RELION 3.1 subtomogram STAR, as averaging needs them.

    Attributes:
        images: (N,) subtomogram paths (resolved against the STAR's folder).
        ctf_images: (N,) rlnCtfImage paths, or None when the file has none.
        tilt_ranges: (N, 2) tilt ranges (degrees) of Dynamo's wedge columns, or None.
        shifts_xyz: (N, 3) particle centre minus box centre in each subtomogram, voxels
            (``-rlnOrigin*Angst / pixel``).
        matrices: (N, 3, 3) orientations (reference -> tomogram).
        has_angles: whether the file gave rlnAngleRot/Tilt/Psi (else identities).
        subsets: (N,) half-set 1 or 2 (rlnRandomSubset when given, else alternating).
        pixel_size: Å per voxel.
    """

    images: list[Path]
    ctf_images: list[Path] | None
    tilt_ranges: np.ndarray | None
    shifts_xyz: np.ndarray
    matrices: np.ndarray
    has_angles: bool
    subsets: np.ndarray
    pixel_size: float


def read_subtomogram_set(path: Path) -> SubtomogramSet:
    """Read a RELION 3.1 subtomogram STAR (``cryovis extract``'s, or RELION's own).

    Raises CryovisError (one line naming the file) when the file lists no rlnImageName or
    no pixel size. Orientations come from ``formats.read_particles`` (the one Euler reader).
    """
    from formats import FormatError, orientations, read_particles, read_star

    from ..errors import CryovisError

    try:
        blocks = read_star(path)
    except FormatError as exc:
        raise CryovisError(str(exc)) from None
    particles = blocks.get("particles")
    if not isinstance(particles, pd.DataFrame):
        particles = next((b for b in blocks.values() if isinstance(b, pd.DataFrame)
                          and "rlnImageName" in b.columns), None)
    if particles is None or "rlnImageName" not in particles.columns:
        raise CryovisError(f"{path}: no particle block with rlnImageName (is it a subtomogram "
                           "STAR from cryovis extract or RELION?)")
    if not len(particles):
        raise CryovisError(f"{path}: lists no particles")
    optics = blocks.get("optics")
    pixel = np.nan
    if isinstance(optics, pd.DataFrame) and "rlnImagePixelSize" in optics.columns:
        pixel = float(pd.to_numeric(optics["rlnImagePixelSize"], errors="coerce").iloc[0])
    for label in ("rlnImagePixelSize", "rlnPixelSize"):
        if not np.isfinite(pixel) and label in particles.columns:
            pixel = float(pd.to_numeric(particles[label], errors="coerce").iloc[0])
    if not (np.isfinite(pixel) and pixel > 0):
        raise CryovisError(f"{path}: no pixel size (rlnImagePixelSize) for the subtomograms")
    try:
        table = read_particles(path)
    except FormatError as exc:
        raise CryovisError(str(exc)) from None
    n = len(particles)
    origin = np.zeros((n, 3))
    for i, a in enumerate(AXES):
        if f"rlnOrigin{a}Angst" in particles.columns:
            origin[:, i] = pd.to_numeric(particles[f"rlnOrigin{a}Angst"]).to_numpy() / pixel
        elif f"rlnOrigin{a}" in particles.columns:
            origin[:, i] = pd.to_numeric(particles[f"rlnOrigin{a}"]).to_numpy()
    folder = path.parent
    images = [folder / str(name) for name in particles["rlnImageName"]]
    ctf = [folder / str(name) for name in particles["rlnCtfImage"]] \
        if "rlnCtfImage" in particles.columns else None
    if "rlnRandomSubset" in particles.columns:
        subsets = pd.to_numeric(particles["rlnRandomSubset"]).to_numpy().astype(np.int64)
    else:
        subsets = np.arange(n) % 2 + 1
    has_angles = {"rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"} <= set(particles.columns)
    return SubtomogramSet(images, ctf, None, -origin, orientations(table), has_angles, subsets,
                          pixel)


def read_dynamo_set(path: Path) -> SubtomogramSet:
    """Read a Dynamo particle folder's table (``cryovis extract --format dynamo``'s, or
    Dynamo's ``crop.tbl``): ``particle_%05d.em`` by tag beside it, dx/dy/dz as the shifts,
    the wedge from ftype 1 tilt ranges, pixel size from column 36."""
    from formats import FormatError, orientations, read_particles

    from ..errors import CryovisError

    try:
        cols = np.loadtxt(path, ndmin=2, comments="#")
        table = read_particles(path, format="dynamo")
    except (ValueError, FormatError) as exc:
        raise CryovisError(f"{path}: not a Dynamo table ({exc})") from None
    if cols.shape[1] < 26:
        raise CryovisError(f"{path}: a Dynamo table has at least 26 columns, got {cols.shape[1]}")
    pixel = float(cols[0, 35]) if cols.shape[1] > 35 else 0.0
    if not pixel > 0:
        raise CryovisError(f"{path}: no pixel size (column 36, apix) for the subtomograms")
    images = [path.parent / f"particle_{int(t):05d}.em" for t in cols[:, 0]]
    wedge = cols[:, 12] == 1 if cols.shape[1] > 14 else np.zeros(len(cols), bool)
    tilts = cols[:, 13:15] if wedge.all() else None
    n = len(cols)
    return SubtomogramSet(images, None, tilts, cols[:, 3:6].copy(), orientations(table),
                          bool(np.any(cols[:, 6:9] != 0)), np.arange(n) % 2 + 1, pixel)
