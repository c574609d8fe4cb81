"""ChimeraX volume models <-> arrays and files of the engine (via ``formats``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from chimerax.core.errors import UserError


def require_volume(model, role: str):
    """``model`` if it is a ChimeraX Volume, else a one-line UserError naming the model."""
    from chimerax.map import Volume

    if not isinstance(model, Volume):
        raise UserError(f"{role}: #{model.id_string} ({model.name}) is a "
                        f"{type(model).__name__}, not a volume")
    return model


def volumes_of(models, role: str) -> list:
    """The models of a ``ModelsArg`` as volumes (one-line UserError on anything else)."""
    from chimerax.map import Volume

    out = [m for m in models if isinstance(m, Volume)]
    others = [m for m in models if not isinstance(m, Volume)
              and not any(m in v.all_models() for v in out)]
    if others:
        require_volume(others[0], role)
    if not out:
        raise UserError(f"{role}: no volume given")
    return out


def voxel_size(volume) -> float:
    """Å per voxel of a ChimeraX volume (UserError when anisotropic)."""
    step = [float(s) for s in volume.data.step]
    if max(step) - min(step) > 1e-6 * max(step):
        raise UserError(f"#{volume.id_string} ({volume.name}): anisotropic voxel size "
                        f"{step[0]:g}x{step[1]:g}x{step[2]:g} Å is not supported")
    return step[0]


def array(volume) -> np.ndarray:
    """The full-resolution data ``[z, y, x]`` of a ChimeraX volume (a float32 copy)."""
    return np.array(volume.full_matrix(), dtype=np.float32, copy=True)


def check_same_grid(tomogram, others, role: str) -> None:
    """UserError unless every volume in ``others`` has the tomogram's grid."""
    for v in others:
        if tuple(v.data.size) != tuple(tomogram.data.size):
            raise UserError(f"{role}: #{v.id_string} ({v.name}) has {_size(v)} voxels, the "
                            f"tomogram #{tomogram.id_string} has {_size(tomogram)}")
        if not np.allclose(v.data.step, tomogram.data.step, rtol=1e-4):
            raise UserError(f"{role}: #{v.id_string} ({v.name}) has voxel size "
                            f"{v.data.step[0]:g} Å, the tomogram {tomogram.data.step[0]:g} Å")


def _size(v) -> str:
    return "x".join(str(int(s)) for s in v.data.size)


def to_file(volume, folder: Path) -> Path:
    """An MRC file holding ``volume`` with its voxel size and origin, for the engine.

    The volume's own file is used when it is an unmodified full-resolution MRC, else the
    data are written into ``folder``.
    """
    from formats import Volume, write_volume

    path = getattr(volume.data, "path", "")
    if isinstance(path, str) and path.lower().endswith((".mrc", ".map", ".rec")) \
            and os.path.isfile(path) and volume.data.__class__.__name__ == "MRCGrid":
        return Path(path)
    out = Path(folder) / f"{_safe(volume.name)}.mrc"
    write_volume(out, Volume(array(volume), voxel_size=voxel_size(volume),
                             origin=tuple(float(o) for o in volume.data.origin)))
    return out


def add_volume(session, data: np.ndarray, like, name: str):
    """A new volume model with ``data`` ``[z, y, x]`` on the grid of volume ``like`` (same
    origin, voxel size, axes and scene position)."""
    from chimerax.map import volume_from_grid_data
    from chimerax.map_data import ArrayGridData

    grid = ArrayGridData(np.ascontiguousarray(data), origin=tuple(like.data.origin),
                         step=tuple(like.data.step), rotation=like.data.rotation, name=name)
    v = volume_from_grid_data(grid, session, open_model=False, show_dialog=False)
    v.position = like.scene_position
    session.models.add([v])
    return v


def scratch_dir(prefix: str) -> Path:
    """A new temporary folder for engine inputs and outputs."""
    return Path(tempfile.mkdtemp(prefix=f"cryovis-{prefix}-"))


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "volume"
