"""Strokes given as coordinates: points of a particle/coordinate file painted as small balls.

A scientist may click points (or trace strokes as dense points) in a picker instead of
painting a label map. Each row of a particle file (any format ``formats.read_particles``
reads: CSV with ``x, y, z`` and ``class`` columns, STAR, ...) becomes a ball of ``radius``
voxels on the tomogram's grid, labelled with its class: the class column's whole numbers as
stroke values, or class names numbered 1..K in ``names`` order (default: sorted).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from formats import FormatError, positions_voxels, read_particles

from ..errors import CryovisError


def _class_values(column: Sequence, names: Sequence[str] | None, path: Path
                  ) -> tuple[np.ndarray, list[str]]:
    text = [str(c).strip() for c in column]
    if any(t in ("", "None", "nan") for t in text):
        raise CryovisError(f"{path}: every point needs a class (a 'class' column)")
    if all(t.lstrip("-").isdigit() for t in text):
        values = np.array([int(t) for t in text])
        if values.min() < 1:
            raise CryovisError(f"{path}: class values must be 1..K, got {values.min()}")
        uniq = sorted(set(values.tolist()))
        if names and len(names) != len(uniq):
            raise CryovisError(f"--classes: {len(names)} names for the {len(uniq)} classes of "
                               f"{path} ({', '.join(map(str, uniq))})")
        return values, list(names) if names else [f"class{v}" for v in uniq]
    order = list(names) if names else sorted(set(text))
    unknown = sorted(set(text) - set(order))
    if unknown:
        raise CryovisError(f"{path}: classes {', '.join(unknown)} not in --classes "
                           f"({', '.join(order)})")
    return np.array([order.index(t) + 1 for t in text]), order


def rasterise_points(path: str | Path, shape_zyx: tuple[int, int, int], voxel_size: float,
                     radius: float = 2.0, names: Sequence[str] | None = None
                     ) -> tuple[np.ndarray, list[str]]:
    """A stroke label map ``[z, y, x]`` (int16, 0 = unlabelled) from the points of ``path``.

    Args:
        path: particle/coordinate file with positions ``x, y, z`` and a ``class`` column.
        shape_zyx: the tomogram's grid.
        voxel_size: the tomogram's Å per voxel; points given at another voxel size are
            scaled to it (0: taken as they are).
        radius: ball radius in voxels of the tomogram.
        names: class names in value order (1..K), or for named classes their order.

    Returns the map and the names of its classes 1..K. Points outside the grid are an error.
    """
    path = Path(path)
    try:
        table = read_particles(path)
    except (FormatError, OSError, ValueError) as exc:
        raise CryovisError(f"{path}: not a readable coordinate file ({exc})") from None
    if table.empty:
        raise CryovisError(f"{path}: no strokes (the coordinate file has no points)")
    xyz = positions_voxels(table).astype(np.float64)
    file_vs = table["voxel_size"].to_numpy(np.float64)
    if voxel_size > 0:
        scale = np.where(file_vs > 0, file_vs / voxel_size, 1.0)
        xyz = xyz * scale[:, None]
    limits = np.array(shape_zyx[::-1]) - 0.5
    outside = np.any((xyz < -0.5) | (xyz > limits), axis=1)
    if outside.any():
        i = int(np.argmax(outside))
        raise CryovisError(f"{path}: point {i + 1} at x, y, z = "
                           f"{', '.join(f'{v:.1f}' for v in xyz[i])} voxels lies outside the "
                           f"tomogram ({' x '.join(map(str, shape_zyx[::-1]))})")
    values, class_names = _class_values(table["class"].tolist(), names, path)
    strokes = np.zeros(shape_zyx, np.int16)
    r = max(0.0, float(radius))
    n = int(np.ceil(r))
    offsets = np.stack(np.meshgrid(*[np.arange(-n, n + 1)] * 3, indexing="ij"), -1)
    offsets = offsets[(offsets ** 2).sum(-1) <= r * r + 1e-9]  # (m, 3) as z, y, x
    centres = np.rint(xyz[:, ::-1]).astype(np.int64)
    for centre, value in zip(centres, values):
        pts = centre + offsets
        keep = np.all((pts >= 0) & (pts < np.array(shape_zyx)), axis=1)
        pts = pts[keep]
        strokes[pts[:, 0], pts[:, 1], pts[:, 2]] = value
    return strokes, class_names
