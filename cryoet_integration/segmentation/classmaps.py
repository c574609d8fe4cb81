"""Where the K per-class maps of one output live, and how to find them again.

A K-class result ``S.mrc`` (from ``cryovis pseudolabel`` or ``cryovis segment``) is the
family ``<stem>_<class>.mrc`` beside ``S.mrc`` plus a small manifest ``<stem>_classes.json``
recording the class order and the stroke values 1..K, so that training, rendering and
scoring read the maps back in the order they were painted. A family without a manifest
(per-class maps from another tool) is read in sorted name order with values 1..K.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from formats import atomic_path, check_writable

from ..errors import CryovisError

MANIFEST_FORMAT = "cryovis-class-maps"


def class_map_paths(out: str | Path, classes: list[str]) -> dict[str, Path]:
    """Where each class map goes: ``out`` for one class, ``<stem>_<class>.mrc`` for K."""
    out = Path(out)
    if len(classes) == 1:
        return {classes[0]: out}
    suffix = out.suffix or ".mrc"
    return {c: out.with_name(f"{out.stem}_{c}{suffix}") for c in classes}


def manifest_path(out: str | Path) -> Path:
    """The manifest ``<stem>_classes.json`` of the K-class output ``out``."""
    out = Path(out)
    return out.with_name(f"{out.stem}_classes.json")


def write_manifest(out: str | Path, classes: list[str], values: list[int],
                   overwrite: bool = False) -> Path:
    """Record the class order and stroke values of the family written for ``out``."""
    path = manifest_path(out)
    check_writable(path, overwrite)
    files = class_map_paths(out, classes)
    text = json.dumps({"format": MANIFEST_FORMAT, "classes": list(classes),
                       "values": [int(v) for v in values],
                       "files": [files[c].name for c in classes]}, indent=2) + "\n"
    with atomic_path(path, overwrite) as tmp:
        tmp.write_text(text)
    return path


@dataclass
class ClassMaps:
    """The per-class maps of one K-class output: ``names``, stroke ``values`` and ``paths``
    in the painted order."""

    names: list[str]
    values: list[int]
    paths: list[Path]


def find_class_maps(out: str | Path) -> ClassMaps | None:
    """The family of the K-class output ``out`` (``S.mrc`` naming ``S_<class>.mrc``), or None
    when ``out`` is a single map (it exists and there is no manifest). CryovisError for a manifest
    that is not ours or names missing files, and for a path that is neither."""
    out = Path(out)
    man = manifest_path(out)
    if man.exists():
        try:
            data = json.loads(man.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CryovisError(f"{man}: unreadable class-map manifest ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise CryovisError(f"{man}: not a cryovis class-map manifest")
        paths = [man.with_name(f) for f in data["files"]]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise CryovisError(f"{man}: class map(s) missing: {', '.join(missing)}")
        return ClassMaps(list(data["classes"]), [int(v) for v in data["values"]], paths)
    if out.exists():
        return None
    suffix = out.suffix or ".mrc"
    family = sorted(out.parent.glob(f"{out.stem}_*{suffix}")) if out.parent.is_dir() else []
    if len(family) < 2:
        raise CryovisError(f"{out}: no such file, and no class maps {out.stem}_<class>{suffix} "
                           "beside it")
    names = [p.stem[len(out.stem) + 1:] for p in family]
    return ClassMaps(names, list(range(1, len(names) + 1)), family)
