"""copick picks files (JSON; the layout of copick's pydantic ``CopickPicksFile``).

``{"pickable_object_name", "user_id", "session_id", "run_name", "voxel_spacing",
"unit": "angstrom", "trust_orientation", "points": [{"location": {"x","y","z"} (Å from the
tomogram corner), "transformation_": 4x4 (rotation = orientation R, particle ->
tomogram; [:3, 3] an extra translation in Å that copick adds to the location),
"instance_id", "score"}]}``.

One file holds one object type of one run, so the writer refuses tables that mix
tomograms or classes unless ``object_name``/``run_name`` say what to call them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..atomic import atomic_path
from ..errors import FormatError, PathLike, VoxelSizeUnknown, warn
from .common import load_json, positive_or_none, recompute_angst, single_tomogram
from .registry import ParticleFormat, register
from .table import make_table, orientations


def is_copick(path: PathLike) -> bool:
    """True when ``path`` is a JSON object with copick's ``points`` and object name."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return b'"points"' in head or b'"pickable_object_name"' in head


def _run_voxel_spacing(path: Path) -> float:
    """The voxel spacing of the copick run a picks file belongs to, for files whose
    ``voxel_spacing`` is null (copick's own writer leaves it so).

    copick keeps picks in ``ExperimentRuns/<run>/Picks/`` and tomograms in
    ``ExperimentRuns/<run>/VoxelSpacing<Å>/<type>.zarr``: one spacing with a tomogram is
    the answer; none or several is an error asking for ``--voxel-size``.
    """
    run = path.parent.parent if path.parent.name == "Picks" else None
    spacings: dict[float, str] = {}
    for folder in sorted(run.glob("VoxelSpacing*")) if run is not None else []:
        try:
            value = float(folder.name.removeprefix("VoxelSpacing"))
        except ValueError:
            continue
        if value > 0 and any(folder.glob("*.zarr")):
            spacings[value] = folder.name
    if len(spacings) == 1:
        value = next(iter(spacings))
        warn(path, f"voxel_spacing is null: using {value:g} Å, the spacing of the run's "
                   f"tomogram ({spacings[value]})")
        return value
    found = (f"the run has tomograms at {', '.join(f'{v:g}' for v in spacings)} Å"
             if spacings else "no tomogram of its copick run was found beside it")
    raise VoxelSizeUnknown(path, f"voxel_spacing is null and {found}: pass the voxel size of the "
                            "picks' tomogram (--voxel-size A)")


def read_copick(path: PathLike, voxel_size: float | None = None) -> pd.DataFrame:
    """Read a copick picks JSON.

    Positions are Å; they become voxels of ``voxel_size`` (the option), else of the
    file's ``voxel_spacing``, else of the one voxel spacing of the run's tomograms (see
    ``_run_voxel_spacing``); without any of them the file is refused.
    """
    p = Path(path)
    doc = load_json(p)
    if not isinstance(doc, dict) or not isinstance(doc.get("points"), list):
        raise FormatError(p, "not a copick picks file (no 'points' list)")
    unit = str(doc.get("unit", "angstrom")).lower()
    if unit not in ("angstrom", "a", "å"):
        raise FormatError(p, f"unit '{unit}' is not supported (copick uses angstrom)")
    points = doc["points"]
    n = len(points)
    loc = np.zeros((n, 3))
    mats = np.broadcast_to(np.eye(3), (n, 3, 3)).copy()
    scores = np.full(n, np.nan)
    instance = np.zeros(n, dtype=np.int64)
    for i, pt in enumerate(points):
        try:
            loc[i] = [float(pt["location"][k]) for k in ("x", "y", "z")]
            t = pt.get("transformation_")
            if t is not None:
                t = np.asarray(t, dtype=float)
                if t.shape != (4, 4):
                    raise ValueError("transformation_ is not 4x4")
                mats[i] = t[:3, :3]
                loc[i] += t[:3, 3]
            scores[i] = float(pt.get("score", 1.0))
            instance[i] = int(pt.get("instance_id", 0))
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(p, f"point {i + 1}: {exc}") from None
    if not np.isfinite(loc).all():
        raise FormatError(p, "non-finite point locations")
    vs = positive_or_none(voxel_size, "voxel size", p) \
        or positive_or_none(doc.get("voxel_spacing"), "voxel_spacing", p) \
        or _run_voxel_spacing(p)
    run = doc.get("run_name")
    obj = doc.get("pickable_object_name")
    table = make_table(loc / vs, vs, mats, "" if run is None else str(run),
                       [None if obj is None else str(obj)] * n, scores,
                       pd.DataFrame({"copick_instance_id": instance}))
    table.attrs["format"] = "copick"
    return recompute_angst(table)


def write_copick(path: PathLike, table: pd.DataFrame, overwrite: bool = False,
                 object_name: str | None = None, run_name: str | None = None,
                 user_id: str = "cryovis", session_id: str = "0") -> None:
    """Write a copick picks JSON (locations in Å, ``transformation_`` = orientation)."""
    p = Path(path)
    vs = table["voxel_size"].to_numpy(dtype=float)
    if len(vs) and not np.isfinite(vs).all():
        raise FormatError(p, "copick stores Å: the voxel size is unknown, pass voxel_size "
                             "(--voxel-size)")
    obj = object_name or _only(table["class"], "class", p) or "particle"
    run = run_name or single_tomogram(table, p, "a copick picks file")
    angst = table[["x", "y", "z"]].to_numpy(dtype=float) * vs[:, None]
    mats = orientations(table)
    scores = table["score"].to_numpy(dtype=float)
    inst = table["copick_instance_id"].to_numpy() if "copick_instance_id" in table.columns \
        else np.zeros(len(table), dtype=np.int64)
    points = []
    for i in range(len(table)):
        t = np.eye(4)
        t[:3, :3] = mats[i]
        points.append({"location": {"x": float(angst[i, 0]), "y": float(angst[i, 1]),
                                    "z": float(angst[i, 2])},
                       "transformation_": t.tolist(),
                       "instance_id": int(inst[i]),
                       "score": float(scores[i]) if np.isfinite(scores[i]) else 1.0})
    spacing = np.unique(vs)
    doc = {"pickable_object_name": obj, "user_id": user_id, "session_id": session_id,
           "run_name": run or None,
           "voxel_spacing": float(spacing[0]) if len(spacing) == 1 else None,
           "unit": "angstrom", "trust_orientation": True, "points": points}
    with atomic_path(p, overwrite) as tmp:
        tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")


def _only(values: pd.Series, what: str, path: Path) -> str | None:
    uniq = [v for v in pd.unique(values.dropna().astype(str)) if v != ""]
    if len(uniq) > 1:
        raise FormatError(path, f"a copick picks file holds one {what}; the particles have "
                                f"{len(uniq)} ({', '.join(uniq[:4])}): name the object "
                                "(--object-name / object_name)")
    return uniq[0] if uniq else None


register(ParticleFormat("copick", (".json",), read_copick, write_copick,
                        "copick picks JSON (Å from the corner, 4x4 transformation)",
                        sniff=is_copick))


def describe_angst(path: PathLike) -> dict[str, Any]:
    """``cryovis info`` facts of a copick picks file whose voxel size is unknown: the
    positions in Å (copick's own unit) and a note on how to get voxels."""
    p = Path(path)
    doc = load_json(p)
    points = doc.get("points") if isinstance(doc, dict) else None
    if not isinstance(points, list):
        raise FormatError(p, "not a copick picks file (no 'points' list)")
    try:
        loc = np.array([[float(pt["location"][k]) for k in ("x", "y", "z")] for pt in points])
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(p, f"bad point location ({exc})") from None
    return {"kind": "particles", "format": "copick", "count": len(points),
            "tomograms": {str(doc.get("run_name") or "(none)"): len(points)},
            "classes": {str(doc.get("pickable_object_name")): len(points)},
            "voxel_sizes_angst": None,
            "position_min_xyz_angst": [round(float(v), 3) for v in loc.min(axis=0)]
            if len(loc) else None,
            "position_max_xyz_angst": [round(float(v), 3) for v in loc.max(axis=0)]
            if len(loc) else None,
            "oriented": any(pt.get("transformation_") is not None for pt in points),
            "note": "voxel_spacing is null: voxel positions need the voxel size "
                    "(cryovis info FILE --voxel-size A)"}
