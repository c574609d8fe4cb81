"""The typed summaries ``cryovis info`` reports, and the helpers that keep them one schema.

Every ``describe`` hook returns one of these dicts. The schema is the same for every file
of a kind: numbers are JSON numbers (never strings), an unknown value is ``None`` (JSON
null), lists hold one type. Lengths are Å, positions voxels unless the key says otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, TypedDict

import numpy as np
import pandas as pd


class Summary(TypedDict, total=False):
    """Keys of every summary."""

    path: str
    size_bytes: int
    kind: str  # volume, particles, tomograms, tilt_series, mdoc, cbox, ... (see docs)
    format: str
    warnings: list[str]


class BlockFacts(TypedDict, total=False):
    """One STAR block: a loop (rows, columns) or key/value pairs."""

    block: str
    type: str  # "loop" or "key/value"
    rows: int
    columns: list[str]
    keys: dict[str, Any]


class VolumeSummary(Summary, total=False):
    shape_xyz: list[int]
    dtype: str
    mrc_mode: int | None
    mrc_mode_name: str | None
    layout: str
    voxel_size_angst: float | None
    voxel_size_xyz_angst: list[float]
    physical_size_xyz_angst: list[float] | None
    origin_xyz_angst: list[float]
    stats_source: str
    min: float | None
    max: float | None
    mean: float | None
    non_finite_voxels: int


class ParticleSummary(Summary, total=False):
    format_description: str
    coordinates: str
    count: int
    tomograms: dict[str, int]
    classes: dict[str, int]
    voxel_sizes_angst: list[float] | None
    position_min_xyz_voxels: list[float]
    position_max_xyz_voxels: list[float]
    oriented: bool
    score_range: list[float] | None
    extra_columns: list[str]


class MdocSummary(Summary, total=False):
    mdoc_type: str  # "tilt series", "montage", "frames"
    tilts: int
    tilt_range_deg: list[float] | None
    median_tilt_step_deg: float | None
    pixel_size_angst: float | None
    dose_per_tilt_e_per_a2: float | None
    total_dose_e_per_a2: float | None
    voltage_kv: float | None
    tilt_axis_angle_deg: float | None


def number(value: Any) -> float | None:
    """``value`` as a finite float, or None (missing, NaN, text that is not a number)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        v = float(str(value).split()[0]) if isinstance(value, str) else float(value)
    except (TypeError, ValueError, IndexError):
        return None
    return v if math.isfinite(v) else None


def integer(value: Any) -> int | None:
    """``value`` as an int when it is a whole finite number, else None."""
    v = number(value)
    return int(v) if v is not None and v.is_integer() else None


def distinct_numbers(values: Iterable[Any], digits: int = 6) -> list[float]:
    """The distinct finite numbers of ``values``, sorted (rounded to ``digits``)."""
    out = {round(v, digits) for v in (number(x) for x in values) if v is not None}
    return sorted(out)


def value_range(values: Iterable[Any]) -> list[float] | None:
    """``[min, max]`` of the finite numbers of ``values``, None when there are none."""
    finite = [v for v in (number(x) for x in values) if v is not None]
    return [min(finite), max(finite)] if finite else None


def counts(values: pd.Series) -> dict[str, int]:
    """``{value: count}`` in order of first appearance (values as text)."""
    return {str(k): int(v) for k, v in values.value_counts(sort=False).items()}


def plain(value: Any) -> Any:
    """A JSON value for a STAR/mdoc scalar: numbers stay numbers, NaN is None."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return number(value)
    return None if value is None else str(value)


def block_facts(blocks: dict[str, Any]) -> list[BlockFacts]:
    """Facts of each block of a parsed STAR file (``formats.read_star`` result)."""
    facts: list[BlockFacts] = []
    for name, block in blocks.items():
        if isinstance(block, pd.DataFrame):
            facts.append({"block": f"data_{name}", "type": "loop", "rows": len(block),
                          "columns": [str(c) for c in block.columns]})
        else:
            facts.append({"block": f"data_{name}", "type": "key/value",
                          "keys": {str(k): plain(v) for k, v in dict(block).items()}})
    return facts
