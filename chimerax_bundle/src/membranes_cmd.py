"""``cryovis membranes``: membrane instances and fitted surfaces of a segmentation.

The engine's ``cryovis membranes MASK --out DIR --json SUMMARY`` splits the membrane mask
(or probability map) into instances, fits each with an ellipsoid, a Gaussian-process implicit
surface or an open sheet and meshes it. Back in ChimeraX the instance label map becomes a
volume on the segmentation's grid and every mesh a surface model placed on it (the engine's
vertices are Å from the centre of voxel (0, 0, 0), so they move by the grid's origin), one
colour per membrane; the per-membrane table goes to the log.
"""

from __future__ import annotations

from chimerax.core.commands import (
    BoolArg,
    CmdDesc,
    Float2Arg,
    FloatArg,
    ModelArg,
    PositiveIntArg,
)

from . import engine, volumes
from .markers import class_colors


def cryovis_membranes(session, segmentation, threshold=None, tilt_range=None, threads=None,
                      wait=None):
    """Fit the membranes of ``segmentation`` (a mask or probability map volume): membrane
    where the map exceeds ``threshold`` (default: the engine's, 0.5 for probabilities);
    ``tilt_range`` (min, max degrees) reports what the missing wedge hides."""
    seg = volumes.require_volume(segmentation, "cryovis membranes")
    volumes.voxel_size(seg)

    def prepare(folder):
        args = ["membranes", volumes.to_file(seg, folder), "--out", folder / "fit"]
        if threshold is not None:
            args += ["--threshold", threshold]
        if tilt_range is not None:
            args += ["--tilt-range", *tilt_range]
        if threads is not None:
            args += ["--threads", threads]
        return args

    def read(job: engine.Job, summary: dict, folder):
        from formats import read_volume

        outputs = summary.get("outputs") or {}
        instances = read_volume(outputs["instances"]).data
        if tuple(instances.shape[::-1]) != tuple(seg.data.size):
            raise engine.EngineError(f"{outputs['instances']}: shape {instances.shape} "
                                     "differs from the segmentation's")
        return (instances.astype("float32", copy=True), outputs.get("meshes") or {},
                summary.get("membranes") or [])

    def apply(fitted) -> None:
        from chimerax.geometry import translation
        from chimerax.wavefront_obj.obj import read_obj

        instances, meshes, table = fitted
        label_map = volumes.add_volume(session, instances, seg,
                                       f"{seg.name} membrane instances")
        label_map.display = False
        colors = class_colors([str(k) for k in meshes])
        surfaces = []
        for k, path in meshes.items():
            models, _ = read_obj(session, path, f"{seg.name} membrane {k}")
            for m in models:
                m.position = seg.scene_position * translation(tuple(seg.data.origin))
                m.color = colors[str(k)]
            session.models.add(models)
            surfaces += models
        seg.cryovis_membranes = {"instances": label_map, "surfaces": surfaces, "table": table}
        session.logger.info(f"cryovis membranes: {len(table)} membrane(s), instance map "
                            f"#{label_map.id_string}")
        for row in table:
            area = row.get("area_angst2")
            session.logger.info(
                f"  membrane {row['id']}: {row['model']}"
                f"{' (closed)' if row.get('closed') else ''}"
                f"{f', area {area / 1e4:.3g}e4 Å²' if area else ''}, "
                f"fit residual {row.get('residual_voxels')} voxels")

    return engine.start_engine_job(session, f"membranes #{seg.id_string}", prepare, read,
                                   apply, wait).id


membranes_desc = CmdDesc(
    required=[("segmentation", ModelArg)],
    keyword=[("threshold", FloatArg), ("tilt_range", Float2Arg), ("threads", PositiveIntArg),
             ("wait", BoolArg)],
    synopsis="membrane instances and fitted surfaces of a segmentation (meshes, label map)",
    url="help:user/commands/cryovis_membranes.html")
