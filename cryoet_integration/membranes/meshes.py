"""Triangle meshes of fitted membranes and their measurements (trimesh).

Mesh vertices are ``x, y, z`` in Å from the centre of voxel (0, 0, 0) (voxel index times the
voxel size); areas are Å^2, volumes Å^3, curvatures 1/Å.
"""

from __future__ import annotations

import numpy as np

from .surfaces import InstanceFit


def fit_mesh(fit: InstanceFit, voxel_size: float, near: float | None = None):
    """Marching-cubes mesh (a ``trimesh.Trimesh``, Å) of the zero level set of ``fit``.

    Closed models are padded with "outside" so their mesh closes; a sheet is meshed over its
    footprint only. Normals point outwards (closed) or along the sheet's plane normal. Mesh
    pieces farther than ``near`` voxels (default 3 voxels) from every fitted point are
    dropped. Returns None when the surface has no triangles.
    """
    import trimesh
    from scipy.spatial import cKDTree
    from skimage.measure import marching_cubes

    field = fit.field
    mask = None
    if fit.model == "sheet":
        mask = fit.domain
    else:
        field = np.pad(field, 1, constant_values=max(1.0, float(field.max())))
    if (field < 0).sum() == 0 or (field > 0).sum() == 0:
        return None
    try:
        verts, faces, _, _ = marching_cubes(field, 0.0, mask=mask)
    except (ValueError, RuntimeError):
        return None
    if len(faces) == 0:
        return None
    shift = np.asarray(fit.offset, dtype=float) - (0 if mask is not None else 1)
    xyz = (verts + shift)[:, ::-1]
    mesh = trimesh.Trimesh(xyz * voxel_size, faces, process=True)
    tree = cKDTree(fit.points)
    limit = 3.0 if near is None else float(near)
    parts = [p for p in mesh.split(only_watertight=False)
             if tree.query(p.vertices / voxel_size)[0].min() <= limit]
    if not parts:
        return None
    mesh = trimesh.util.concatenate(parts) if len(parts) > 1 else parts[0]
    if fit.model == "sheet":
        flip = np.mean(mesh.vertex_normals @ _sheet_normal(fit)) < 0
    else:  # marching cubes winds by the field's sign: make normals outward
        flip = mesh.volume < 0
    if flip:  # a new mesh rather than invert(), whose cached normals can stay unflipped
        mesh = trimesh.Trimesh(mesh.vertices, mesh.faces[:, ::-1], process=False)
    return mesh


def _sheet_normal(fit: InstanceFit) -> np.ndarray:
    c = fit.points.mean(0)
    _, evecs = np.linalg.eigh(np.cov((fit.points - c).T))
    n = evecs[:, 0]
    return n if n[np.argmax(np.abs(n))] > 0 else -n


def mean_curvature(mesh) -> np.ndarray:
    """Signed mean curvature (1/Å) at each vertex: the cotangent Laplacian of the vertex
    positions over twice the barycentric vertex area (Meyer et al. 2003), positive where the
    surface bends away from its normal (a sphere of radius R with outward normals: 1/R).
    Vertices on an open boundary get NaN."""
    v = np.asarray(mesh.vertices, dtype=float)
    f = np.asarray(mesh.faces)
    lap = np.zeros_like(v)
    area = np.zeros(len(v))
    tri_area = mesh.area_faces
    for k in range(3):
        i, j, m = f[:, k], f[:, (k + 1) % 3], f[:, (k + 2) % 3]
        e1, e2 = v[j] - v[i], v[m] - v[i]
        cot = (e1 * e2).sum(1) / np.maximum(np.linalg.norm(np.cross(e1, e2), axis=1), 1e-12)
        # the angle at i weighs the opposite edge j-m
        w = 0.5 * cot[:, None] * (v[m] - v[j])
        np.add.at(lap, j, w)
        np.add.at(lap, m, -w)
        np.add.at(area, i, tri_area / 3)
    h = -(lap * mesh.vertex_normals).sum(1) / np.maximum(2 * area, 1e-12)
    boundary = np.zeros(len(v), dtype=bool)
    edges = mesh.edges_sorted
    uniq, counts = np.unique(edges, axis=0, return_counts=True)
    boundary[uniq[counts == 1].ravel()] = True
    h[boundary] = np.nan
    return h


def mesh_statistics(mesh, closed: bool) -> dict:
    """Area (Å^2), enclosed volume (Å^3; None for open or leaky meshes), mean curvature
    (1/Å, signed, averaged over vertices: 1/R for a sphere, ~0 for a flat sheet) and the
    largest absolute mean curvature (the 99th percentile over vertices, since single
    marching-cubes vertices are noisy) of a mesh."""
    h = mean_curvature(mesh)
    h = h[np.isfinite(h)]
    watertight = bool(mesh.is_watertight)
    return {"area_angst2": float(mesh.area),
            "volume_angst3": float(abs(mesh.volume)) if closed and watertight else None,
            "mean_curvature_per_angst": float(np.mean(h)) if len(h) else None,
            "max_curvature_per_angst": float(np.percentile(np.abs(h), 99)) if len(h) else None,
            "watertight": watertight, "vertices": int(len(mesh.vertices)),
            "faces": int(len(mesh.faces))}


def sample_surface(mesh, spacing_angst: float, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Points (Å, x, y, z) spread over a mesh about ``spacing_angst`` apart, with the unit
    normals of their faces."""
    import trimesh

    n = max(1, int(round(mesh.area / spacing_angst ** 2)))
    points, faces = trimesh.sample.sample_surface_even(mesh, n, seed=seed)
    return np.asarray(points), np.asarray(mesh.face_normals[faces])
