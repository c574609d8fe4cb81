"""Scipion 3 plugin for cryovis: membrane segmentation, particle picking, coordinate export and
rendering of cryo-electron tomograms.

The protocols run the ``cryovis`` engine as a program in its own environment (Scipion's
Python pins numpy 1.26.1; the engine needs torch and current numpy) and read what it wrote
with ``formats``, the project's light base package.
"""

import os
import shutil
import sys

import pwem
from pyworkflow.utils import Environ

from .constants import (
    CRYOVIS_ENV_DIR,
    CRYOVIS_HOME,
    CRYOVIS_PIP_SPEC,
    CRYOVIS_PIP_SPEC_DEFAULT,
    CRYOVIS_PROGRAM,
    ENGINE_VERSION,
)

__version__ = "0.1.0"
_logo = "logo.png"
_references = ["Nguyen2021", "Gubins2021", "Zhou2023", "Lamm2024", "Liu2018", "Bharat2016"]


class Plugin(pwem.Plugin):
    _homeVar = CRYOVIS_HOME
    _url = "https://github.com/cryovis/cryoet-integration"

    @classmethod
    def _defineVariables(cls):
        cls._defineEmVar(CRYOVIS_HOME, f"cryovis-{ENGINE_VERSION}")
        cls._defineVar(CRYOVIS_PROGRAM, "")
        cls._defineVar(CRYOVIS_PIP_SPEC, CRYOVIS_PIP_SPEC_DEFAULT)

    @classmethod
    def getProgram(cls):
        """Absolute path of the ``cryovis`` executable, or None when there is none.

        CRYOVIS_PROGRAM when set (a path, or a name looked up on PATH); otherwise the one
        ``defineBinaries`` installed under CRYOVIS_HOME; otherwise ``cryovis`` on PATH.
        """
        configured = cls.getVar(CRYOVIS_PROGRAM)
        if configured:
            found = shutil.which(configured)
            return os.path.abspath(found) if found else None
        installed = os.path.join(cls.getHome(), CRYOVIS_ENV_DIR, "bin", "cryovis")
        if os.access(installed, os.X_OK):
            return installed
        return shutil.which("cryovis")

    @classmethod
    def programProblem(cls):
        """Why the engine cannot run (one line), or None when it can."""
        if cls.getProgram() is not None:
            return None
        configured = cls.getVar(CRYOVIS_PROGRAM)
        where = (f"{CRYOVIS_PROGRAM}={configured} is not an executable program" if configured
                 else f"no cryovis under {cls.getHome()} and none on PATH")
        return (f"cryovis engine not found: {where}. Install it with `scipion3 installb "
                f"cryovis` or set {CRYOVIS_PROGRAM} to the path of its `cryovis` program.")

    @classmethod
    def getEnviron(cls):
        """The engine's environment: Scipion's Python paths removed (it has its own Python)."""
        environ = Environ(os.environ)
        for var in ("PYTHONPATH", "PYTHONHOME"):
            environ.pop(var, None)
        return environ

    @classmethod
    def defineBinaries(cls, env):
        # A venv of its own, made by the Python Scipion runs on: the engine's numpy/torch never
        # meet Scipion's pins. CRYOVIS_PIP_SPEC may name a wheel or a checkout instead.
        from scipion.install.funcs import VOID_TGZ

        installed = f"cryovis_{ENGINE_VERSION}_installed"
        pip = f"{CRYOVIS_ENV_DIR}/bin/python -m pip"
        commands = (f"{sys.executable} -m venv {CRYOVIS_ENV_DIR} && "
                    f"{pip} install -q --upgrade pip && "
                    f"{pip} install -q '{cls.getVar(CRYOVIS_PIP_SPEC)}' && "
                    f"{CRYOVIS_ENV_DIR}/bin/cryovis --version && touch {installed}")
        env.addPackage("cryovis", version=ENGINE_VERSION, tar=VOID_TGZ,
                       commands=[(commands, installed)], default=True)
