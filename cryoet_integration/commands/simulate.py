"""``cryovis simulate``: simulated tomograms with labels, instances, membranes and particles."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from ..errors import CryovisError, require_engine
from ..json_output import dumps
from .options import (
    CREATES_DIRS,
    add_json,
    add_threads,
    add_tilt_range,
    check_output,
    check_output_folder,
    json_file,
    size_arg,
    use_threads,
    write_json_result,
)
from .progress import Report

# Simulated boxes are at least 8 voxels along each axis.
SIZE_XYZ = size_arg("XxYxZ", minimum=8)


def _value_or_range(text: str) -> tuple[float, float]:
    """'A' (fixed) or 'A:B' (drawn uniformly per tomogram)."""
    try:
        parts = [float(p) for p in text.split(":")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or parts[0] > parts[-1]:
        raise argparse.ArgumentTypeError(f"expected a number or MIN:MAX, got '{text}'")
    return parts[0], parts[-1]


def register(subparsers) -> None:
    """Add the ``simulate`` subcommand."""
    p = subparsers.add_parser(
        "simulate", help="simulate tomograms with exact ground truth",
        description="Simulate cryo-ET tomograms (ice, membranes, particles, gold; tilt series "
                    "with CTF, dose, noise and misalignment; weighted back-projection) with "
                    "class labels, particle instances, membrane masks and particle lists. "
                    "Conditions are domain-randomised per tomogram unless --no-randomise; "
                    "options given as a number fix a condition, as MIN:MAX draw it uniformly.")
    p.add_argument("--out", required=True, type=Path,
                   help=f"output folder ({CREATES_DIRS}); tomograms already complete there "
                   "from the same options are kept, so an interrupted run resumes")
    p.add_argument("--n", type=int, default=1, help="number of tomograms (default 1)")
    p.add_argument("--size", type=SIZE_XYZ, default=(256, 256, 128), metavar="XxYxZ",
                   help="voxels (default 256x256x128)")
    p.add_argument("--seed", type=int, default=0,
                   help="base seed (default 0); tomogram i uses (seed, i)")
    p.add_argument("--force", action="store_true",
                   help="simulate again and replace existing tomograms")
    p.add_argument("--no-randomise", action="store_true",
                   help="fixed default conditions (10 Å, 3.5 µm, 100 e/Å², ±60°/3°)")
    p.add_argument("--prefix", default="tomo", help="file name prefix (default tomo)")
    p.add_argument("--voxel-size", type=_value_or_range, metavar="A[:B]", help="Å per voxel")
    p.add_argument("--defocus", type=_value_or_range, metavar="A[:B]", help="µm underfocus")
    p.add_argument("--dose", type=_value_or_range, metavar="A[:B]",
                   help="total dose over the tilt series, e/Å²")
    p.add_argument("--crowding", type=_value_or_range, metavar="A[:B]",
                   help="fraction of the ice volume filled by particles")
    add_tilt_range(p, "tilt range of the series, degrees")
    p.add_argument("--tilt-step", type=float, metavar="DEG", help="tilt step (degrees)")
    p.add_argument("--phase-flip", choices=("yes", "no"),
                   help="correct the CTF by phase flipping (default: randomised, or no)")
    add_threads(p)
    add_json(p, "the collection summary")
    p.set_defaults(func=run)


def _config_for(args, seed_i: int):
    import numpy as np

    from ..simulate import SimulationConfig
    from ..simulate.config import ANGST_PER_UM

    cfg = SimulationConfig() if args.no_randomise else SimulationConfig.randomised(seed_i)
    rng = np.random.default_rng(np.random.SeedSequence([seed_i, 0xA11]))
    changes = {}
    # option, field, factor from the option's unit to the field's
    for opt, field, unit in (("voxel_size", "voxel_size", 1.0),
                             ("defocus", "defocus_angst", ANGST_PER_UM),
                             ("dose", "dose_total", 1.0), ("crowding", "crowding", 1.0)):
        value = getattr(args, opt)
        if value is not None:
            drawn = float(rng.uniform(*value)) if value[0] < value[1] else value[0]
            changes[field] = drawn * unit
    if args.tilt_range is not None:
        changes["tilt_min_deg"], changes["tilt_max_deg"] = args.tilt_range
    if args.tilt_step is not None:
        changes["tilt_step_deg"] = args.tilt_step
    if args.phase_flip is not None:
        changes["phase_flip"] = args.phase_flip == "yes"
    cfg = dataclasses.replace(cfg, **changes)
    try:
        return cfg.validate()
    except ValueError as exc:
        raise CryovisError(str(exc)) from None


def run(args) -> int:
    """Simulate ``args.n`` tomograms into ``args.out``, skipping the complete ones."""
    require_engine("scipy")
    import numpy as np

    from ..simulate import simulate_tomogram, write_simulation
    from ..simulate.io import write_collection_files

    if args.n < 1:
        raise CryovisError(f"--n must be >= 1, got {args.n}")
    out = check_output_folder(args.out)
    if json_file(args):
        check_output(json_file(args), args.force, (".json",), "--json")
    report = Report("simulate")
    plan = []
    for i in range(args.n):
        seed_i = int(np.random.SeedSequence([args.seed, i]).generate_state(1)[0])
        name = f"{args.prefix}_{i:03d}"
        cfg = _config_for(args, seed_i)
        plan.append((name, seed_i, cfg, None if args.force else _finished(out, name, seed_i,
                                                                          cfg, args.size)))
    done = sum(meta is not None for *_, meta in plan)
    if done:
        report.say(f"{done} of {args.n} tomograms already complete in {out}; simulating the "
                   f"other {args.n - done}")
    out.mkdir(parents=True, exist_ok=True)
    records = []
    with use_threads(args.threads):
        for k, (name, seed_i, cfg, meta) in enumerate(plan, start=1):
            if meta is None:
                t0 = time.perf_counter()
                report.say(f"[{k}/{args.n}] {name}: simulating {'x'.join(map(str, args.size))}"
                           f" voxels at {cfg.voxel_size:.2f} Å, defocus {defocus_um(cfg):.2f} "
                           f"µm, {cfg.dose_total:.0f} e/Å², tilts {cfg.tilt_min_deg:.0f}.."
                           f"{cfg.tilt_max_deg:.0f}° step {cfg.tilt_step_deg:g}°")
                sim = simulate_tomogram(seed=seed_i, size_xyz=args.size, config=cfg,
                                        tomo_name=name)
                # A tomogram without its .json is an interrupted write of this run.
                paths = write_simulation(sim, out, name=name, overwrite=True)
                meta = dict(sim.metadata, files={k: Path(v).name for k, v in paths.items()})
                report.say(f"[{k}/{args.n}] {name}: {meta['n_particles']} particles, "
                           f"{len(meta['membranes'])} membranes, "
                           f"{time.perf_counter() - t0:.1f} s")
            records.append(_record(name, seed_i, cfg, meta, args.size))
    summary = write_collection_files(out, records, args.size, base_seed=args.seed,
                                     overwrite=True)
    write_json_result(args, summary)
    report.summary(f"{args.n} tomograms in {out} ({args.n - done} simulated, {done} kept); "
                   f"{out / 'summary.json'}, {out / 'tomograms.star'}")
    return 0


def _finished(out: Path, name: str, seed: int, cfg, size_xyz) -> dict | None:
    """The metadata of tomogram ``name`` if it is complete in ``out`` from these options;
    None if it is absent or was interrupted; CryovisError if it comes from other options."""
    from ..simulate.io import expected_files

    files = expected_files(out, name)
    meta_path = out / f"{name}.json"
    if not meta_path.exists() or not all(f.exists() for f in files):
        if any(f.exists() for f in files) and meta_path.exists():
            raise CryovisError(f"{out / name}*: files of a tomogram are missing (use --force "
                               "to simulate it again)")
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError:
        raise CryovisError(f"{meta_path}: not a simulation record (use --force)") from None
    same = (meta.get("seed") == seed and list(meta.get("size_xyz", [])) == list(size_xyz)
            and meta.get("config") == json.loads(dumps(cfg.to_dict())))
    if not same:
        raise CryovisError(f"{meta_path}: file exists from a run with other options (use "
                           "--force to replace it, or another --out/--prefix)")
    return meta


def defocus_um(cfg) -> float:
    """The config's defocus in µm, the unit people and RELION quote."""
    from ..simulate.config import ANGST_PER_UM

    return cfg.defocus_angst / ANGST_PER_UM


def _record(name: str, seed: int, cfg, meta: dict, size_xyz) -> dict:
    """The tomogram's line in ``summary.json`` and ``tomograms.star`` (Cs in mm, defocus in
    µm: the units of RELION's files)."""
    from ..simulate.config import ANGST_PER_MM

    return {"name": name, "seed": seed, "voxel_size": cfg.voxel_size,
            "size_xyz": list(size_xyz), "voltage_kv": cfg.voltage_kv,
            "cs_mm": cfg.cs_angst / ANGST_PER_MM, "amplitude_contrast": cfg.amplitude_contrast,
            "defocus_um": defocus_um(cfg),
            "dose_total": cfg.dose_total, "n_particles": meta["n_particles"],
            "membrane_fraction": meta["membrane_fraction"], "snr": meta["snr"],
            "seconds": round(float(meta["timings_s"]["total"]), 2),
            "files": dict(meta["files"])}
