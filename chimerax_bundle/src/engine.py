"""The cryovis engine seen from ChimeraX: where it is, and long work in the background.

The engine is the ``cryovis`` program (the configured path, else ``cryovis`` on PATH), called
with files in and files out, or its Python modules in-process when ChimeraX's Python can
import them without torch (rendering, thresholds, the blob picker). Work that takes seconds
or more runs as a :class:`Job` in a background thread; its latest progress line goes to the
status line, ``cryovis cancel`` stops it (the engine process is terminated), and its result
is applied to the session on the main thread. :func:`start_engine_job` is the shape every
command that runs the program shares: a scratch folder for its files in and out, the run
with a JSON summary, and the folder removed however the job ends.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from chimerax.core.errors import UserError

from .settings import get_settings

ENGINE_HINT = ("install cryoet-integration[engine] in a Python of its own and run "
               "'cryovis config engine /path/to/bin/cryovis', or put cryovis on PATH")


# The engine starts each stderr line with its own "cryovis CMD: " (and "error: " for the
# reason it failed); the job's status line and log line already name the command.
ENGINE_PREFIX = re.compile(r"^cryovis(?: [\w-]+)*: (?:error: )?")


class EngineError(RuntimeError):
    """The engine failed; ``str()`` is the one-line reason it gave."""


class Cancelled(RuntimeError):
    """The job was cancelled by the user."""


def _executable(path: str) -> bool:
    # the mode bits, not os.access: as root, access() calls files executable that are not
    return os.path.isfile(path) and bool(os.stat(path).st_mode & 0o111)


def engine_program(session) -> str:
    """Path of the ``cryovis`` executable: the configured one, else the one on PATH.

    Raises:
        UserError: none is configured or found, or the configured path is not executable.
    """
    configured = get_settings(session).engine
    if configured:
        if not _executable(configured):
            raise UserError(f"cryovis engine {configured}: not an executable file "
                            f"({ENGINE_HINT})")
        return configured
    found = shutil.which("cryovis")
    if found is None:
        raise UserError(f"cryovis engine not found: no 'cryovis' on PATH ({ENGINE_HINT})")
    return found


def check_engine(path: str) -> str:
    """Run ``path --version``; returns its version line or raises UserError (one line)."""
    if not _executable(path):
        raise UserError(f"cryovis engine {path}: not an executable file")
    try:
        proc = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserError(f"cryovis engine {path}: cannot run it ({exc})") from None
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0 or not out.startswith("cryovis"):
        raise UserError(f"cryovis engine {path}: not the cryovis program "
                        f"('--version' said {out.splitlines()[-1] if out else 'nothing'!r})")
    return out.splitlines()[0]


def in_process(module: str):
    """The engine module ``module`` if ChimeraX's Python can import it, else ``None``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def one_line(exc: BaseException) -> str:
    """An exception as one line of text."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


class Job:
    """Long work in a background thread, applied to the session when it has finished.

    Args:
        session: the ChimeraX session.
        title: short name for the status line and log (e.g. ``"segment #1"``).
        work: ``work(job) -> result``, run in the background thread; it must not touch
            the session or OpenGL. It reports with ``job.progress(text)`` and checks
            ``job.cancelled`` (or runs the engine through :meth:`run_engine`).
        on_done: ``on_done(result)``, run on the main thread to create models.
        cleanup: run on the main thread once the job has ended (applied, failed or
            cancelled), after ``on_done``.
    """

    _next_id = 1

    def __init__(self, session, title: str, work: Callable[[Job], Any],
                 on_done: Callable[[Any], None], cleanup: Callable[[], None] | None = None):
        self.session = session
        self.title = title
        self.id = Job._next_id
        Job._next_id += 1
        self._work, self._on_done, self._cleanup = work, on_done, cleanup
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._status = "starting"
        self._shown = ""
        self.cancelled = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.finished = False
        self.applied = False
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"cryovis-{self.id}", daemon=True)

    def start(self) -> Job:
        jobs(self.session).append(self)
        _watch_frames(self.session)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self.result = self._work(self)
        except BaseException as exc:  # noqa: BLE001 - reported on the main thread, one line
            self.error = exc
        finally:
            self.finished = True

    def progress(self, text: str) -> None:
        """Record a progress line (shown in the status line from the main thread)."""
        with self._lock:
            self._status = text

    @property
    def status(self) -> str:
        with self._lock:
            return self._status

    def check_cancelled(self) -> None:
        """Raise :class:`Cancelled` if the user cancelled the job."""
        if self.cancelled:
            raise Cancelled(f"{self.title}: cancelled")

    def cancel(self) -> None:
        """Ask the work to stop; a running engine process is terminated."""
        self.cancelled = True
        with self._lock:
            proc = self._process
        if proc is not None and proc.poll() is None:
            proc.terminate()

    def run_engine(self, args: Sequence[str], program: str,
                   json_out: Path | None = None) -> dict:
        """Run ``program args...``; its stderr lines (without the engine's own prefix) are
        progress.

        With ``json_out`` the engine is asked for its run summary there (``--json FILE``,
        given last: the option's value is optional) and the parsed summary is returned, else
        ``{}``. A file, not stdout: stdout carries nothing we rely on. Raises EngineError
        with the engine's one-line reason, or Cancelled.
        """
        self.check_cancelled()
        cmd = [program, *map(str, args)]
        if json_out is not None:
            cmd += ["--json", str(json_out)]
        self.progress("running " + " ".join(Path(cmd[0]).name if i == 0 else a
                                            for i, a in enumerate(cmd)))
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, bufsize=1)
        with self._lock:
            self._process = proc
        errors: list[str] = []
        try:
            assert proc.stderr is not None
            for line in proc.stderr:
                line = ENGINE_PREFIX.sub("", line.strip())
                if line:
                    errors.append(line)
                    self.progress(line)
            proc.wait()
        finally:
            with self._lock:
                self._process = None
        if self.cancelled:
            raise Cancelled(f"{self.title}: cancelled (engine process stopped)")
        if proc.returncode != 0:
            if not errors:
                raise EngineError(f"exit status {proc.returncode}")
            raise EngineError(errors[-1])
        if json_out is None:
            return {}
        try:
            return json.loads(Path(json_out).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise EngineError(f"{json_out}: the engine's JSON summary is missing or does not "
                              f"parse ({one_line(exc)})") from None

    def poll(self) -> bool:
        """On the main thread: show progress; apply the result once finished. True when done."""
        if self.applied:
            return True
        if not self.finished:
            text = f"cryovis {self.title}: {self.status}"
            if text != self._shown:
                self.session.logger.status(text)
                self._shown = text
            return False
        self.applied = True
        jobs(self.session).remove(self)
        log = self.session.logger
        try:
            if isinstance(self.error, Cancelled):
                log.warning(str(self.error))
            elif self.error is not None:
                log.error(f"cryovis {self.title}: {one_line(self.error)}")
            else:
                try:
                    self._on_done(self.result)
                except UserError as exc:
                    log.error(f"cryovis {self.title}: {one_line(exc)}")
                else:
                    log.status(f"cryovis {self.title}: done in "
                               f"{time.monotonic() - self.started:.1f} s")
        finally:
            if self._cleanup is not None:
                self._cleanup()
        return True

    def wait(self) -> None:
        """Block until finished (scripts, nogui), updating the status line, then apply."""
        while not self.finished:
            self._thread.join(timeout=0.25)
            self.poll()
        self.poll()


def jobs(session) -> list[Job]:
    """The session's running (or finished but not yet applied) jobs."""
    if not hasattr(session, "_cryovis_jobs"):
        session._cryovis_jobs = []
    return session._cryovis_jobs


def _watch_frames(session) -> None:
    # In the GUI the redraw loop fires "new frame" continuously: poll there, so results of
    # jobs started without waiting appear by themselves.
    if getattr(session, "_cryovis_frame_handler", None) is None:
        def poll_all(*_):
            for job in list(jobs(session)):
                job.poll()
        session._cryovis_frame_handler = session.triggers.add_handler("new frame", poll_all)


def start(session, title: str, work: Callable[[Job], Any], on_done: Callable[[Any], None],
          wait: bool | None, cleanup: Callable[[], None] | None = None) -> Job:
    """Start a job; ``wait`` None means block unless ChimeraX has a GUI event loop."""
    job = Job(session, title, work, on_done, cleanup).start()
    session.logger.info(f"cryovis {title}: started as job {job.id}"
                        + ("" if _blocking(session, wait) else " ('cryovis cancel' stops it)"))
    if _blocking(session, wait):
        job.wait()
    return job


def _blocking(session, wait: bool | None) -> bool:
    return (not session.ui.is_gui) if wait is None else bool(wait)


def scratch_dir(prefix: str) -> Path:
    """A new temporary folder for engine inputs and outputs."""
    return Path(tempfile.mkdtemp(prefix=f"cryovis-{prefix}-"))


def start_engine_job(session, title: str, prepare: Callable[[Path], Sequence],
                     read: Callable[[Job, dict, Path], Any], apply: Callable[[Any], None],
                     wait: bool | None) -> Job:
    """Run the engine program on files in a scratch folder as a background job.

    Args:
        title: the job's name, e.g. ``"segment #1"``; its first word names the folder.
        prepare: ``prepare(folder) -> args``, on the main thread: writes the inputs into
            ``folder`` and returns the program's arguments (``--json`` is added).
        read: ``read(job, summary, folder) -> result``, in the background thread: reads
            the outputs the engine's JSON ``summary`` names (no session, no OpenGL).
        apply: ``apply(result)``, on the main thread: creates the models; the folder is
            still there (e.g. for meshes read by ChimeraX's own readers).
        wait: as :func:`start`.

    The program is looked up first (UserError before any file is written); the folder is
    removed when ``prepare`` fails and otherwise once the job has ended, whether it was
    applied, failed or was cancelled.
    """
    program = engine_program(session)
    folder = scratch_dir(title.split()[0])

    def remove() -> None:
        shutil.rmtree(folder, ignore_errors=True)

    try:
        args = list(prepare(folder))
    except BaseException:
        remove()
        raise

    def work(job: Job):
        return read(job, job.run_engine(args, program, json_out=folder / "summary.json"), folder)

    return start(session, title, work, apply, wait, cleanup=remove)
