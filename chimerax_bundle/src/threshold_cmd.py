"""``cryovis threshold``: the renderer's automatic ramp limit of probability maps."""

from __future__ import annotations

import numpy as np
from chimerax.core.commands import CmdDesc, ModelsArg
from chimerax.core.errors import UserError

from . import engine, volumes


def cryovis_threshold(session, maps):
    """Log (and return) the left ramp limit the renderer estimates for each map: Algorithm 1
    (iterative selection on 8-bit levels) per z slice, averaged over the slices."""
    transfer = engine.in_process("cryoet_integration.rendering.transfer")
    if transfer is None:
        raise UserError("cryovis threshold: the engine's rendering modules are not importable "
                        "in ChimeraX's Python (see 'help cryovis')")
    results = []
    for v in volumes.volumes_of(maps, "cryovis threshold"):
        data = volumes.array(v)
        lo, hi = float(data.min()), float(data.max())
        if not np.all(np.isfinite(data)) or lo < -0.01 or hi > 1.01:
            raise UserError(f"cryovis threshold: #{v.id_string} ({v.name}): values "
                            f"{lo:g}..{hi:g} are not probabilities in [0, 1]")
        est = transfer.estimate_threshold(np.clip(data, 0.0, 1.0))
        per_slice = est.per_slice[np.isfinite(est.per_slice)]
        detail = (f"mean over {per_slice.size} of {data.shape[0]} z slices, per slice "
                  f"{per_slice.min():.3f}..{per_slice.max():.3f}" if per_slice.size
                  else "no slice has contrast")
        session.logger.info(f"cryovis threshold: #{v.id_string} ({v.name}): ramp limit "
                            f"{est.value:.3f} ({detail})")
        results.append(float(est.value))
    return results


threshold_desc = CmdDesc(required=[("maps", ModelsArg)],
                         synopsis="report the renderer's automatic ramp limit of probability maps",
                         url="help:user/commands/cryovis_threshold.html")
