"""copick projects: a configuration JSON naming the pickable objects and a filesystem root
of ``ExperimentRuns/<run>/VoxelSpacing<A>/<tomo_type>.zarr`` tomograms (OME-Zarr), picks
and segmentations, read through copick's own API (``pip install
"cryoet-integration[batch]"``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import FormatError, PathLike


def is_copick_project(path: PathLike) -> bool:
    """Whether ``path`` is a copick configuration file (JSON with ``pickable_objects`` and
    a ``config_type`` or an overlay root)."""
    p = Path(path)
    if p.suffix.lower() != ".json" or not p.is_file():
        return False
    try:
        with open(p, "rb") as fh:
            head = fh.read(65536)
        if b'"pickable_objects"' not in head:
            return False
        data = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and "pickable_objects" in data and (
        "config_type" in data or "overlay_root" in data)


def open_project(path: PathLike) -> Any:
    """The copick root of the configuration ``path`` (FormatError if copick cannot read it)."""
    try:
        import copick
    except ImportError:
        raise FormatError(path, 'reading a copick project needs copick: pip install '
                          '"cryoet-integration[batch]"') from None
    try:
        return copick.from_file(str(path))
    except Exception as exc:  # noqa: BLE001 - pydantic / fsspec errors of a bad config
        raise FormatError(path, f"not a readable copick configuration ({type(exc).__name__}"
                          f": {' '.join(str(exc).split())[:200]})") from None


def describe_copick_project(path: PathLike) -> dict[str, Any]:
    """``cryovis info`` facts of a copick project: objects, runs and, per run, its voxel
    spacings (Å) with tomogram types, and its picks and segmentations (user/session)."""
    root = open_project(path)
    runs = []
    for run in root.runs:
        runs.append({
            "name": run.name,
            "tomograms": {f"{vs.voxel_size:g}": sorted(t.tomo_type for t in vs.tomograms)
                          for vs in run.voxel_spacings},
            "picks": [f"{p.pickable_object_name} {p.user_id}/{p.session_id} "
                      f"({len(p.points or [])})" for p in run.picks],
            "segmentations": [f"{s.name} {s.user_id}/{s.session_id} at {s.voxel_size:g} Å"
                              for s in run.segmentations]})
    return {"kind": "copick project", "format": "copick",
            "objects": [{"name": o.name, "label": o.label, "is_particle": o.is_particle,
                         "radius_angst": o.radius} for o in root.pickable_objects],
            "n_runs": len(runs), "runs": runs}
