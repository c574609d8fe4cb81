"""Particle tables (``formats``' canonical table) <-> ChimeraX marker sets on a tomogram.

A marker is placed at the particle's position on the tomogram's grid: the table's voxel
coordinates are rescaled to the tomogram's voxel size (``x_angst / voxel size``) and mapped
through the tomogram's origin and scene position, so picks line up with the density.
Scores and classes become the marker attributes ``cryovis_score`` and ``cryovis_class``;
orientations (rotation matrices reference -> tomogram) are kept per marker and, when any is
not the identity, drawn as a stick along each particle's z axis.
"""

from __future__ import annotations

import numpy as np
from chimerax.core.errors import UserError

MATRIX = [f"r{i}{j}" for i in range(3) for j in range(3)]


def register_attributes(session) -> None:
    """Make the marker attributes known to ChimeraX (usable in commands, saved in sessions)."""
    from chimerax.atomic import Atom

    Atom.register_attr(session, "cryovis_score", "cryovis", attr_type=float)
    Atom.register_attr(session, "cryovis_class", "cryovis", attr_type=str)


def class_colors(classes: list[str]) -> dict[str, tuple[int, int, int, int]]:
    """One Okabe-Ito colour (RGBA 0-255) per distinct class, in order of appearance."""
    from cryoet_integration.rendering.colors import default_colors

    names = list(dict.fromkeys(classes))
    return {name: tuple(int(round(255 * c)) for c in rgb) + (255,)
            for name, rgb in zip(names, default_colors(len(names)))}


def table_voxels_on(table, tomogram) -> np.ndarray:
    """(N, 3) positions of the table in voxel indices of ``tomogram`` (x, y, z)."""
    from formats import positions_voxels

    from .volumes import voxel_size

    xyz = positions_voxels(table)
    if tomogram is None:
        return xyz
    vs_tomo = voxel_size(tomogram)
    vs = table["voxel_size"].to_numpy(dtype=float)
    known = np.isfinite(vs) & (vs > 0)
    out = xyz.copy()
    out[known] = table[["x_angst", "y_angst", "z_angst"]].to_numpy(dtype=float)[known] / vs_tomo
    return out


def create_marker_set(session, table, name: str, tomogram=None, radius: float | None = None):
    """A new marker set with one marker per particle of ``table``.

    Args:
        table: canonical particle table (``formats``).
        name: marker set name.
        tomogram: the ChimeraX volume the positions refer to; ``None`` places markers at
            the table's Å positions (voxels when the voxel size is unknown) in the scene.
        radius: marker radius in Å (default 2 voxels of the tomogram, or 1 Å / 1 voxel).
    """
    from chimerax.markers import MarkerSet

    from .volumes import voxel_size

    register_attributes(session)
    ijk = table_voxels_on(table, tomogram)
    if tomogram is not None:
        scene = (tomogram.scene_position * tomogram.data.ijk_to_xyz_transform).transform_points(
            ijk)
        r = radius or 2.0 * voxel_size(tomogram)
    else:
        angst = table[["x_angst", "y_angst", "z_angst"]].to_numpy(dtype=float)
        scene = np.where(np.isfinite(angst), angst, ijk)
        r = radius or 1.0
    classes = [str(c) if isinstance(c, str) and c else "particle" for c in table["class"]]
    colors = class_colors(classes)
    scores = table["score"].to_numpy(dtype=float)
    matrices = table[MATRIX].to_numpy(dtype=float).reshape(-1, 3, 3)
    ms = MarkerSet(session, name)
    for k in range(len(table)):
        m = ms.create_marker(scene[k], colors[classes[k]], r)
        m.cryovis_class = classes[k]
        m.cryovis_score = float(scores[k])
    ms.cryovis_tomogram = tomogram
    ms.cryovis_orientations = {m: matrices[k] for k, m in enumerate(ms.atoms)}
    ms.cryovis_tomo_names = sorted({str(t) for t in table["tomo_name"] if str(t)})
    session.models.add([ms])
    if np.abs(matrices - np.eye(3)).max(initial=0.0) > 1e-6:
        _orientation_sticks(session, ms, scene, matrices, [colors[c] for c in classes], r)
    return ms


def _orientation_sticks(session, ms, centres, matrices, colors, radius: float) -> None:
    """A child surface of ``ms``: a stick from each marker along its particle's z axis."""
    from chimerax.core.models import Surface
    from chimerax.geometry import Place, Places
    from chimerax.surface import cylinder_geometry

    length = 4.0 * radius
    va, na, ta = cylinder_geometry(radius=0.25 * radius, height=length, nz=2, nc=12)
    va[:, 2] += length / 2  # from the centre outwards along +z
    sticks = Surface("orientations (particle z axis)", session)
    sticks.set_geometry(va, na, ta)
    places = [Place(matrix=np.column_stack([mat, c])) for mat, c in zip(matrices, centres)]
    sticks.positions = Places(places)
    sticks.colors = np.array(colors, np.uint8)
    ms.add([sticks])


def table_from_markers(ms, tomogram):
    """The canonical particle table of a marker set, positions in voxels of ``tomogram``.

    Raises:
        UserError: no tomogram is known for the markers.
    """
    from formats import make_table

    from .volumes import voxel_size

    if tomogram is None:
        raise UserError(f"cryovis save: #{ms.id_string} ({ms.name}) has no tomogram; give "
                        "one with 'tomogram #N'")
    markers = ms.atoms
    if len(markers) == 0:
        raise UserError(f"cryovis save: #{ms.id_string} ({ms.name}) has no markers")
    to_ijk = (tomogram.scene_position * tomogram.data.ijk_to_xyz_transform).inverse()
    ijk = to_ijk.transform_points(markers.scene_coords)
    stored = getattr(ms, "cryovis_orientations", {})
    matrices = np.array([stored.get(m, np.eye(3)) for m in markers])
    classes = [getattr(m, "cryovis_class", None) or None for m in markers]
    scores = [getattr(m, "cryovis_score", np.nan) for m in markers]
    names = getattr(ms, "cryovis_tomo_names", [])
    tomo_name = names[0] if len(names) == 1 else tomogram.name.rsplit(".", 1)[0]
    return make_table(ijk, voxel_size=voxel_size(tomogram), matrices=matrices,
                      tomo_name=tomo_name, classes=classes,
                      scores=np.array(scores, dtype=float))
