"""Write a simulated tomogram and its ground truth (file names are a contract).

Per tomogram ``{name}``: ``{name}.mrc`` (tomogram), ``{name}_labels.mrc`` (int16),
``{name}_instances.mrc`` (int16, or float32 beyond 32767 particles: MRC has no int32 mode),
``{name}_membranes.mrc`` (uint8 data stored as int8), ``{name}_particles.csv``,
``{name}_particles.star`` (RELION 5, centred Å) and ``{name}.json``;
folder-wide ``tomograms.star`` (RELION 5) and ``summary.json`` are maintained by
``write_collection_files``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from formats import FormatError, Volume, atomic_path, check_writable, write_particles, write_volume


def _json_default(obj: Any):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(path: Path, data: Any, overwrite: bool) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path, overwrite) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")


def write_simulation(sim, out_dir, name: str = "tomo_000", overwrite: bool = False
                     ) -> dict[str, str]:
    """Write ``sim`` (a SimulationResult) into ``out_dir`` as ``{name}*``; returns the paths.

    All MRC files carry the voxel size (Å). Nothing is replaced unless ``overwrite``; every
    target is checked before the first file is written. ``{name}.json`` is written last, so
    its presence marks a complete tomogram (caches rely on this).
    """
    out = Path(out_dir)
    if not out.is_dir():
        raise FormatError(out, "output directory does not exist")
    vs = float(sim.tomogram.voxel_size)
    instances = sim.instances
    instances = (instances.astype(np.int16) if instances.max(initial=0) <= np.iinfo(np.int16).max
                 else instances.astype(np.float32))
    volumes = {
        "tomogram": (f"{name}.mrc", sim.tomogram.data.astype(np.float32)),
        "labels": (f"{name}_labels.mrc", sim.labels.astype(np.int16)),
        "instances": (f"{name}_instances.mrc", instances),
        "membranes": (f"{name}_membranes.mrc", sim.membranes.astype(np.int8)),
    }
    for target in expected_files(out, name):
        check_writable(target, overwrite)

    paths: dict[str, str] = {}
    for key, (fname, data) in volumes.items():
        write_volume(out / fname, Volume(data, voxel_size=vs), overwrite=overwrite)
        paths[key] = str(out / fname)
    table = sim.particles.copy()
    table["tomo_name"] = pd.Series([name] * len(table), dtype=object)
    write_particles(out / f"{name}_particles.csv", table, format="csv", overwrite=overwrite)
    paths["particles_csv"] = str(out / f"{name}_particles.csv")
    size = sim.tomogram.shape_xyz
    write_particles(out / f"{name}_particles.star", table, format="relion5",
                    overwrite=overwrite, tomo_size_xyz="x".join(str(s) for s in size),
                    tilt_series_pixel_size=vs)
    paths["particles_star"] = str(out / f"{name}_particles.star")
    meta = dict(sim.metadata)
    meta["name"] = name
    meta["files"] = {k: Path(v).name for k, v in paths.items()}
    write_json(out / f"{name}.json", meta, overwrite)
    paths["metadata"] = str(out / f"{name}.json")
    return paths


def expected_files(out_dir, name: str) -> list[Path]:
    """The per-tomogram files ``write_simulation`` writes for ``name`` in ``out_dir``."""
    out = Path(out_dir)
    files = [f"{name}.mrc", f"{name}_labels.mrc", f"{name}_instances.mrc",
             f"{name}_membranes.mrc", f"{name}_particles.csv", f"{name}_particles.star",
             f"{name}.json"]
    return [out / f for f in files]


def write_tomograms_star(path: Path, records: list[dict], overwrite: bool) -> None:
    """RELION 5 ``tomograms.star``: one row per tomogram (sizes in its own, unbinned, voxels).

    Each record needs ``name``, ``voxel_size`` (Å), ``size_xyz``, ``voltage_kv``, ``cs_mm``,
    ``amplitude_contrast``.
    """
    from formats import write_star

    table = pd.DataFrame({
        "rlnTomoName": [r["name"] for r in records],
        "rlnVoltage": [float(r["voltage_kv"]) for r in records],
        "rlnSphericalAberration": [float(r["cs_mm"]) for r in records],
        "rlnAmplitudeContrast": [float(r["amplitude_contrast"]) for r in records],
        "rlnMicrographOriginalPixelSize": [float(r["voxel_size"]) for r in records],
        "rlnTomoHand": [-1] * len(records),
        "rlnOpticsGroupName": [f"optics_{r['name']}" for r in records],
        "rlnTomoTiltSeriesPixelSize": [float(r["voxel_size"]) for r in records],
        "rlnTomoTomogramBinning": [1.0] * len(records),
        "rlnTomoSizeX": [int(r["size_xyz"][0]) for r in records],
        "rlnTomoSizeY": [int(r["size_xyz"][1]) for r in records],
        "rlnTomoSizeZ": [int(r["size_xyz"][2]) for r in records],
        "rlnTomoReconstructedTomogram": [f"{r['name']}.mrc" for r in records],
    })
    write_star(path, {"global": table}, overwrite=overwrite, version="50001")


def write_collection_files(out_dir, records: list[dict], size_xyz, base_seed: int,
                           overwrite: bool = True) -> dict:
    """Merge ``records`` into the folder's ``summary.json`` and rewrite ``tomograms.star``.

    Records of tomograms already listed (same ``name``) are replaced, others kept, so the
    two files always describe every simulated tomogram in the folder. Returns the summary.
    """
    out = Path(out_dir)
    summary_path = out / "summary.json"
    previous: list[dict] = []
    if summary_path.exists():
        try:
            previous = json.loads(summary_path.read_text()).get("tomograms", [])
        except (json.JSONDecodeError, AttributeError):
            raise FormatError(summary_path, "not a cryovis simulation summary") from None
    new_names = {r["name"] for r in records}
    merged = [r for r in previous if r.get("name") not in new_names] + list(records)
    merged.sort(key=lambda r: r["name"])
    summary = {"generator": "cryovis simulate", "base_seed": int(base_seed),
               "size_xyz": [int(s) for s in size_xyz], "n_tomograms": len(merged),
               "tomograms": merged, "tomograms_star": "tomograms.star"}
    write_tomograms_star(out / "tomograms.star", merged, overwrite)
    write_json(summary_path, summary, overwrite)
    return summary
