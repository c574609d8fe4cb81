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

from .atomic import atomic_path
from .errors import FormatError, PathLike
from .particle_common import load_json, positive_or_none, recompute_angst, single_tomogram
from .particle_io import ParticleFormat, register
from .particles import make_table, orientations


def is_copick(path: PathLike) -> bool:
    """True when ``path`` is a JSON object with copick's ``points`` and object name."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return b'"points"' in head or b'"pickable_object_name"' in head


def read_copick(path: PathLike, voxel_size: float | None = None, **_: Any) -> pd.DataFrame:
    """Read a copick picks JSON.

    Positions are Å; they become voxels of ``voxel_size`` (the option), else of the
    file's ``voxel_spacing``, else of 1 Å (the table then simply holds Å).
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
        or positive_or_none(doc.get("voxel_spacing"), "voxel_spacing", p) or 1.0
    run = doc.get("run_name")
    obj = doc.get("pickable_object_name")
    table = make_table(loc / vs, vs, mats, "" if run is None else str(run),
                       [None if obj is None else str(obj)] * n, scores,
                       pd.DataFrame({"copick_instance_id": instance}))
    table.attrs["format"] = "copick"
    return recompute_angst(table)


def write_copick(path: PathLike, table: pd.DataFrame, overwrite: bool = False,
                 object_name: str | None = None, run_name: str | None = None,
                 user_id: str = "cryovis", session_id: str = "0", **_: Any) -> None:
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


read_copick.sniff = is_copick  # type: ignore[attr-defined]
register(ParticleFormat("copick", (".json",), read_copick, write_copick,
                        "copick picks JSON (Å from the corner, 4x4 transformation)"))
