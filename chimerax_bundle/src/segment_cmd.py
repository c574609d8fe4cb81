"""``cryovis segment``: run the engine's segmentation on a tomogram; one volume per class.

The engine (torch) runs as the ``cryovis`` program: the tomogram goes in as an MRC file,
``cryovis segment TOMO --out PROB.mrc [--model M] --json SUMMARY`` writes one probability
map per class of the model (the summary names them in the model's class order: one for
the shipped membrane model, K for a network trained on ``cryovis pseudolabel`` output), and
each comes back as a volume model on the tomogram's grid (its origin and voxel size) under
one grouping model, remembered as the tomogram's class maps for ``cryovis render``.
"""

from __future__ import annotations

from chimerax.core.commands import (
    BoolArg,
    CmdDesc,
    ModelArg,
    OpenFileNameArg,
    PositiveIntArg,
    StringArg,
)

from . import engine, volumes


def cryovis_segment(session, tomogram, model=None, threads=None, device=None, wait=None):
    """Segment ``tomogram`` with ``model`` (default: the engine's shipped membrane model),
    on ``threads`` CPU threads or the torch ``device`` (e.g. ``cpu``, ``cuda:0``)."""
    tomo = volumes.require_volume(tomogram, "cryovis segment")
    volumes.voxel_size(tomo)

    def prepare(folder):
        args = ["segment", volumes.to_file(tomo, folder), "--out", folder / "prob.mrc"]
        for option, value in (("--model", model), ("--threads", threads),
                              ("--device", device)):
            if value is not None:
                args += [option, value]
        return args

    def read(job: engine.Job, summary: dict, folder):
        return volumes.read_class_maps(summary, tomo)

    def apply(maps) -> None:
        created = volumes.add_class_maps(session, tomo, maps, f"{tomo.name} segmentation")
        session.logger.info(f"cryovis segment: {len(created)} class map(s): " + ", ".join(
            f"#{v.id_string} {name}" for v, name in zip(created, maps)))

    return engine.start_engine_job(session, f"segment #{tomo.id_string}", prepare, read,
                                   apply, wait).id


segment_desc = CmdDesc(
    required=[("tomogram", ModelArg)],
    keyword=[("model", OpenFileNameArg), ("threads", PositiveIntArg), ("device", StringArg),
             ("wait", BoolArg)],
    synopsis="segment a tomogram with the cryovis engine (one volume per class)",
    url="help:user/commands/cryovis_segment.html")
