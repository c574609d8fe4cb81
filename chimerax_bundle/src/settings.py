"""The bundle's persistent configuration (ChimeraX settings, kept between sessions)."""

from __future__ import annotations

from chimerax.core.settings import Settings


class CryovisSettings(Settings):
    """``engine``: path of the ``cryovis`` program ("" = look it up on PATH); saved by
    ``cryovis config`` (explicitly, so that a read-only settings folder is one warning)."""

    EXPLICIT_SAVE = {
        "engine": "",
    }


def get_settings(session) -> CryovisSettings:
    """The settings object of ``session`` (created on first use)."""
    settings = getattr(session, "_cryovis_settings", None)
    if settings is None:
        settings = CryovisSettings(session, "cryovis")
        session._cryovis_settings = settings
    return settings
