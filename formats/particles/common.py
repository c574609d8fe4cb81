"""Helpers shared by the particle-format modules: names, ids, binning, option parsing.

Vocabulary (see formats/README in shared/): the *file pixel* is the unit a format stores
positions in; ``binning`` is (table voxel size) / (file pixel size), so reading a RELION-4
file (unbinned tilt-series px) with ``binning=4`` gives positions in voxels of the 4x
binned tomogram, and writing with ``binning=4`` multiplies voxel positions by 4.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from ..errors import FormatError, PathLike
from .table import CORE, MATRIX, POSITION, POSITION_ANGST

_INT_TEXT = re.compile(r"^[+-]?[1-9][0-9]*$|^0$")


def tomo_name_from_path(value: str) -> str:
    """Tomogram name from a micrograph/tomogram path: base name without extension.

    ``/data/rec/01006_10.73Apx.mrc`` -> ``01006_10.73Apx``; ``021.tomostar`` -> ``021``;
    RELION's ``file.st:mrc`` type suffix is dropped first. Leading zeros are kept.
    """
    text = str(value).strip()
    text = re.sub(r":[A-Za-z0-9]+$", "", text)
    base = PurePosixPath(text.replace("\\", "/")).name
    stem, dot, _ext = base.rpartition(".")
    return stem if dot and stem else base


def map_unique(values, fn) -> np.ndarray:
    """``fn`` applied to each distinct value only, spread back to every row (object array)."""
    series = values if isinstance(values, pd.Series) else pd.Series(values, dtype=object)
    codes, uniques = pd.factorize(series, use_na_sentinel=False)
    return np.array([fn(u) for u in uniques] + [None], dtype=object)[codes]


def positive_or_none(value: Any, what: str, path: PathLike | None) -> float | None:
    """``value`` as a positive float, None when None; FormatError otherwise."""
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise FormatError(path, f"{what} must be a number, got {value!r}") from None
    if not (np.isfinite(v) and v > 0):
        raise FormatError(path, f"{what} must be positive, got {value!r}")
    return v


def parse_size_xyz(value: Any, path: PathLike | None) -> tuple[float, float, float] | None:
    """A tomogram size given as ``"XxYxZ"`` or a 3-sequence -> (x, y, z) floats."""
    if value is None:
        return None
    parts = re.split(r"[x,\s]+", value.strip()) if isinstance(value, str) else list(value)
    try:
        size = tuple(float(v) for v in parts)
    except (TypeError, ValueError):
        size = ()
    if len(size) != 3 or not all(np.isfinite(s) and s > 0 for s in size):
        raise FormatError(path, f"tomogram size must be XxYxZ positive numbers, got {value!r}")
    return size  # type: ignore[return-value]


def apply_binning(table: pd.DataFrame, binning: float | None) -> pd.DataFrame:
    """Express positions in voxels ``binning`` times larger than the file's pixels (in place)."""
    if binning is None or binning == 1:
        return table
    for c in POSITION:
        table[c] = table[c] / binning
    table["voxel_size"] = table["voxel_size"] * binning
    return table


def recompute_angst(table: pd.DataFrame) -> pd.DataFrame:
    """Refresh x_angst.. from x.. and voxel_size (in place)."""
    for c, a in zip(POSITION, POSITION_ANGST):
        table[a] = table[c] * table["voxel_size"]
    return table


def file_positions(table: pd.DataFrame, binning: float | None) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) positions in file pixels and (N,) file pixel size (Å, NaN unknown)."""
    b = 1.0 if binning is None else float(binning)
    xyz = table[POSITION].to_numpy(dtype=float) * b
    return xyz, table["voxel_size"].to_numpy(dtype=float) / b


def ids_for_names(names: Sequence[str] | pd.Series) -> tuple[np.ndarray, dict[int, str], bool]:
    """Integer ids for names, for formats that store a number (Dynamo, motl).

    Names that are canonical integers (``"7"``, not ``"007"``) keep their value; otherwise
    every distinct name gets 1, 2, ... in order of first appearance.

    Returns:
        (ids, {id: name}, names_are_ids)
    """
    series = names if isinstance(names, pd.Series) else pd.Series(names, dtype=object)
    codes, uniques = pd.factorize(series, use_na_sentinel=False)
    labels = ["" if pd.isna(u) else str(u) for u in uniques]
    if labels and all(_INT_TEXT.match(u) for u in labels):
        values = np.array([int(u) for u in labels], dtype=np.int64)
        return values[codes], {int(u): u for u in labels}, True
    return codes.astype(np.int64) + 1, {i + 1: n for i, n in enumerate(labels)}, False


def extra_columns(table: pd.DataFrame, prefix: str | None = None,
                  exclude: Sequence[str] = ()) -> list[str]:
    """Columns carried through (not canonical), optionally only those starting with ``prefix``."""
    skip = set(CORE) | set(MATRIX) | set(exclude)
    return [c for c in table.columns
            if c not in skip and (prefix is None or str(c).startswith(prefix))]


def class_ids(classes: pd.Series, numbering: Mapping[str, int] | None = None,
              path: PathLike = "") -> tuple[np.ndarray, dict[int, str], bool]:
    """Integer class numbers for formats that store one (0 for a particle without a class).

    ``numbering`` (``{name: number >= 1}``) fixes the numbers, e.g. a model's class order so
    that files of several tomograms agree; without it names are numbered as ``ids_for_names``
    does. FormatError (naming ``path``) for a class the numbering lacks.

    Returns:
        (numbers, {number: name}, names_are_numbers), as ``ids_for_names``.
    """
    named = classes.notna().to_numpy()
    numbers = np.zeros(len(classes), dtype=np.int64)
    if not named.any():
        return numbers, {}, True
    names = classes[named].astype(str)
    if numbering is None:
        numbers[named], table, exact = ids_for_names(names)
        return numbers, table, exact
    missing = sorted(set(names) - set(numbering))
    if missing:
        raise FormatError(path, f"class(es) {', '.join(missing)} have no number in "
                                "class_numbers")
    if any(int(n) < 1 for n in numbering.values()):
        raise FormatError(path, "class_numbers must be >= 1 (0 means no class)")
    numbers[named] = [int(numbering[n]) for n in names]
    used = {int(numbering[n]): n for n in set(names)}
    return numbers, used, all(str(k) == v for k, v in used.items())


def single_value(values: np.ndarray, what: str, path: PathLike) -> float:
    """The one finite value of ``values`` (NaN if none); FormatError if they differ."""
    finite = np.unique(np.round(values[np.isfinite(values)], 9))
    if len(finite) > 1:
        raise FormatError(path, f"this format stores one {what} per file; the particles have "
                                f"{len(finite)} ({', '.join(f'{v:g}' for v in finite[:5])})")
    return float(finite[0]) if len(finite) else float("nan")


def single_tomogram(table: pd.DataFrame, path: PathLike, what: str) -> str:
    """The one tomogram name of ``table`` ("" if unnamed); FormatError if there are several.

    For formats whose file belongs to one tomogram (IMOD, crYOLO, EMAN2, copick).
    """
    names = [n for n in pd.unique(table["tomo_name"].fillna("").astype(str))]
    if len(names) > 1:
        raise FormatError(path, f"{what} holds one tomogram; the particles come from "
                                f"{len(names)} ({', '.join(names[:4])}): select one with "
                                "--tomo-name (tomo_name)")
    return names[0] if names else ""


def load_json(path: Path) -> Any:
    """Parse a JSON particle file; FormatError names the file and the parse problem."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(path, f"cannot read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise FormatError(path, f"not valid JSON ({exc.msg} at line {exc.lineno})") from None


def read_index_map(path: PathLike) -> dict[int, str]:
    """``{index: text}`` from an index map: Dynamo's table map (``.doc``, ``index path``)
    or a class map (``number name``); ``#`` lines are comments."""
    p = Path(path)
    mapping: dict[int, str] = {}
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(p, f"cannot read index map ({exc})") from None
    for k, line in enumerate(text.splitlines(), 1):
        parts = line.split(None, 1)
        if not parts or parts[0].startswith("#"):
            continue
        try:
            index = int(parts[0])
        except ValueError:
            raise FormatError(p, f"line {k}: index '{parts[0]}' is not an integer") from None
        if len(parts) < 2:
            raise FormatError(p, f"line {k}: index {index} has nothing after it")
        mapping[index] = parts[1].strip()
    return mapping


def index_map_text(mapping: dict[int, str]) -> str:
    """The text of an index map (``index value`` lines)."""
    return "".join(f"{i} {value}\n" for i, value in mapping.items())


def class_map_path(table_path: PathLike) -> Path:
    """Where the class names of a table storing class numbers live (Dynamo, motl):
    ``<stem>_classes.doc`` beside it, lines ``number name``."""
    p = Path(table_path)
    return p.with_name(f"{p.stem}_classes.doc")


def class_names(table_path: PathLike, numbers: np.ndarray) -> np.ndarray:
    """Class labels for the class ``numbers`` of a table: names from its class map where
    there is one, else the numbers as text."""
    numbers = np.asarray(numbers).astype(np.int64)
    class_map = class_map_path(table_path)
    names = read_index_map(class_map) if class_map.exists() else {}
    return map_unique(numbers, lambda c: names.get(int(c), str(int(c))))
