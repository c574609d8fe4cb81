"""``cryovis config``: where the engine is, kept in ChimeraX settings; ``cryovis jobs`` and
``cryovis cancel`` for work running in the background."""

from __future__ import annotations

import os
import shutil

from chimerax.core.commands import CmdDesc, EnumOf, IntArg, OpenFileNameArg, Or
from chimerax.core.errors import UserError

from . import engine as engine_mod
from .settings import get_settings


def cryovis_config(session, engine=None):
    """Show the configuration, or set the ``cryovis`` program (``engine PATH``; ``engine
    default`` goes back to looking it up on PATH). The path is checked by running it."""
    settings = get_settings(session)
    if engine is not None:
        if engine == "default":
            settings.engine = ""
            _save(session, settings)
            session.logger.info("cryovis config: engine = cryovis on PATH")
        else:
            path = os.path.abspath(os.path.expanduser(engine))
            version = engine_mod.check_engine(path)
            settings.engine = path
            _save(session, settings)
            session.logger.info(f"cryovis config: engine = {path} ({version})")
            return path
    configured = settings.engine
    on_path = shutil.which("cryovis")
    inproc = {name: engine_mod.in_process(mod) is not None for name, mod in
              (("rendering", "cryoet_integration.rendering"),
               ("blob picker", "cryoet_integration.picking"), ("formats", "formats"))}
    lines = [f"engine program: {configured or '(not set)'}",
             f"cryovis on PATH: {on_path or '(none)'}",
             "in-process in ChimeraX's Python: " + ", ".join(
                 f"{k} {'yes' if v else 'no'}" for k, v in inproc.items())]
    session.logger.info("cryovis config:\n  " + "\n  ".join(lines))
    return configured or on_path


def _save(session, settings) -> None:
    try:
        settings.save()
    except OSError as exc:
        # e.g. ChimeraX run as root has no settings folder: keep it for this session
        session.logger.warning(f"cryovis config: cannot save the settings ({exc.strerror}: "
                               f"{exc.filename}); the setting lasts for this session only")


def cryovis_jobs(session):
    """List the running cryovis jobs (and apply those that have finished)."""
    for job in list(engine_mod.jobs(session)):
        job.poll()
    running = engine_mod.jobs(session)
    if not running:
        session.logger.info("cryovis jobs: none running")
    for job in running:
        session.logger.info(f"cryovis job {job.id}: {job.title}: {job.status}")
    return [job.id for job in running]


def cryovis_cancel(session, job_id=None):
    """Cancel one job (by id) or all running jobs; the engine process is stopped."""
    running = engine_mod.jobs(session)
    chosen = running if job_id in (None, "all") else [j for j in running if j.id == job_id]
    if not chosen:
        raise UserError("cryovis cancel: no such running job" if job_id not in (None, "all")
                        else "cryovis cancel: no job is running")
    for job in chosen:
        job.cancel()
        session.logger.info(f"cryovis cancel: stopping job {job.id} ({job.title})")
    return [job.id for job in chosen]


config_desc = CmdDesc(
    keyword=[("engine", Or(EnumOf(["default"]), OpenFileNameArg))],
    synopsis="show or set the cryovis configuration (engine path)",
    url="help:user/commands/cryovis_config.html")
jobs_desc = CmdDesc(synopsis="list running cryovis jobs",
                    url="help:user/commands/cryovis_jobs.html")
cancel_desc = CmdDesc(optional=[("job_id", Or(EnumOf(["all"]), IntArg))],
                      synopsis="cancel running cryovis jobs",
                      url="help:user/commands/cryovis_jobs.html")
