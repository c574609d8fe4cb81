"""RELION per-tilt-series STAR files (one loop of tilt images per tilt series)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..facts import Summary, number, value_range


def describe_tilt_series_star(blocks: dict) -> Summary:
    """``cryovis info`` facts of a RELION tilt-series STAR: per block its tilts, tilt range,
    maximum pre-exposure (e/Å²) and whether it carries an alignment."""
    series = []
    for name, block in blocks.items():
        if not isinstance(block, pd.DataFrame):
            continue
        facts: dict[str, Any] = {"name": name or "(unnamed)", "tilts": len(block)}
        facts["tilt_range_deg"] = value_range(block.get("rlnTomoNominalStageTiltAngle", []))
        dose = value_range(block.get("rlnMicrographPreExposure", []))
        facts["max_pre_exposure_e_per_a2"] = number(dose[1]) if dose else None
        facts["aligned"] = bool({"rlnTomoXTilt", "rlnTomoProjX"} & set(block.columns))
        series.append(facts)
    return {"kind": "tilt_series", "format": "RELION tilt-series STAR",  # type: ignore
            "tilt_series": series}
