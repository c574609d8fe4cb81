"""``cryovis pick``: particle picking on a tomogram; the picks become a marker set.

``method blob`` (the difference-of-Gaussians baseline) runs in-process, in a background
thread, when ChimeraX's Python can import it (numpy + scipy). ``unet`` and ``template``
need torch and run as the engine program: ``cryovis pick TOMO --method M [--model M]
[--template MAP --angular-step DEG] --out PICKS.csv --format csv``.
"""

from __future__ import annotations

import shutil

from chimerax.core.commands import (
    BoolArg,
    CmdDesc,
    EnumOf,
    FloatArg,
    ModelArg,
    OpenFileNameArg,
    PositiveIntArg,
    StringArg,
)
from chimerax.core.errors import UserError

from . import engine, volumes
from .markers import create_marker_set

METHODS = ("unet", "template", "blob")


def cryovis_pick(session, tomogram, method="blob", model=None, diameter=None, threshold=None,
                 template=None, angular_step=None, max_picks=None, name=None, wait=None):
    """Pick particles in ``tomogram``; returns the marker set (or the job id when running).

    Args:
        method: ``blob`` (in-process), ``unet`` or ``template`` (engine program).
        model: picker model file for ``unet`` (default: the engine's shipped one).
        diameter: particle diameter in Å (blob; default 10 voxels).
        threshold: minimum robust z-score of a blob pick (default 4).
        template: template map volume for ``template`` matching.
        angular_step: degrees between template orientations.
        max_picks: keep the best N picks.
    """
    tomo = volumes.require_volume(tomogram, "cryovis pick")
    vs = volumes.voxel_size(tomo)
    label = name or f"{tomo.name} picks ({method})"
    if method == "blob":
        picking = engine.in_process("cryoet_integration.picking")
        if picking is None:
            raise UserError("cryovis pick: the blob picker is not importable in ChimeraX's "
                            "Python (see 'help cryovis')")
        from formats import Volume

        data = volumes.array(tomo)
        diam = diameter if diameter is not None else 10.0 * vs
        if not diam > 0:
            raise UserError(f"cryovis pick: diameter must be positive, got {diam:g} Å")

        def work(job: engine.Job):
            job.progress(f"difference-of-Gaussians blob picking, diameter {diam:g} Å")
            return picking.pick_blobs(Volume(data, voxel_size=vs, path=tomo.name),
                                      diam, threshold_z=4.0 if threshold is None
                                      else threshold, max_picks=max_picks)
        cleanup = None
    else:
        program = engine.engine_program(session)
        if method == "template" and template is None:
            raise UserError("cryovis pick: method template needs 'template #MAP'")
        work_dir = volumes.scratch_dir("pick")
        cleanup = work_dir
        out = work_dir / "picks.csv"
        args = ["pick", volumes.to_file(tomo, work_dir), "--method", method, "--out", out,
                "--format", "csv"]
        if model is not None:
            args += ["--model", model]
        if template is not None:
            tmpl = volumes.require_volume(template, "cryovis pick template")
            args += ["--template", volumes.to_file(tmpl, work_dir)]
        if angular_step is not None:
            args += ["--angular-step", angular_step]

        def work(job: engine.Job):
            from formats import read_particles

            job.run_engine(args, program)
            return read_particles(out, format="csv", voxel_size=vs)

    def done(table) -> None:
        if cleanup is not None:
            shutil.rmtree(cleanup, ignore_errors=True)
        if len(table) == 0:
            session.logger.warning(f"cryovis pick: no particles found in #{tomo.id_string}")
            return
        diam_angst = diameter if diameter is not None else 10.0 * vs
        ms = create_marker_set(session, table, label, tomogram=tomo, radius=diam_angst / 2)
        classes = sorted(set(str(c) for c in table["class"]))
        session.logger.info(f"cryovis pick: {len(table)} particles as markers "
                            f"#{ms.id_string} (classes: {', '.join(classes)})")
        done.result = ms

    done.result = None
    job = engine.start(session, f"pick #{tomo.id_string}", work, done, wait)
    if job.finished and job.error is not None and cleanup is not None:
        shutil.rmtree(cleanup, ignore_errors=True)
    return done.result if job.applied else job.id


pick_desc = CmdDesc(
    required=[("tomogram", ModelArg)],
    keyword=[("method", EnumOf(METHODS)), ("model", OpenFileNameArg), ("diameter", FloatArg),
             ("threshold", FloatArg), ("template", ModelArg), ("angular_step", FloatArg),
             ("max_picks", PositiveIntArg), ("name", StringArg), ("wait", BoolArg)],
    synopsis="pick particles in a tomogram (markers coloured by class)",
    url="help:user/commands/cryovis_pick.html")
