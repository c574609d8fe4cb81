"""Text-only user interface for ``python -m chimerax.core --nogui [--offscreen]``.

The ChimeraX 0.1.71 wheel (UCSF ChimeraX 1.7.1) ships without ``chimerax.core.nogui``,
which ``chimerax.core.session.Session`` imports for every session. ``setup.sh`` copies this
module there. What ChimeraX asks of it (``session.py``, ``__main__.py``): a ``UI`` made once
per process, with ``is_gui``/``has_graphics`` flags, offscreen-rendering set-up, and
``build``/``event_loop``/``quit``/``thread_safe``; and ``NoGuiLog``, the log that writes
messages to stdout.
"""

import os
import sys
import weakref

from .logger import PlainTextLog


class NoGuiLog(PlainTextLog):
    """Log messages and status lines to stdout, one ``LEVEL:`` heading per message."""

    _HEADINGS = {
        PlainTextLog.LEVEL_INFO: "INFO",
        PlainTextLog.LEVEL_WARNING: "WARNING",
        PlainTextLog.LEVEL_ERROR: "ERROR",
        PlainTextLog.LEVEL_BUG: "BUG",
    }

    def log(self, level, msg):
        sys.stdout.write(f"{self._HEADINGS.get(level, 'INFO')}:\n{msg}")
        sys.stdout.flush()
        return True

    def status(self, msg, color, secondary):
        # Secondary status lines are transient progress: only the primary ones are kept.
        if msg and not secondary:
            print(f"STATUS:\n{msg}", flush=True)
        return True


class UI:
    """The one text UI of the process (ChimeraX calls ``UI(session)`` more than once)."""

    _instance = None

    def __new__(cls, session):
        if cls._instance is None:
            ui = super().__new__(cls)
            ui.is_gui = False
            ui.has_graphics = False
            ui._session = weakref.ref(session)
            cls._instance = ui
        return cls._instance

    @classmethod
    def instance(cls):
        return cls._instance

    def initialize_color_output(self, color_output):
        """Plain text only: colour requests are accepted and ignored."""

    def initialize_offscreen_rendering(self):
        """Render into an OSMesa context; without one the session runs without graphics."""
        session = self._session()
        from chimerax import graphics

        try:
            context = graphics.OffScreenRenderingContext()
        except Exception as exc:  # any failure means: no OpenGL here
            session.logger.info(f"Offscreen rendering is not available: {exc}")
            self.has_graphics = False
            return
        session.main_view.initialize_rendering(context)
        self.has_graphics = True

    def splash_info(self, message, splash_step=None, num_splash_steps=None):
        print(message, file=sys.stderr)

    def build(self):
        """Nothing to build without windows."""

    def event_loop(self):
        """Run commands read from stdin, one a line, until end of input."""
        from . import errors
        from .commands import Command

        session = self._session()
        command = Command(session)
        for line in sys.stdin:
            text = line.strip()
            if not text:
                continue
            try:
                command.run(text)
            except errors.NotABug as err:
                session.logger.error(str(err))

    def quit(self):
        self._session().logger.clear()
        sys.exit(os.EX_OK)

    def thread_safe(self, func, *args, **kw):
        # One thread only: the call can run at once.
        func(*args, **kw)
