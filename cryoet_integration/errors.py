"""Errors the command line turns into one line on stderr and a non-zero exit."""

from __future__ import annotations

import importlib


class CryovisError(RuntimeError):
    """A user-facing failure; ``str()`` is one line naming the file (if any) and the problem."""


def require_engine(*modules: str) -> None:
    """Raise CryovisError with the install hint if an engine dependency is missing.

    Args:
        modules: importable module names, e.g. ``"torch"``, ``"scipy"``.
    """
    for name in modules or ("torch", "scipy", "skimage"):
        try:
            importlib.import_module(name)
        except ImportError:
            raise CryovisError(
                f"this command needs the engine dependencies ({name} is missing): "
                'pip install "cryoet-integration[engine]"'
            ) from None
