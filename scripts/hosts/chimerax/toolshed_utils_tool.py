"""Text stand-in for ``chimerax.toolshed_utils.tool``, the toolshed's updates dialog.

The ChimeraX 0.1.71 wheel lacks this GUI-only module, yet ``chimerax.toolshed_utils``
imports it when the toolshed reports out-of-date bundles or the tool is started.
``setup.sh`` copies this file there; without a window it only logs.
"""

import enum


class DialogType(enum.IntEnum):
    UPDATES_ONLY = 0
    ALL = 1


OUT_OF_DATE = DialogType.UPDATES_ONLY


def show(session, dialog_type=DialogType.ALL):
    session.logger.info("The toolshed updates dialog needs the ChimeraX GUI.")
