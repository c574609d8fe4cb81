"""PyTom particle lists (XML).

``<ParticleList><Particle Filename=...>`` with ``<Rotation Z1=phi Z2=psi X=theta
Paradigm="ZXZ"/>`` (TOM convention: R = zxz(phi, theta, psi) extrinsic, not inverted),
``<Shift X Y Z/>`` (px, added), ``<PickPosition X Y Z Origin="tomogram file"
Binning=b/>`` (px of that tomogram; PyTom is Python, so 0-based), ``<Score Value>`` and
``<Class Name>``. The canonical position is PickPosition + Shift.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import atomic_path
from ..errors import FormatError, PathLike
from . import euler
from .common import (
    apply_binning,
    file_positions,
    positive_or_none,
    recompute_angst,
    tomo_name_from_path,
)
from .registry import ParticleFormat, register
from .table import make_table, orientations


def _floats(elem: ET.Element | None, keys: tuple[str, ...], path: Path, what: str,
            row: int) -> list[float]:
    if elem is None:
        return [0.0] * len(keys)
    try:
        return [float(elem.get(k, "0")) for k in keys]
    except ValueError:
        raise FormatError(path, f"particle {row}: non-numeric {what} attribute") from None


def read_pytom(path: PathLike, voxel_size: float | None = None,
               binning: float | None = None) -> pd.DataFrame:
    """Read a PyTom particle list; ``voxel_size`` (Å) is not stored in the file."""
    p = Path(path)
    try:
        root = ET.parse(p).getroot()
    except ET.ParseError as exc:
        raise FormatError(p, f"not well-formed XML ({exc})") from None
    except OSError as exc:
        raise FormatError(p, f"cannot read ({exc.strerror or exc})") from None
    if root.tag != "ParticleList":
        raise FormatError(p, f"root element is <{root.tag}>, not a PyTom <ParticleList>")
    rows = []
    for i, part in enumerate(root.iter("Particle"), 1):
        rot = part.find("Rotation")
        paradigm = (rot.get("Paradigm", "ZXZ") if rot is not None else "ZXZ").upper()
        if paradigm != "ZXZ":
            raise FormatError(p, f"particle {i}: rotation paradigm {paradigm} (only ZXZ)")
        pick = part.find("PickPosition")
        if pick is None:
            raise FormatError(p, f"particle {i} has no <PickPosition>")
        score = part.find("Score")
        cls = part.find("Class")
        rows.append((
            *_floats(pick, ("X", "Y", "Z"), p, "PickPosition", i),
            *_floats(part.find("Shift"), ("X", "Y", "Z"), p, "Shift", i),
            *_floats(rot, ("Z1", "Z2", "X"), p, "Rotation", i),
            float(score.get("Value", "nan")) if score is not None else np.nan,
            cls.get("Name") if cls is not None else None,
            tomo_name_from_path(pick.get("Origin", "")) if pick.get("Origin") else "",
            part.get("Filename", ""),
            pick.get("Binning", "1"),
        ))
    if not rows:
        raise FormatError(p, "the particle list holds no <Particle>")
    arr = np.array([r[:10] for r in rows], dtype=float)
    xyz = arr[:, 0:3] + arr[:, 3:6]
    matrices = euler.tom_to_matrix(arr[:, 6:9])
    extra = pd.DataFrame({"pytom_filename": [r[12] for r in rows],
                          "pytom_binning": [r[13] for r in rows]})
    vs = positive_or_none(voxel_size, "voxel size", p)
    table = make_table(xyz, vs, matrices, [r[11] for r in rows], [r[10] for r in rows],
                       arr[:, 9], extra)
    table.attrs["format"] = "pytom"
    return recompute_angst(apply_binning(table, positive_or_none(binning, "binning", p)))


def write_pytom(path: PathLike, table: pd.DataFrame, overwrite: bool = False,
                binning: float | None = None) -> None:
    """Write a PyTom particle list (positions in PickPosition, zero shifts)."""
    p = Path(path)
    if len(table) == 0:
        raise FormatError(p, "no particles to write (PyTom lists need at least one)")
    xyz, _ = file_positions(table, positive_or_none(binning, "binning", p))
    angles = euler.matrix_to_tom(orientations(table))
    root = ET.Element("ParticleList")
    names = table["tomo_name"].fillna("").astype(str).to_numpy()
    classes = table["class"].to_numpy()
    scores = table["score"].to_numpy(dtype=float)
    files = table["pytom_filename"].to_numpy() if "pytom_filename" in table.columns else None
    for i in range(len(table)):
        part = ET.SubElement(root, "Particle",
                             Filename=str(files[i]) if files is not None
                             else f"particle_{i}.em")
        ET.SubElement(part, "Rotation", Z1=repr(float(angles[i, 0])),
                      Z2=repr(float(angles[i, 1])), X=repr(float(angles[i, 2])),
                      Paradigm="ZXZ")
        ET.SubElement(part, "Shift", X="0.0", Y="0.0", Z="0.0")
        ET.SubElement(part, "PickPosition", X=repr(float(xyz[i, 0])), Y=repr(float(xyz[i, 1])),
                      Z=repr(float(xyz[i, 2])),
                      Origin=f"{names[i]}.mrc" if names[i] else "", Binning="1")
        ET.SubElement(part, "Score", Type="FLCFScore",
                      Value=repr(float(scores[i])) if np.isfinite(scores[i]) else "0.0")
        if classes[i] is not None and not (isinstance(classes[i], float)
                                           and np.isnan(classes[i])):
            ET.SubElement(part, "Class", Name=str(classes[i]))
    ET.indent(root)
    with atomic_path(p, overwrite) as tmp:
        ET.ElementTree(root).write(tmp, encoding="unicode", xml_declaration=False)


register(ParticleFormat("pytom", (".xml",), read_pytom, write_pytom,
                        "PyTom particle list XML (px, TOM angles)"))
