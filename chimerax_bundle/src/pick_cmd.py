"""``cryovis pick``: particle picking on a tomogram; the picks become a marker set.

``method blob`` (the difference-of-Gaussians baseline) runs in-process, in a background
thread, when ChimeraX's Python can import it (numpy + scipy). ``unet`` (the learned picker,
torch) runs as the engine program: ``cryovis pick TOMO --method unet [--model M]
[--threshold T] [--min-score S] [--max-particles N] [--threads N] [--device D]
--out PICKS.csv --format csv --json SUMMARY``; ``template`` (the engine's template matching)
the same way with ``--template MAP --angular-step DEG``. Template picks carry the engine's
orientations (kept per marker, drawn as sticks).
"""

from __future__ import annotations

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
POLARITIES = ("auto", "dark", "light")
BLOB_MIN_SCORE = 4.0  # robust z-score, as the engine's `cryovis pick --method blob`


def cryovis_pick(session, tomogram, method="blob", model=None, diameter=None, threshold=None,
                 min_score=None, polarity="auto", template=None, angular_step=None,
                 max_picks=None, threads=None, device=None, name=None, wait=None):
    """Pick particles in ``tomogram``; returns the marker set (or the job id when running).

    Args:
        method: ``blob`` (in-process), ``unet`` or ``template`` (engine program).
        model: picker model file for ``unet`` (default: the engine's shipped one).
        diameter: particle diameter in Å (blob; default the engine's, 120 Å); also the
            markers' size.
        threshold: ``unet`` peak threshold in [0, 1] instead of the model's tuned one.
        min_score: drop picks scoring below this (unet: probability; blob: robust z-score,
            default 4).
        polarity: contrast of dense matter, ``dark``, ``light`` or ``auto`` (detected).
        template: template map volume for ``template`` matching.
        angular_step: degrees between template orientations.
        max_picks: keep the best N picks.
        threads, device: CPU threads and torch device of the engine program.
    """
    tomo = volumes.require_volume(tomogram, "cryovis pick")
    vs = volumes.voxel_size(tomo)
    label = name or f"{tomo.name} picks ({method})"
    if diameter is not None and not diameter > 0:
        raise UserError(f"cryovis pick: diameter must be positive, got {diameter:g} Å")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise UserError(f"cryovis pick: threshold must be in [0, 1], got {threshold:g}")
    if method != "unet" and (model is not None or threshold is not None):
        raise UserError("cryovis pick: model and threshold are for method unet")
    if method != "template" and (template is not None or angular_step is not None):
        raise UserError("cryovis pick: template and angularStep are for method template")
    if method == "template" and (template is None or angular_step is None):
        raise UserError("cryovis pick: method template needs 'template #MAP' and "
                        "'angularStep DEGREES'")
    if method == "blob":
        picking = engine.in_process("cryoet_integration.picking")
        if picking is None:
            raise UserError("cryovis pick: the blob picker is not importable in ChimeraX's "
                            "Python (see 'help cryovis')")
        from cryoet_integration.commands.pick import BLOB_DIAMETER_ANGST
        from cryoet_integration.picking.masks import detect_polarity
        from formats import Volume

        data = volumes.array(tomo)
        diam = marker_diameter = diameter if diameter is not None else BLOB_DIAMETER_ANGST

        def work(job: engine.Job):
            contrast = detect_polarity(data) if polarity == "auto" else polarity
            job.progress(f"difference-of-Gaussians blob picking, diameter {diam:g} Å, "
                         f"dense matter {contrast}")
            return picking.pick_blobs(
                Volume(data, voxel_size=vs, path=tomo.name), diam, polarity=contrast,
                threshold_z=BLOB_MIN_SCORE if min_score is None else min_score,
                max_picks=max_picks)
    else:
        marker_diameter = diameter
        tmpl = (volumes.require_volume(template, "cryovis pick template")
                if template is not None else None)

        def prepare(folder):
            args = ["pick", volumes.to_file(tomo, folder), "--method", method,
                    "--out", folder / "picks.csv", "--format", "csv", "--polarity", polarity]
            if tmpl is not None:
                args += ["--template", volumes.to_file(tmpl, folder)]
            for option, value in (("--model", model), ("--threshold", threshold),
                                  ("--min-score", min_score), ("--max-particles", max_picks),
                                  ("--angular-step", angular_step), ("--threads", threads),
                                  ("--device", device)):
                if value is not None:
                    args += [option, value]
            return args

        def read(job: engine.Job, summary: dict, folder):
            from formats import read_particles

            job.progress(f"{summary.get('n_picks', '?')} picks; reading picks.csv")
            return read_particles(folder / "picks.csv", format="csv", voxel_size=vs)

    def done(table) -> None:
        if len(table) == 0:
            session.logger.warning(f"cryovis pick: no particles found in #{tomo.id_string}")
            return
        ms = create_marker_set(session, table, label, tomogram=tomo,
                               radius=None if marker_diameter is None else marker_diameter / 2)
        classes = sorted(set(str(c) for c in table["class"]))
        session.logger.info(f"cryovis pick: {len(table)} particles as markers "
                            f"#{ms.id_string} (classes: {', '.join(classes)})")
        done.result = ms

    done.result = None
    title = f"pick #{tomo.id_string}"
    job = (engine.start(session, title, work, done, wait) if method == "blob"
           else engine.start_engine_job(session, title, prepare, read, done, wait))
    return done.result if job.applied else job.id


pick_desc = CmdDesc(
    required=[("tomogram", ModelArg)],
    keyword=[("method", EnumOf(METHODS)), ("model", OpenFileNameArg), ("diameter", FloatArg),
             ("threshold", FloatArg), ("min_score", FloatArg), ("polarity", EnumOf(POLARITIES)),
             ("template", ModelArg), ("angular_step", FloatArg), ("max_picks", PositiveIntArg),
             ("threads", PositiveIntArg), ("device", StringArg), ("name", StringArg),
             ("wait", BoolArg)],
    synopsis="pick particles in a tomogram (markers coloured by class)",
    url="help:user/commands/cryovis_pick.html")
