"""The whole membrane step: mask -> instances -> fitted surfaces -> refined mask, meshes,
uncertainty, measurements, surface points; and writing it all to a folder.

Arrays are ``[z, y, x]``; positions voxels ``x, y, z`` unless a name says Å; the voxel size
is Å per voxel.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .instances import membrane_instances, thickness_voxels
from .meshes import fit_mesh, mesh_statistics, sample_surface
from .surfaces import (
    InstanceFit,
    band_thickness,
    fit_instance,
    mesh_distance,
    mid_surface_distance,
    shell,
)

MESH_FORMATS = ("obj", "ply", "stl")
# the table's leading columns (every model's residual, the tilt-range figure and the mesh
# file follow when present)
TABLE_COLUMNS = ["id", "model", "closed", "residual_voxels", "observed_voxels",
                 "fitted_voxels", "centroid_x_voxels", "centroid_y_voxels", "centroid_z_voxels",
                 "centroid_x_angst", "centroid_y_angst", "centroid_z_angst",
                 "thickness_voxels", "thickness_angst", "area_angst2", "volume_angst3",
                 "mean_curvature_per_angst", "max_curvature_per_angst", "watertight",
                 "uncertainty_mean_voxels", "uncertainty_max_voxels"]


class MembraneInputError(ValueError):
    """The input cannot be turned into a membrane mask (the message says why)."""


def membrane_mask(data: np.ndarray, threshold: float | None = None
                  ) -> tuple[np.ndarray, float | None]:
    """A binary membrane mask ``[z, y, x]`` from a mask or a probability map.

    Integer and boolean maps are masks (non-zero = membrane) unless ``threshold`` is given.
    Float maps are thresholded (``> threshold``, default 0.5), except that a float map
    holding only 0 and 1 is a mask. A threshold that leaves every voxel on one side of it
    while the map is not constant is an error: it separates nothing.

    Returns ``(mask, threshold used or None)``.
    """
    arr = np.asarray(data)
    if threshold is None and not np.issubdtype(arr.dtype, np.floating):
        return arr != 0, None
    lo, hi = float(arr.min()), float(arr.max())
    if threshold is None:
        if lo >= 0 and hi <= 1 and np.isin(np.unique(arr[::7, ::7, ::7]), (0.0, 1.0)).all() \
                and np.isin(arr, (0.0, 1.0)).all():
            return arr != 0, None
        threshold = 0.5
    mask = arr > threshold
    if lo < hi and (not mask.any() or mask.all()):
        raise MembraneInputError(
            f"threshold {threshold:g} separates nothing: the map spans {lo:.4g}..{hi:.4g} "
            f"and every voxel is {'below' if not mask.any() else 'above'} it (pass "
            "--threshold within that range)")
    return mask, float(threshold)


@dataclasses.dataclass
class MembraneResult:
    """The fitted membranes of one tomogram.

    Attributes:
        mask: uint8 refined membrane mask ``[z, y, x]`` (fitted surfaces, uniform thickness).
        instances: int32 labels of the refined membranes ``[z, y, x]`` (0 background).
        observed_instances: int32 labels of the input's instances ``[z, y, x]``.
        uncertainty: float32 ``[z, y, x]``: posterior standard deviation of the surface
            position (voxels) on the refined membrane, 0 elsewhere.
        meshes: ``{id: trimesh.Trimesh}`` in Å.
        table: one dict per membrane (see :func:`fit_membranes`).
        surface_points: ``(xyz_voxels (n, 3), normals (n, 3), ids (n,))`` sampled on the
            meshes.
        info: counts and parameters.
    """

    mask: np.ndarray
    instances: np.ndarray
    observed_instances: np.ndarray
    uncertainty: np.ndarray
    meshes: dict[int, Any]
    table: list[dict]
    surface_points: tuple[np.ndarray, np.ndarray, np.ndarray]
    info: dict


def fit_membranes(mask: np.ndarray, voxel_size: float, *, thickness: float | None = None,
                  tilt_range_deg: tuple[float, float] | None = None, alpha: float = 1.2,
                  min_voxels: int | None = None, merge_distance: float = 2.0,
                  point_spacing_angst: float | None = None, keep_observed: bool = False,
                  progress: Callable[[int, int], None] | None = None) -> MembraneResult:
    """Instances, fitted surfaces and measurements of a membrane mask.

    Args:
        mask: binary membrane mask ``[z, y, x]``.
        voxel_size: Å per voxel (1 when unknown: Å figures are then voxels).
        thickness: refined membrane thickness (voxels); default: measured on ``mask``, as
            four times the mean distance of its voxels to the fitted mid-surfaces' meshes
            (:func:`surfaces.band_thickness`; a first estimate from the mask's area,
            :func:`instances.thickness_voxels`, sets the instance filters).
        tilt_range_deg: the tilt series' range (degrees, about y): each membrane then
            reports the fraction of its fitted area no tilt shows edge-on, i.e. what the fit
            completed across the missing wedge.
        alpha: exterior anchor factor of the GP implicit surfaces (paper: 1.2).
        min_voxels, merge_distance: see :func:`instances.membrane_instances`.
        point_spacing_angst: spacing of the surface points (default 4 voxels).
        keep_observed: the refined mask also keeps the input voxels of the instances (the
            fitted surfaces then only add what the input misses; the thickness is no longer
            uniform). Spurious regions the instance filters dropped stay dropped.
        progress: called with (done, total) instances.

    Returns:
        A :class:`MembraneResult`; each table row holds ``id``, ``model``, ``closed``,
        ``residual_voxels`` (held-out RMS distance to the chosen surface) and every model's
        residual, ``observed_voxels``, ``fitted_voxels``, ``centroid_{x,y,z}_voxels`` and
        ``_angst``, ``thickness_voxels``/``_angst``, ``area_angst2``, ``volume_angst3``,
        ``mean_curvature_per_angst``, ``max_curvature_per_angst``, ``uncertainty_mean_voxels``,
        ``uncertainty_max_voxels``, and with a tilt range ``wedge_hidden_area_fraction``.
    """
    from scipy import ndimage
    from trimesh.remesh import subdivide_to_size

    from ..evaluate.segmentation import EDGE_ON_TOLERANCE_DEG, edge_on_gap_deg

    m = np.asarray(mask, dtype=bool)
    vs = float(voxel_size) if voxel_size and voxel_size > 0 else 1.0
    t0 = thickness_voxels(m) if thickness is None else float(thickness)
    labels, info = membrane_instances(m, thickness=t0, min_voxels=min_voxels,
                                      merge_distance=merge_distance)
    objects = ndimage.find_objects(labels)
    total = len(objects)
    fits: list[tuple[int, np.ndarray, InstanceFit]] = []
    for k, sl in enumerate(objects, start=1):
        if progress is not None:
            progress(k - 1, total)
        coords = (np.argwhere(labels[sl] == k) + [s.start for s in sl])[:, ::-1].astype(float)
        fits.append((k, coords, fit_instance(coords, m.shape, t0, alpha=alpha)))
    meshes: dict[int, Any] = {}
    dists: dict[int, np.ndarray] = {}
    reach = 2.0 + (t0 if thickness is None else float(thickness))
    for k, _, fit in fits:
        mesh = fit_mesh(fit, vs, near=max(3.0, t0))
        if mesh is not None:
            meshes[k] = mesh
        verts = np.zeros((0, 3))
        if mesh is not None:
            # vertices a third of a voxel apart: the nearest vertex is then the nearest
            # surface point to within ~0.05 voxel on average
            verts, _ = subdivide_to_size(mesh.vertices / vs, mesh.faces, 0.35)
        dists[k] = mesh_distance(fit, verts, reach)
    if thickness is None and fits:
        # the input's thickness across the fitted mid-surfaces: its voxels' distances to
        # them are uniform on [0, t/2]
        t = band_thickness(np.concatenate(
            [mid_surface_distance(dists[k], f, c) for k, c, f in fits]))
    else:
        t = t0
    refined = np.zeros(m.shape, dtype=bool)
    inst = np.zeros(m.shape, dtype=np.int32)
    unc = np.zeros(m.shape, dtype=np.float32)
    rows: list[dict] = []
    spacing = point_spacing_angst or 4 * vs
    samples: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for k, coords, fit in fits:
        band = shell(dists[k], t)
        box = tuple(slice(o, o + n) for o, n in zip(fit.offset, band.shape))
        free = band & (inst[box] == 0)
        inst[box][free] = k
        unc[box][free] = fit.std[free]
        refined[box] |= band
        row: dict[str, Any] = {"id": k, "model": fit.model, "closed": bool(fit.closed),
                               "residual_voxels": round(fit.residual, 4),
                               **{f"residual_{name}_voxels": round(v, 4)
                                  for name, v in fit.residuals.items()},
                               "observed_voxels": int(len(coords)),
                               "fitted_voxels": int(band.sum())}
        cz, cy, cx = ((np.argwhere(band) + fit.offset).mean(0) if band.any()
                      else coords[:, ::-1].mean(0))
        row.update({"centroid_x_voxels": float(cx), "centroid_y_voxels": float(cy),
                    "centroid_z_voxels": float(cz), "centroid_x_angst": float(cx * vs),
                    "centroid_y_angst": float(cy * vs), "centroid_z_angst": float(cz * vs),
                    })
        mesh = meshes.get(k)
        stats = {"area_angst2": None, "volume_angst3": None, "mean_curvature_per_angst": None,
                 "max_curvature_per_angst": None, "watertight": False}
        if mesh is not None:
            stats = mesh_statistics(mesh, fit.closed and fit.model != "sheet")
            pts, normals = sample_surface(mesh, spacing)
            samples.append((pts / vs, normals, np.full(len(pts), k)))
            if tilt_range_deg is not None:
                gap = edge_on_gap_deg(mesh.face_normals[:, ::-1], tilt_range_deg)
                hidden = gap > EDGE_ON_TOLERANCE_DEG
                row["wedge_hidden_area_fraction"] = round(
                    float(mesh.area_faces[hidden].sum() / max(mesh.area, 1e-12)), 4)
        row.update(stats)
        row.update({"thickness_voxels": round(t, 3), "thickness_angst": round(t * vs, 2)})
        u = fit.std[band]
        row["uncertainty_mean_voxels"] = float(u.mean()) if u.size else None
        row["uncertainty_max_voxels"] = float(u.max()) if u.size else None
        rows.append(row)
    if progress is not None:
        progress(total, total)
    if keep_observed:
        kept = (labels > 0) & ~refined
        inst[kept] = labels[kept]
        refined |= labels > 0
    if samples:
        surface = tuple(np.concatenate(parts) for parts in zip(*samples))
    else:
        surface = (np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0, dtype=int))
    info["thickness_voxels"] = t
    info.update({"voxel_size_angst": vs, "alpha": alpha,
                 "closed": int(sum(r["closed"] and r["model"] != "sheet" for r in rows)),
                 "sheets": int(sum(r["model"] == "sheet" for r in rows)),
                 "input_voxels": int(m.sum()), "refined_voxels": int(refined.sum()),
                 "keep_observed": bool(keep_observed),
                 "tilt_range_deg": list(tilt_range_deg) if tilt_range_deg else None})
    return MembraneResult(refined.astype(np.uint8), inst, labels, unc, meshes, rows,
                          surface, info)


def output_paths(out_dir: str | Path, stem: str, mesh_format: str = "obj") -> dict[str, Path]:
    """The fixed outputs of :func:`write_result` in ``out_dir`` (meshes go to
    ``<stem>_meshes/<stem>_membrane_NNN.<mesh_format>``)."""
    d = Path(out_dir)
    return {"mask": d / f"{stem}_refined.mrc", "instances": d / f"{stem}_instances.mrc",
            "uncertainty": d / f"{stem}_uncertainty.mrc", "csv": d / f"{stem}_membranes.csv",
            "json": d / f"{stem}_membranes.json",
            "surface_points": d / f"{stem}_surface_points.csv",
            "meshes": d / f"{stem}_meshes"}


def write_result(result: MembraneResult, out_dir: str | Path, stem: str, *,
                 voxel_size: float, origin: Any = None, mesh_format: str = "obj",
                 overwrite: bool = False) -> dict[str, Any]:
    """Write a :class:`MembraneResult` (each file atomically); returns the paths written."""
    import pandas as pd

    from formats import Volume, atomic_path, make_table, write_particles, write_volume

    from ..json_output import write_json
    from .orientation import normal_matrices

    paths = output_paths(out_dir, stem, mesh_format)
    Path(out_dir).mkdir(parents=True, exist_ok=True)

    def vol(path: Path, data: np.ndarray) -> None:
        kwargs = {"origin": origin} if origin is not None else {}
        write_volume(path, Volume(data, voxel_size=voxel_size, **kwargs), overwrite=overwrite)

    vol(paths["mask"], result.mask.astype(np.int8))
    vol(paths["instances"], result.instances.astype(
        np.int16 if result.instances.max() < 32767 else np.int32))
    vol(paths["uncertainty"], result.uncertainty.astype(np.float32))
    mesh_files = {}
    if result.meshes:
        paths["meshes"].mkdir(exist_ok=True)
    for k, mesh in result.meshes.items():
        target = paths["meshes"] / f"{stem}_membrane_{k:03d}.{mesh_format}"
        with atomic_path(target, overwrite) as tmp:
            mesh.export(str(tmp), file_type=mesh_format)
        mesh_files[k] = str(target)
    rows = [dict(r, mesh=mesh_files.get(r["id"])) for r in result.table]
    with atomic_path(paths["csv"], overwrite) as tmp:
        frame = pd.DataFrame(rows)
        extra = [c for c in frame.columns if c not in TABLE_COLUMNS]
        frame.reindex(columns=TABLE_COLUMNS + extra).to_csv(tmp, index=False)
    write_json(paths["json"], {"membranes": rows, "info": result.info}, overwrite=overwrite)
    xyz, normals, ids = result.surface_points
    table = make_table(xyz, voxel_size, normal_matrices(normals) if len(xyz) else None,
                       extra=pd.DataFrame({"membrane_id": ids.astype(np.int64),
                                           "nx": normals[:, 0], "ny": normals[:, 1],
                                           "nz": normals[:, 2]}))
    write_particles(paths["surface_points"], table, format="csv", overwrite=overwrite)
    return {k: str(v) for k, v in paths.items() if k != "meshes"} | {"meshes": mesh_files}
