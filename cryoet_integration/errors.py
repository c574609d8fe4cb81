"""Errors the command line turns into one line on stderr and a non-zero exit."""

from __future__ import annotations

import importlib


class CryovisError(RuntimeError):
    """A user-facing failure; ``str()`` is one line naming the file (if any) and the problem."""


def require_engine(*modules: str, extra: str = "engine") -> None:
    """Raise CryovisError with the install hint if an engine dependency is missing.

    Args:
        modules: importable module names, e.g. ``"torch"``, ``"scipy"``.
        extra: the optional dependency set that brings them (``engine``, ``batch``).
    """
    for name in modules or ("torch", "scipy", "skimage"):
        try:
            importlib.import_module(name)
        except ImportError:
            raise CryovisError(
                f"this command needs the {extra} dependencies ({name} is missing): "
                f'pip install "cryoet-integration[{extra}]"'
            ) from None
