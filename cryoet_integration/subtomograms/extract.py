"""Cutting box^3 subtomograms out of a (memory-mapped) tomogram.

Conventions (shared with ``cryovis extract``, RELION and Dynamo):

* A pick at ``x, y, z`` (voxels, 0-based voxel centres) is cut as a whole-voxel crop centred
  on the nearest voxel ``round(x, y, z)``; that voxel becomes voxel ``box // 2`` of the
  subtomogram on each axis (RELION's and Dynamo's box centre, even or odd box). No
  interpolation: the sub-voxel remainder ``shift = pick - round(pick)`` (voxels, in
  ``[-0.5, 0.5]``) is returned, so the particle's centre sits at ``box // 2 + shift`` in the
  subtomogram. A writer turns it into an origin shift (RELION: ``rlnOrigin*Angst = -shift *
  voxel size``, since RELION's true position is ``coordinate - origin``).
* Memory: a memory-mapped tomogram (``numpy.memmap``, what ``formats.read_volume`` returns
  for large files) is not paged through its map: each box's rows are read from the map's
  file (``preadv``, one call per z-slice) into a box-sized buffer. Touching the map would
  keep every page touched resident for as long as the map lives, up to the whole tomogram,
  and the kernel maps page-cache pages in large folios, so even a short-lived map per box
  costs a hundred MiB at a time. Boxes are cut in z order, so the file is read front to
  back. One box at a time is copied; the tomogram never is.
* Edges: a pick whose box reaches beyond the tomogram is ``"pad"``-ed (the missing voxels
  take the mean of the voxels inside) or ``"drop"``-ped. A pick whose centre voxel lies
  outside the tomogram is always dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np

from formats import file_map, read_rows

Edge = Literal["pad", "drop"]
EDGES = ("pad", "drop")


def box_starts(centres_xyz: np.ndarray, box: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer crop corners and sub-voxel remainders of picks.

    Args:
        centres_xyz: (N, 3) pick positions ``x, y, z`` in voxels (0-based voxel centres).
        box: edge of the cubic box in voxels.

    Returns:
        ``starts_zyx`` (N, 3) int64, the first voxel ``[z, y, x]`` of each box, and
        ``shifts_xyz`` (N, 3) float64, ``pick - round(pick)`` in voxels ``x, y, z``.
    """
    centres = np.asarray(centres_xyz, dtype=np.float64).reshape(-1, 3)
    nearest = np.floor(centres + 0.5)  # round half up, the same on every axis and sign
    starts = (nearest - box // 2).astype(np.int64)[:, ::-1]
    return starts, centres - nearest


def inside_mask(centres_xyz: np.ndarray, shape_zyx: tuple[int, int, int], box: int,
                edge: Edge = "pad") -> np.ndarray:
    """Which picks :func:`crop_subtomograms` keeps: (N,) bool.

    A pick is kept when its nearest voxel is inside the tomogram of shape ``shape_zyx``
    (``[z, y, x]`` voxels) and, with ``edge="drop"``, its whole box is inside.
    """
    if edge not in EDGES:
        raise ValueError(f"edge must be one of {EDGES}, got {edge!r}")
    starts, _ = box_starts(centres_xyz, box)
    dims = np.asarray(shape_zyx, dtype=np.int64)
    centre = starts + box // 2
    kept = ((centre >= 0) & (centre < dims)).all(axis=1)
    if edge == "drop":
        kept &= ((starts >= 0) & (starts + box <= dims)).all(axis=1)
    return kept


def inside_slices(start_zyx: np.ndarray, box: int, shape_zyx: tuple[int, ...]
                  ) -> tuple[slice, slice, slice]:
    """The part of a box (its own ``[z, y, x]`` indices) that lies inside a volume of shape
    ``shape_zyx`` when the box starts at voxel ``start_zyx`` of it; the rest is padding."""
    lo = np.maximum(np.asarray(start_zyx), 0) - start_zyx
    hi = np.minimum(np.asarray(start_zyx) + box, shape_zyx) - start_zyx
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def _crop(source: np.ndarray, start_zyx: np.ndarray, box: int,
          shape_zyx: tuple[int, ...]) -> np.ndarray:
    """The box at ``start_zyx`` (voxels of ``source``, of shape ``shape_zyx``), as float32,
    padded with the mean of its inside voxels."""
    inner = inside_slices(start_zyx, box, shape_zyx)
    src = tuple(slice(sl.start + int(o), sl.stop + int(o)) for sl, o in zip(inner, start_zyx))
    part = np.array(source[src], dtype=np.float32)
    if part.shape == (box, box, box):
        return part
    out = np.full((box, box, box), part.mean(dtype=np.float64), dtype=np.float32)
    out[inner] = part
    return out


def iter_subtomograms(volume: np.ndarray, centres_xyz: np.ndarray, box: int,
                      edge: Edge = "pad") -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield ``(index, subtomogram, shift_xyz)`` for each kept pick, one box at a time.

    Args:
        volume: tomogram ``[z, y, x]`` (an in-memory array or a ``numpy.memmap``).
        centres_xyz: (N, 3) picks ``x, y, z`` in voxels (0-based voxel centres).
        box: box edge in voxels (>= 1).
        edge: ``"pad"`` or ``"drop"`` picks whose box crosses the tomogram's border.

    ``index`` is the pick's row in ``centres_xyz``; picks come in order of their box's first
    z-slice (the order that reads the file once), not in input order. ``subtomogram`` is a
    new float32 ``[z, y, x]`` array of ``box^3``; ``shift_xyz`` the sub-voxel remainder
    (voxels, see the module's conventions).
    """
    if box < 1:
        raise ValueError(f"box must be >= 1 voxel, got {box}")
    shape = tuple(int(n) for n in volume.shape)
    if len(shape) != 3:
        raise ValueError(f"expected a 3D volume [z, y, x], got shape {shape}")
    starts, shifts = box_starts(centres_xyz, box)
    kept = np.flatnonzero(inside_mask(centres_xyz, shape, box, edge))
    order = kept[np.argsort(starts[kept, 0], kind="stable")]
    root = file_map(volume)
    if root is None:
        for i in order:
            yield int(i), _crop(volume, starts[i], box, shape), shifts[i]
        return
    with open(root.filename, "rb") as fh:
        for i in order:
            lo = np.clip(starts[i], 0, np.asarray(shape) - 1)
            hi = np.maximum(np.minimum(starts[i] + box, shape), lo + 1)
            rows = read_rows(root, lo[0], hi[0], lo[1], hi[1], fd=fh.fileno())
            # rows holds tomogram z lo[0].., y lo[1].., all x: crop in its own coordinates
            local = starts[i] - np.array([lo[0], lo[1], 0])
            yield int(i), _crop(rows, local, box, rows.shape), shifts[i]


def crop_subtomograms(volume: np.ndarray, centres_xyz: np.ndarray, box: int,
                      edge: Edge = "pad") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut a box^3 subtomogram around each pick (whole-voxel crops, no interpolation).

    Args:
        volume: tomogram ``[z, y, x]``, in memory or memory-mapped (read one box at a time,
            never copied whole).
        centres_xyz: (N, 3) picks ``x, y, z`` in voxels of ``volume`` (0-based voxel centres).
        box: box edge in voxels; the pick's nearest voxel is voxel ``box // 2`` of its box.
        edge: ``"pad"`` boxes crossing the border (missing voxels = mean of the inside ones)
            or ``"drop"`` them. Picks whose nearest voxel is outside are always dropped.

    Returns:
        ``stack`` float32 ``[n_kept, z, y, x]`` (box^3 each), in input order of the kept
        picks; ``kept`` bool ``(N,)`` over the input picks; ``shifts_xyz`` float64
        ``(n_kept, 3)``: sub-voxel remainders ``pick - round(pick)`` in voxels (the particle
        centre is at ``box // 2 + shift`` of its box).

    The stack holds all kept boxes in memory; for many picks iterate with
    :func:`iter_subtomograms` instead.
    """
    shape = tuple(int(n) for n in np.shape(volume))
    kept = inside_mask(centres_xyz, shape, box, edge) if len(shape) == 3 else None
    if kept is None:
        raise ValueError(f"expected a 3D volume [z, y, x], got shape {shape}")
    row = np.cumsum(kept) - 1  # input index -> row of the stack
    stack = np.empty((int(kept.sum()), box, box, box), dtype=np.float32)
    shifts = np.empty((len(stack), 3), dtype=np.float64)
    for i, sub, shift in iter_subtomograms(volume, centres_xyz, box, edge):
        stack[row[i]] = sub
        shifts[row[i]] = shift
    return stack, kept, shifts


def check_finite_by_slabs(volume, slab_bytes: int = 32 << 20) -> None:
    """``formats.check_finite`` for a tomogram (``formats.Volume``); a memory-mapped one is
    read slab by slab (about ``slab_bytes`` at a time) from its file, so the scan leaves no
    pages of it in this process (see the module's note on memory).

    Raises ``formats.FormatError`` naming the file and the z-slices with NaN/Inf voxels.
    """
    import dataclasses

    from formats import FormatError, check_finite

    root = file_map(volume.data)
    if root is None:
        check_finite(volume)
        return
    nz, ny, nx = root.shape
    step = max(1, slab_bytes // max(ny * nx * root.dtype.itemsize, 1))
    with open(root.filename, "rb") as fh:
        for z in range(0, nz, step):
            n = min(step, nz - z)
            slab = read_rows(root, z, z + n, fd=fh.fileno())
            try:
                check_finite(dataclasses.replace(volume, data=slab, path=None))
            except FormatError as exc:
                raise FormatError(volume.path or "<volume>",
                                  f"z-slices {z}..{z + n - 1}: {exc.problem}") from None


def extract_relion_set(volume: np.ndarray, voxel_size: float, table, box: int, out_dir,
                       tomogram_name: str, tilt_range_deg: tuple[float, float] | None = None,
                       microscope: dict[str, float] | None = None, invert: bool = False,
                       overwrite: bool = False) -> dict:
    """Cut the picks of ``table`` and write them as a RELION 3.1 subtomogram set, in memory
    too (for a caller that averages them at once; ``cryovis extract`` streams instead).

    Args:
        volume: tomogram ``[z, y, x]`` at ``voxel_size`` Å.
        table: canonical particle table (``x, y, z`` voxels of ``volume``, orientations,
            ``class``); boxes crossing the border are padded (see the module).
        box: even box edge (voxels; RELION's Fourier code wants even boxes).
        out_dir: folder for ``particles.star``, ``subtomo_NNNNNN.mrc`` and, with a tilt
            range (degrees, about y), ``wedge.mrc`` (the missing-wedge weight).
        tomogram_name: rlnMicrographName.
        microscope: rlnVoltage (kV), rlnSphericalAberration (mm), rlnAmplitudeContrast.
        invert: negate the boxes (dense matter bright, as references are).

    Returns:
        ``stack`` (n, box, box, box) float32 as written, ``kept`` over the table's rows,
        ``shifts_xyz`` (n, 3) voxels, ``wedge`` (centred box^3 weight or None), ``star``.
    """
    from pathlib import Path

    from formats import Volume, orientations, positions_voxels, write_volume

    from .average import wedge_weight
    from .tables import (
        DEFAULT_MICROSCOPE,
        class_numbers,
        particle_file_name,
        write_relion_subtomograms,
    )

    if box % 2:
        raise ValueError(f"RELION needs an even box, got {box}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    centres = positions_voxels(table)
    stack, kept, shifts = crop_subtomograms(volume, centres, box)
    if invert:
        np.negative(stack, out=stack)
    names = [particle_file_name(i, "relion3") for i in range(len(stack))]
    for name, sub in zip(names, stack):
        write_volume(out / name, Volume(sub, voxel_size=voxel_size), overwrite=overwrite)
    wedge = None
    if tilt_range_deg is not None:
        wedge = wedge_weight(box, tilt_range_deg)
        write_volume(out / "wedge.mrc", Volume(wedge, voxel_size=voxel_size),
                     overwrite=overwrite)
    star = out / "particles.star"
    keep = np.flatnonzero(kept)
    write_relion_subtomograms(
        star, names, np.rint(centres[keep] - shifts), shifts, orientations(table)[keep],
        class_numbers(table["class"].iloc[keep]), tomogram_name, voxel_size, box,
        microscope or DEFAULT_MICROSCOPE,
        ctf_images=["wedge.mrc"] * len(names) if wedge is not None else None,
        overwrite=overwrite)
    return {"stack": stack, "kept": kept, "shifts_xyz": shifts, "wedge": wedge, "star": star}
