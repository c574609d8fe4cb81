"""RELION particle STAR files: 3.0, 3.1, 4 (relion_tomo) and 5, plus Warp/TomoMan flavours.

Reading (one reader; the meaning of the columns is decided from the content):

=================  ===========================================  =============================
flavour            positions                                    pixel size (Å)
=================  ===========================================  =============================
relion30           rlnCoordinate px of the tomogram, corner     rlnDetectorPixelSize*1e4/
                   (no optics block; TomoMan/Warp 1 too)        rlnMagnification, rlnPixelSize
relion31           same, optics block                           optics rlnImagePixelSize
relion4            rlnCoordinate in UNBINNED tilt-series px     optics rlnTomoTiltSeriesPixelSize
relion5 (centred)  rlnCenteredCoordinate*Angst: Å from the      tilt-series pixel size
                   centre, centre = rlnTomoSize/2 (unbinned px)
relion5 (Warp 2)   rlnCoordinate px at rlnImagePixelSize        optics rlnImagePixelSize
                   (RELION-5 layout without centred columns)
=================  ===========================================  =============================

Origin shifts are subtracted (true position = coordinate - origin): rlnOriginX/Y/Z in px,
rlnOrigin*Angst in Å; in RELION 5 the Å shift is first rotated by the subtomogram
pre-rotation A_sub. Orientation R = A_sub . A_particle (A = RELION's Euler matrix).
Angles of any magnitude are accepted (Warp 2 writes unwrapped values).

Writing: ``relion30``, ``relion31``, ``relion4`` and ``relion5`` put the whole orientation
in rlnAngleRot/Tilt/Psi (no subtomogram pre-rotation, zero origins).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import FormatError, PathLike
from ..facts import counts, distinct_numbers
from ..text.star import read_star, star_structure, write_star
from . import euler
from .common import (
    apply_binning,
    class_ids,
    extra_columns,
    file_positions,
    map_unique,
    positive_or_none,
    recompute_angst,
    tomo_name_from_path,
)
from .registry import ParticleFormat, declared_options, register
from .table import as_text, make_table, orientations
from .tomograms import MICROSCOPE, TomogramsLike, as_tomograms, geometry, tomogram_rows

AXES = ("X", "Y", "Z")
COORD = [f"rlnCoordinate{a}" for a in AXES]
CENTRED = [f"rlnCenteredCoordinate{a}Angst" for a in AXES]
ORIGIN_PX = [f"rlnOrigin{a}" for a in AXES]
ORIGIN_A = [f"rlnOrigin{a}Angst" for a in AXES]
ANGLES = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]
SUB_ANGLES = ["rlnTomoSubtomogramRot", "rlnTomoSubtomogramTilt", "rlnTomoSubtomogramPsi"]
PRIORS = ["rlnAngleTiltPrior", "rlnAnglePsiPrior", "rlnAngleRotPrior"]
SCORES = ["rlnAutopickFigureOfMerit", "rlnLCCmax"]
PIXEL_LABELS = ["rlnPixelSize", "rlnDetectorPixelSize", "rlnMagnification",
                "rlnImagePixelSize", "rlnTomoTiltSeriesPixelSize", "rlnMicrographPixelSize"]
# Optics-group (and data_general) facts a refinement needs: carried per particle as
# ``optics_<label>`` columns, so a writer can put them back into its optics block.
CARRIED_OPTICS = ["rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast",
                  "rlnCtfDataAreCtfPremultiplied", "rlnImageSize", "rlnImageDimensionality",
                  "rlnMicrographOriginalPixelSize", "rlnTomoSubTomosAre2DStacks"]
OPTICS_PREFIX = "optics_"
# Columns whose meaning is consumed into the canonical table (never carried as extras).
STRUCTURAL = set(COORD + CENTRED + ORIGIN_PX + ORIGIN_A + ANGLES + SUB_ANGLES + PIXEL_LABELS
                 + CARRIED_OPTICS
                 + ["rlnOpticsGroup", "rlnMicrographName", "rlnTomoName", "rlnClassNumber",
                    "rlnClassName"]
                 + SCORES)
VERSIONS = {"relion30": None, "relion31": "30001", "relion4": "30001", "relion5": "50001"}
NON_PARTICLE = {
    "tomograms": "a RELION 5 tomograms.star (tomogram list; pass it with --tomograms)",
    "optimisation_set": "a RELION optimisation set (it names the particles file to read)",
    "tiltseries": "a RELION tilt-series STAR (per-tilt metadata), not a particle file",
}


def _particle_block_name(structure: dict[str, list[str]]) -> str | None:
    for name, labels in structure.items():
        if set(COORD) <= set(labels) or set(CENTRED) <= set(labels):
            if name == "particles" or "particles" not in structure:
                return name
    return None


def classify(structure: dict[str, list[str]]) -> str | None:
    """The flavour of a STAR file from its block structure (see ``star_structure``).

    One of relion30/31/4/5, stopgap, tomograms, optimisation_set, tiltseries, or None.
    """
    if "stopgap_motivelist" in structure:
        return "stopgap"
    block = _particle_block_name(structure)
    if block is None:
        labels = {lab for labs in structure.values() for lab in labs}
        if {"rlnTomoName", "rlnTomoSizeX"} <= labels:
            return "tomograms"
        if "rlnTomoParticlesFile" in labels:
            return "optimisation_set"
        if "rlnTomoNominalStageTiltAngle" in labels or "rlnMicrographMovieName" in labels:
            return "tiltseries"
        return None
    labels = set(structure[block])
    if set(CENTRED) <= labels or "general" in structure:
        return "relion5"
    if "optics" in structure:
        return "relion4" if "rlnTomoName" in labels else "relion31"
    return "relion30"


@functools.lru_cache(maxsize=64)
def _flavour_cached(path: str, mtime: float, size: int) -> str | None:
    return classify(star_structure(path))


def flavour(path: PathLike) -> str | None:
    """Flavour of the STAR file at ``path`` (cached by modification time)."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return None
    return _flavour_cached(str(p), st.st_mtime, st.st_size)


def _per_particle(optics: pd.DataFrame | None, particles: pd.DataFrame, label: str,
                  path: PathLike) -> np.ndarray:
    """Value of ``label`` per particle: the particle's own column, else its optics group's."""
    n = len(particles)
    if label in particles.columns:
        return pd.to_numeric(particles[label], errors="coerce").to_numpy(dtype=float)
    if optics is None or label not in optics.columns:
        return np.full(n, np.nan)
    values = pd.to_numeric(optics[label], errors="coerce")
    if "rlnOpticsGroup" in particles.columns and "rlnOpticsGroup" in optics.columns:
        mapping = pd.Series(values.to_numpy(), index=pd.to_numeric(optics["rlnOpticsGroup"],
                                                                   errors="coerce"))
        if mapping.index.duplicated().any():
            raise FormatError(path, "optics block lists an rlnOpticsGroup twice")
        groups = pd.to_numeric(particles["rlnOpticsGroup"], errors="coerce")
        undefined = sorted(set(pd.unique(groups.dropna())) - set(mapping.index))
        if undefined:
            raise FormatError(path, f"particles refer to optics group {undefined[0]:g}, which "
                                    "the optics block does not define")
        return groups.map(mapping).to_numpy(dtype=float)
    if len(values) == 1 or values.nunique() == 1:
        return np.full(n, float(values.iloc[0]))
    raise FormatError(path, "several optics groups but particles have no rlnOpticsGroup")


def _first_finite(*arrays: np.ndarray) -> np.ndarray:
    out = np.array(arrays[0], dtype=float)
    for a in arrays[1:]:
        out = np.where(np.isfinite(out) & (out > 0), out, a)
    return np.where(out > 0, out, np.nan)


def _numeric(particles: pd.DataFrame, labels: list[str], path: PathLike) -> np.ndarray:
    try:
        return particles[labels].apply(pd.to_numeric, errors="raise").to_numpy(dtype=float)
    except (ValueError, TypeError):
        raise FormatError(path, f"non-numeric values in {labels}") from None


def read_relion(path: PathLike, voxel_size: float | None = None,
                tomograms: TomogramsLike = None, tomo_size_xyz: Any = None,
                tilt_series_pixel_size: float | None = None,
                binning: float | None = None,
                tomo_name_map: PathLike | None = None) -> pd.DataFrame:
    """Read a RELION 3.0/3.1/4/5 (or Warp/TomoMan) particle STAR file.

    Args:
        path: the STAR file.
        voxel_size: pixel-coordinate files: the true Å per pixel of rlnCoordinate (overrides
            the file). RELION 5 centred files: the voxel size to express positions in.
        tomograms: RELION 5 tomograms.star (path or ``read_tomograms`` table) giving
            tomogram sizes and tilt-series pixel sizes (needed for centred coordinates).
        tomo_size_xyz: tomogram size (unbinned px, ``"XxYxZ"``) instead of ``tomograms``.
        tilt_series_pixel_size: Å, instead of the optics/tomograms value.
        binning: table voxel size / file pixel size (e.g. 4 for bin-4 voxels from RELION 4's
            unbinned coordinates).
        tomo_name_map: two-column file mapping the particles' tomogram names to those of
            ``tomograms`` when normalising suffixes (``.mrc``, ``.tomostar``...) is not enough.

    Class names come from rlnClassName when present, else rlnClassNumber. Optics values a
    refinement needs (voltage, Cs, ...) are carried as ``optics_rln...`` columns.

    Returns:
        The canonical particle table (see ``formats.particles``).
    """
    p = Path(path)
    blocks = read_star(p)
    structure = {k: list(v.columns) if isinstance(v, pd.DataFrame) else list(v)
                 for k, v in blocks.items()}
    kind = classify(structure)
    if kind in NON_PARTICLE:
        raise FormatError(p, f"is {NON_PARTICLE[kind]}")
    if kind == "stopgap":
        from .stopgap import read_stopgap

        return read_stopgap(p, voxel_size=voxel_size, binning=binning)
    if kind is None:
        raise FormatError(p, "no particle block: expected a loop with rlnCoordinateX/Y/Z or "
                             "rlnCenteredCoordinateX/Y/ZAngst")
    particles = blocks[_particle_block_name(structure)]
    optics = blocks.get("optics") if isinstance(blocks.get("optics"), pd.DataFrame) else None
    n = len(particles)
    vs_override = positive_or_none(voxel_size, "voxel size", p)
    names = _tomo_names(particles)

    angles = _numeric(particles, ANGLES, p) if set(ANGLES) <= set(particles.columns) \
        else np.zeros((n, 3))
    a_part = euler.relion_to_matrix(angles)
    if set(SUB_ANGLES) <= set(particles.columns):
        a_sub = euler.relion_to_matrix(_numeric(particles, SUB_ANGLES, p))
        matrices = a_sub @ a_part
    else:
        a_sub, matrices = None, a_part

    if set(CENTRED) <= set(particles.columns):
        centred = _numeric(particles, CENTRED, p)
        ts_optics = _per_particle(optics, particles, "rlnTomoTiltSeriesPixelSize", p)
        size, ts = geometry(names, p, tomograms, tomo_size_xyz, tilt_series_pixel_size,
                            need_size=True, optics_pixel=ts_optics,
                            tomo_name_map=tomo_name_map)
        xyz = centred / ts[:, None] + size / 2.0
        shift_a = _origin_angst(particles, p)
        if a_sub is not None:
            shift_a = np.einsum("nij,nj->ni", a_sub, shift_a)
        xyz = xyz - shift_a / ts[:, None]
        pixel = ts
        if vs_override is not None:
            xyz = xyz * (ts / vs_override)[:, None]
            pixel = np.full(n, vs_override)
    else:
        xyz = _numeric(particles, COORD, p)
        pixel = _pixel_size(kind, optics, particles, p, tilt_series_pixel_size)
        if vs_override is not None:
            pixel = np.full(n, vs_override)
        xyz = xyz - _origin_px(particles, pixel, a_sub, p)

    classes = next((particles[c] for c in ("rlnClassName", "rlnClassNumber")
                    if c in particles.columns), None)
    scores = None
    for label in SCORES:
        if label in particles.columns:
            scores = pd.to_numeric(particles[label], errors="coerce").to_numpy(dtype=float)
            break
    drop = [c for c in particles.columns if c in STRUCTURAL
            or (a_sub is not None and c in PRIORS)]
    extra = particles.drop(columns=drop).reset_index(drop=True)
    for label, values in _carried_optics(kind, blocks, optics, particles, p).items():
        extra[OPTICS_PREFIX + label] = values
    table = make_table(xyz, pixel, matrices, names, classes, scores, extra)
    table.attrs["format"] = kind
    return recompute_angst(apply_binning(table, positive_or_none(binning, "binning", p)))


def _carried_optics(kind: str, blocks: dict[str, Any], optics: pd.DataFrame | None,
                    particles: pd.DataFrame, path: PathLike) -> dict[str, np.ndarray]:
    """Per-particle values of CARRIED_OPTICS the file states (labels it lacks are left out).

    RELION 3.x and 4 subtomograms are 3D images: with rlnImageName and no stated
    dimensionality, 3 is what the file implies.
    """
    out: dict[str, np.ndarray] = {}
    general = blocks.get("general")
    for label in CARRIED_OPTICS:
        values = _per_particle(optics, particles, label, path)
        if isinstance(general, dict) and label in general:
            values = np.full(len(particles), pd.to_numeric(general[label], errors="coerce"),
                             dtype=float)
        if np.isfinite(values).any():
            out[label] = values
    if "rlnImageDimensionality" not in out and "rlnImageName" in particles.columns \
            and kind in ("relion30", "relion31", "relion4"):
        out["rlnImageDimensionality"] = np.full(len(particles), 3.0)
    return out


def _tomo_names(particles: pd.DataFrame) -> pd.Series:
    if "rlnTomoName" in particles.columns:
        return particles["rlnTomoName"].reset_index(drop=True)
    if "rlnMicrographName" in particles.columns:
        return pd.Series(map_unique(particles["rlnMicrographName"].astype(str),
                                    tomo_name_from_path), dtype=object)
    return pd.Series([""] * len(particles), dtype=object)


def _origin_angst(particles: pd.DataFrame, path: PathLike) -> np.ndarray:
    if set(ORIGIN_A) <= set(particles.columns):
        return np.nan_to_num(_numeric(particles, ORIGIN_A, path))
    return np.zeros((len(particles), 3))


def _origin_px(particles: pd.DataFrame, pixel: np.ndarray, a_sub: np.ndarray | None,
               path: PathLike) -> np.ndarray:
    """Origin shift in pixels of the coordinates (px columns, or Å / pixel size)."""
    n = len(particles)
    if set(ORIGIN_PX) <= set(particles.columns):
        return np.nan_to_num(_numeric(particles, ORIGIN_PX, path))
    if set(ORIGIN_A) <= set(particles.columns):
        shift = _origin_angst(particles, path)
        if not shift.any():
            return np.zeros((n, 3))
        if a_sub is not None:
            shift = np.einsum("nij,nj->ni", a_sub, shift)
        if not np.isfinite(pixel).all():
            raise FormatError(path, "rlnOrigin*Angst shifts need a pixel size, which the file "
                                    "does not give: pass voxel_size (--voxel-size)")
        return shift / pixel[:, None]
    return np.zeros((n, 3))


def _pixel_size(kind: str, optics: pd.DataFrame | None, particles: pd.DataFrame,
                path: PathLike, ts_override: float | None) -> np.ndarray:
    """Å per pixel of rlnCoordinate for the pixel-coordinate flavours."""
    def get(label: str) -> np.ndarray:
        return _per_particle(optics, particles, label, path)

    n = len(particles)
    if kind == "relion4":
        if ts_override is not None:
            return np.full(n, positive_or_none(ts_override, "tilt-series pixel size", path))
        binning = get("rlnTomoSubtomogramBinning")
        return _first_finite(get("rlnTomoTiltSeriesPixelSize"), get("rlnMicrographPixelSize"),
                             get("rlnImagePixelSize") / binning, get("rlnImagePixelSize"),
                             get("rlnPixelSize"))
    if kind == "relion5":
        # Warp 2's RELION-5 export: rlnCoordinate at the exported image pixel size.
        return _first_finite(get("rlnImagePixelSize"), get("rlnPixelSize"))
    detector = get("rlnDetectorPixelSize") * 1e4 / get("rlnMagnification")
    if kind == "relion31":
        return _first_finite(get("rlnImagePixelSize"), get("rlnPixelSize"), detector,
                             get("rlnMicrographPixelSize"))
    # pytom-match-pick writes rlnDetectorPixelSize in Å without a magnification
    return _first_finite(detector, get("rlnPixelSize"), get("rlnImagePixelSize"),
                         get("rlnDetectorPixelSize"))


# ----------------------------------------------------------------------------- writing

def _common_columns(table: pd.DataFrame, class_numbers: Mapping[str, int] | None,
                    path: PathLike, angle_priors: bool = False) -> dict[str, Any]:
    angles = euler.matrix_to_relion(orientations(table))
    cols: dict[str, Any] = {"rlnAngleRot": angles[:, 0], "rlnAngleTilt": angles[:, 1],
                            "rlnAnglePsi": angles[:, 2]}
    if angle_priors:
        cols["rlnAngleTiltPrior"], cols["rlnAnglePsiPrior"] = angles[:, 1], angles[:, 2]
    if table["class"].notna().any():
        ids, _, exact = class_ids(table["class"], class_numbers, path)
        cols["rlnClassNumber"] = ids
        if not exact:  # RELION keys classes by number; the names ride along beside them
            cols["rlnClassName"] = as_text(table["class"], missing="")
    if np.isfinite(table["score"].to_numpy(dtype=float)).any():
        cols["rlnAutopickFigureOfMerit"] = table["score"].to_numpy(dtype=float)
    return cols


def _with_extras(particles: dict[str, Any], table: pd.DataFrame, n: int) -> pd.DataFrame:
    df = pd.DataFrame(particles, index=pd.RangeIndex(n))
    for col in extra_columns(table, prefix="rln", exclude=list(df.columns) + list(STRUCTURAL)):
        if col not in PRIORS:
            df[col] = table[col].to_numpy()
    return df


def _optics_groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group ids (1-based) and the unique rows of ``keys`` (N, k); NaN is a value here."""
    filled = np.where(np.isfinite(keys), np.round(keys, 9), -np.inf)
    if len(filled) == 0 or (filled == filled[0]).all():
        group, uniq = np.ones(len(filled), dtype=np.int64), filled[:1]
    else:
        uniq, inverse = np.unique(filled, axis=0, return_inverse=True)
        group = inverse.reshape(-1) + 1
    return group, np.where(np.isinf(uniq), np.nan, uniq)


_INTEGER_OPTICS = {"rlnImageSize", "rlnImageDimensionality", "rlnCtfDataAreCtfPremultiplied"}


def _optics_block(pixels: dict[str, np.ndarray], carried: dict[str, np.ndarray]
                  ) -> tuple[np.ndarray, pd.DataFrame]:
    """Optics groups (one per distinct row of pixel sizes and carried values) and the block.

    A carried label is written only when every group knows it: RELION needs whole columns,
    and a value made up for some groups would state what the data does not say.
    """
    labels = list(pixels) + list(carried)
    keys = np.column_stack([pixels[k] for k in pixels] + [carried[k] for k in carried]) \
        if labels else np.zeros((0, 0))
    group, uniq = _optics_groups(keys)
    block: dict[str, Any] = {"rlnOpticsGroup": np.arange(1, len(uniq) + 1),
                             "rlnOpticsGroupName": [f"opticsGroup{i + 1}"
                                                    for i in range(len(uniq))]}
    for j, label in enumerate(labels):
        column = uniq[:, j]
        if np.isfinite(column).all():
            block[label] = column.astype(np.int64) if label in _INTEGER_OPTICS else column
    return group, pd.DataFrame(block)


def _carried(table: pd.DataFrame, rows: pd.DataFrame | None, box_size: float | None
             ) -> dict[str, np.ndarray]:
    """Per-particle optics values to write: carried from the input, else from the
    particles' tomograms.star ``rows`` (voltage, Cs, amplitude contrast), ``box_size`` as
    rlnImageSize."""
    n = len(table)
    out = {label: table[OPTICS_PREFIX + label].to_numpy(dtype=float)
           for label in CARRIED_OPTICS if OPTICS_PREFIX + label in table.columns}
    if rows is not None:
        for key, label in MICROSCOPE.items():
            if key in rows.columns:
                from_star = rows[key].to_numpy(dtype=float)
                out[label] = np.where(np.isfinite(out[label]), out[label], from_star) \
                    if label in out else from_star
    if box_size:
        out["rlnImageSize"] = np.full(n, float(box_size))
    return {k: v for k, v in out.items() if np.isfinite(v).any()}


def _names(table: pd.DataFrame) -> pd.Series:
    return pd.Series(as_text(table["tomo_name"], missing=""), dtype=object)


def _need_pixel(pixel: np.ndarray, what: str, path: PathLike) -> None:
    if len(pixel) and not np.isfinite(pixel).all():
        raise FormatError(path, f"{what} needs the voxel size of the particles, which is "
                                "unknown: pass voxel_size (--voxel-size)")


def write_relion(path: PathLike, table: pd.DataFrame, version: str = "relion5",
                 overwrite: bool = False, tomograms: TomogramsLike = None,
                 tomo_size_xyz: Any = None, tilt_series_pixel_size: float | None = None,
                 binning: float | None = None, box_size: int | None = None,
                 tomo_name_map: PathLike | None = None,
                 class_numbers: Mapping[str, int] | None = None,
                 angle_priors: bool = False) -> None:
    """Write a canonical table as a RELION particle STAR file.

    Args:
        path: output STAR file.
        table: canonical particle table.
        version: ``relion30``, ``relion31``, ``relion4`` or ``relion5``.
        overwrite: replace an existing file.
        tomograms: RELION 5 tomograms.star (path or table): tomogram sizes (relion5),
            tilt-series pixel sizes (relion4/5) and microscope values for the optics block.
        tomo_size_xyz: tomogram size in unbinned px (``"XxYxZ"``) instead of ``tomograms``.
        tilt_series_pixel_size: Å; default voxel_size / binning.
        binning: table voxel size / file pixel size (RELION 3: written px are that much
            smaller; RELION 4/5: the tilt-series pixel size is voxel_size / binning).
        box_size: rlnImageSize (px) for the optics block (RELION 3.1/4/5), if known.
        tomo_name_map: file mapping particle tomogram names to those of ``tomograms``.
        class_numbers: ``{class name: rlnClassNumber}`` to store (default: names numbered
            1..k in order of appearance); rlnClassName carries names that are not numbers.
        angle_priors: also write rlnAngleTiltPrior / rlnAnglePsiPrior equal to the written
            tilt and psi, for orientations known up to the rotation about the particle's z
            (e.g. membrane normals), so that refinement searches near them. Priors read from
            an input are never written back: they may not match the table's orientations.

    The optics block carries what the input knew (``optics_rln...`` columns: voltage, Cs,
    amplitude contrast, rlnCtfDataAreCtfPremultiplied, rlnImageSize, dimensionality); RELION
    5 states rlnTomoSubTomosAre2DStacks / rlnImageDimensionality only when the input did
    (RELION 3.1/4 subtomograms are 3D by definition).
    """
    p = Path(path)
    if version not in VERSIONS:
        raise FormatError(p, f"unknown RELION version '{version}' (known: {sorted(VERSIONS)})")
    n = len(table)
    b = positive_or_none(binning, "binning", p)
    names = _names(table)
    tomos = as_tomograms(tomograms, p) if version in ("relion4", "relion5") else None
    rows = None
    if tomos is not None and n:
        # RELION finds a particle's tomogram by rlnTomoName: write tomograms.star's name
        rows = tomogram_rows(names, tomos, p, tomo_name_map, required=False)
        names = pd.Series(np.where(rows["tomo_name"].notna(), rows["tomo_name"], names),
                          dtype=object)
        tomograms, tomo_name_map = tomos, None
    common = _common_columns(table, class_numbers, p, angle_priors)
    carried = _carried(table, rows, box_size)
    stacks = carried.pop("rlnTomoSubTomosAre2DStacks", None)
    if version != "relion5":
        carried.setdefault("rlnImageDimensionality", np.full(n, 3.0))
    blocks: dict[str, Any] = {}
    if version in ("relion30", "relion31"):
        xyz, pixel = file_positions(table, b)
        particles = {"rlnMicrographName": (names + ".mrc").where(names != "", "tomogram.mrc"),
                     COORD[0]: xyz[:, 0], COORD[1]: xyz[:, 1], COORD[2]: xyz[:, 2], **common}
        if version == "relion30":
            if np.isfinite(pixel).all() and n:
                particles.update({"rlnMagnification": 10000.0, "rlnDetectorPixelSize": pixel,
                                  "rlnPixelSize": pixel})
            particles.update({k: v for k, v in carried.items()
                              if k in ("rlnVoltage", "rlnSphericalAberration",
                                       "rlnAmplitudeContrast") and np.isfinite(v).all()})
        else:
            _need_pixel(pixel, "RELION 3.1", p)
            group, blocks["optics"] = _optics_block({"rlnImagePixelSize": pixel}, carried)
            particles["rlnOpticsGroup"] = group
        blocks["particles" if version == "relion31" else ""] = _with_extras(particles, table, n)
    else:
        vs = table["voxel_size"].to_numpy(dtype=float)
        _need_pixel(vs, version.upper(), p)
        fallback = vs / (b or 1.0)
        size, ts = geometry(names, p, tomograms, tomo_size_xyz, tilt_series_pixel_size,
                            need_size=version == "relion5", fallback_pixel=fallback,
                            tomo_name_map=tomo_name_map)
        unbinned = table[["x", "y", "z"]].to_numpy(dtype=float) * (vs / ts)[:, None]
        group, blocks["optics"] = _optics_block(
            {"rlnTomoTiltSeriesPixelSize": ts, "rlnTomoSubtomogramBinning": vs / ts,
             "rlnImagePixelSize": vs}, carried)
        particles = {"rlnTomoName": names}
        if version == "relion5":
            dims = carried.get("rlnImageDimensionality")
            if stacks is None and dims is not None and np.isin(dims, (2.0, 3.0)).all() \
                    and len(np.unique(dims)) == 1:
                stacks = np.full(n, 1.0 if dims[0] == 2 else 0.0)
            if stacks is not None and np.isfinite(stacks).all() and len(np.unique(stacks)) == 1:
                blocks = {"general": {"rlnTomoSubTomosAre2DStacks": int(stacks[0])}, **blocks}
            centred = (unbinned - size / 2.0) * ts[:, None]
            particles.update({CENTRED[i]: centred[:, i] for i in range(3)})
        else:
            particles.update({COORD[i]: unbinned[:, i] for i in range(3)})
        particles.update(common)
        particles["rlnOpticsGroup"] = group
        blocks["particles"] = _with_extras(particles, table, n)
    write_star(p, blocks, overwrite=overwrite, version=VERSIONS[version])


# ----------------------------------------------------------------------------- describing

_COORDINATES = {
    "relion30": "rlnCoordinate px of the tomogram, corner origin",
    "relion31": "rlnCoordinate px at the optics rlnImagePixelSize, corner origin",
    "relion4": "rlnCoordinate in unbinned tilt-series px, corner origin",
}


def is_centred(structure: dict[str, list[str]]) -> bool:
    """Whether the particle block of a STAR ``structure`` holds centred Å coordinates."""
    block = _particle_block_name(structure)
    return block is not None and set(CENTRED) <= set(structure[block])


def describe_relion(path: PathLike, table: pd.DataFrame) -> dict[str, Any]:
    """The RELION facts ``cryovis info`` adds to a particle summary: how positions are
    stored, and the optics values carried (voltage kV, Cs mm, ...; None when absent)."""
    kind = table.attrs.get("format", "")
    out: dict[str, Any] = {}
    if kind == "relion5":
        if is_centred(star_structure(path)):
            out["coordinates"] = "rlnCenteredCoordinate Å from the tomogram centre"
        else:
            out["format_description"] = "RELION 5 particles STAR, Warp 2 layout"
            out["coordinates"] = ("rlnCoordinate px at the optics rlnImagePixelSize, corner "
                                  "origin (Warp 2 layout)")
    else:
        out["coordinates"] = _COORDINATES.get(kind, "")
    for label in CARRIED_OPTICS:
        column = OPTICS_PREFIX + label
        values = table[column].dropna().unique() if column in table.columns else []
        out[label] = [float(v) for v in sorted(values)] or None
    return out


def describe_centred(path: PathLike, blocks: dict[str, Any]) -> dict[str, Any]:
    """RELION 5 particles in centred Å whose voxel positions need tomograms.star."""
    structure = {k: list(v.columns) if isinstance(v, pd.DataFrame) else list(v)
                 for k, v in blocks.items()}
    particles = blocks[_particle_block_name(structure)]
    xyz = _numeric(particles, CENTRED, path)
    if not np.isfinite(xyz).all():
        raise FormatError(path, f"non-finite values in {CENTRED}")
    names = _tomo_names(particles)
    classes = next((particles[c] for c in ("rlnClassName", "rlnClassNumber")
                    if c in particles.columns), pd.Series([], dtype=object))
    optics = blocks.get("optics") if isinstance(blocks.get("optics"), pd.DataFrame) else None
    pixel = _per_particle(optics, particles, "rlnTomoTiltSeriesPixelSize", path)
    return {"kind": "particles", "format": "relion5",
            "coordinates": "rlnCenteredCoordinate Å from the tomogram centre",
            "count": len(particles), "tomograms": counts(names.astype(str)),
            "classes": counts(pd.Series(as_text(classes), dtype=object)),
            "pixel_sizes_angst": distinct_numbers(pixel) or None,
            "centred_min_xyz_angst": [round(float(v), 3) for v in xyz.min(axis=0)]
            if len(xyz) else None,
            "centred_max_xyz_angst": [round(float(v), 3) for v in xyz.max(axis=0)]
            if len(xyz) else None,
            "note": "positions are centred Å; voxel positions need the tomogram sizes"
                    " (cryovis info FILE --tomograms tomograms.star)"}


def describe_optimisation_set(path: PathLike, blocks: dict[str, Any]) -> dict[str, Any]:
    """The files a RELION optimisation set names, and which are missing next to it."""
    keys: dict[str, str] = {}
    for block in blocks.values():
        if isinstance(block, pd.DataFrame):
            if len(block):
                keys.update({str(c): str(block[c].iloc[0]) for c in block.columns})
        else:
            keys.update({str(k): str(v) for k, v in dict(block).items()})
    form = "loop" if any(isinstance(b, pd.DataFrame) for b in blocks.values()) else "key/value"
    files = {k.removeprefix("rlnTomo"): v for k, v in keys.items() if v and v != '""'}
    here = Path(path).parent
    return {"kind": "optimisation_set", "format": f"RELION optimisation set ({form} form)",
            "files": files,
            "not_found_next_to_this_file": [v for v in files.values()
                                            if not (here / v).exists()]}


def _register(name: str, description: str) -> None:
    def reader(path: Path, **options: Any) -> pd.DataFrame:
        return read_relion(path, **options)

    def writer(path: Path, table: pd.DataFrame, overwrite: bool = False,
               **options: Any) -> None:
        write_relion(path, table, version=name, overwrite=overwrite, **options)

    register(ParticleFormat(name, (".star",), reader, writer, description,
                            sniff=lambda p: flavour(p) == name, describe=describe_relion,
                            read_options=declared_options(read_relion),
                            write_options=declared_options(write_relion) - {"version"}))


_register("relion5", "RELION 5 particles STAR")
_register("relion4", "RELION 4 tomo particles STAR (unbinned tilt-series px)")
_register("relion31", "RELION 3.1 subtomogram STAR (optics block, px)")
_register("relion30", "RELION 3.0 subtomogram STAR (px, no optics)")
