"""ChimeraX volume models <-> arrays and files of the engine (via ``formats``)."""

from __future__ import annotations

import os
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


def add_volume(session, data: np.ndarray, like, name: str, parent=None):
    """A new volume model with ``data`` ``[z, y, x]`` on the grid of volume ``like`` (same
    origin, voxel size, axes and scene position), top-level or a child of ``parent`` (a
    model placed at the scene's origin)."""
    from chimerax.map import volume_from_grid_data
    from chimerax.map_data import ArrayGridData

    grid = ArrayGridData(np.ascontiguousarray(data), origin=tuple(like.data.origin),
                         step=tuple(like.data.step), rotation=like.data.rotation, name=name)
    v = volume_from_grid_data(grid, session, open_model=False, show_dialog=False)
    v.position = like.scene_position
    session.models.add([v], parent=parent)
    return v


def read_class_maps(summary: dict, tomo) -> dict:
    """The class maps the engine's summary names (``outputs``: class -> MRC, in class order)
    as float32 arrays ``[z, y, x]``; EngineError unless each is on the tomogram's grid."""
    from formats import read_volume

    from .engine import EngineError

    outputs = summary.get("outputs") or {}
    if not outputs:
        raise EngineError("the engine reported no output maps")
    maps = {}
    for name, path in outputs.items():
        data = read_volume(path).data
        if tuple(data.shape[::-1]) != tuple(tomo.data.size):
            raise EngineError(f"{path}: shape {data.shape} differs from the tomogram's")
        maps[name] = data.astype("float32", copy=True)
    return maps


def add_class_maps(session, tomogram, maps: dict[str, np.ndarray], group_name: str) -> list:
    """The class maps ``maps`` (class name -> probabilities ``[z, y, x]`` on the tomogram's
    grid, in class order) as volumes named by their class under a new grouping model.

    Each gets its class colour and a surface at probability 0.5; a class named
    ``background`` is hidden and, as the engine's ``cryovis render`` does, left out of the
    tomogram's class maps (``tomogram.cryovis_classes``, what ``cryovis render`` draws
    when no classes are given). Returns the volumes in class order.
    """
    from chimerax.core.models import Model

    from .markers import class_colors

    colors = class_colors(list(maps))
    group = Model(group_name, session)
    session.models.add([group])
    created = []
    for name, data in maps.items():
        v = add_volume(session, data, tomogram, name, parent=group)
        v.set_parameters(surface_levels=[0.5],
                         surface_colors=[tuple(c / 255 for c in colors[name])])
        v.set_display_style("surface")
        v.display = not is_background(name)
        created.append(v)
    tomogram.cryovis_classes = [v for v, name in zip(created, maps) if not is_background(name)]
    return created


def is_background(class_name: str) -> bool:
    """True for the class the renderer leaves out (the engine's rule: named background)."""
    return class_name.lower() == "background"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "volume"
