"""``cryovis segment``: run the engine's segmentation on a tomogram; one volume per class.

The engine (torch) runs as the ``cryovis`` program: the tomogram goes in as an MRC file,
``cryovis segment TOMO --out PROB.mrc [--model M] --json SUMMARY`` writes one probability
map per class (the summary names them), and each comes back as a volume model on the
tomogram's grid (its origin and voxel size), remembered as the tomogram's class maps for
``cryovis render``.
"""

from __future__ import annotations

import shutil

from chimerax.core.commands import (
    BoolArg,
    CmdDesc,
    ModelArg,
    OpenFileNameArg,
    PositiveIntArg,
    StringArg,
)

from . import engine, volumes
from .markers import class_colors


def cryovis_segment(session, tomogram, model=None, threads=None, device=None, wait=None):
    """Segment ``tomogram`` with ``model`` (default: the engine's shipped membrane model),
    on ``threads`` CPU threads or the torch ``device`` (e.g. ``cpu``, ``cuda:0``)."""
    tomo = volumes.require_volume(tomogram, "cryovis segment")
    program = engine.engine_program(session)
    volumes.voxel_size(tomo)
    work_dir = volumes.scratch_dir("segment")
    try:
        source = volumes.to_file(tomo, work_dir)
    except Exception:
        shutil.rmtree(work_dir, ignore_errors=True)
        raise
    args = ["segment", source, "--out", work_dir / "prob.mrc"]
    if model is not None:
        args += ["--model", model]
    if threads is not None:
        args += ["--threads", threads]
    if device is not None:
        args += ["--device", device]

    def work(job: engine.Job):
        from formats import read_volume

        result = job.run_engine(args, program, json_out=work_dir / "summary.json")
        outputs = result.get("outputs") or {}
        if not outputs:
            raise engine.EngineError("the engine reported no output maps")
        maps = {}
        for name, path in outputs.items():
            data = read_volume(path).data
            if tuple(data.shape[::-1]) != tuple(tomo.data.size):
                raise engine.EngineError(f"{path}: shape {data.shape} differs from the "
                                         "tomogram's")
            maps[name] = data.astype("float32", copy=True)
        return maps

    def done(maps) -> None:
        shutil.rmtree(work_dir, ignore_errors=True)
        colors = class_colors(list(maps))
        created = []
        for name, data in maps.items():
            v = volumes.add_volume(session, data, tomo, f"{tomo.name} {name}")
            v.set_parameters(surface_levels=[0.5],
                             surface_colors=[tuple(c / 255 for c in colors[name])])
            v.set_display_style("surface")
            created.append(v)
        tomo.cryovis_classes = created
        session.logger.info(f"cryovis segment: {len(created)} class map(s): " + ", ".join(
            f"#{v.id_string} {name}" for v, name in zip(created, maps)))

    job = engine.start(session, f"segment #{tomo.id_string}", work, done, wait)
    if job.finished and job.error is not None:
        shutil.rmtree(work_dir, ignore_errors=True)
    return job.id


segment_desc = CmdDesc(
    required=[("tomogram", ModelArg)],
    keyword=[("model", OpenFileNameArg), ("threads", PositiveIntArg), ("device", StringArg),
             ("wait", BoolArg)],
    synopsis="segment a tomogram with the cryovis engine (one volume per class)",
    url="help:user/commands/cryovis_segment.html")
