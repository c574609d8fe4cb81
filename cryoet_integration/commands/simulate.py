"""``cryovis simulate``: simulated tomograms with labels, instances, membranes and particles."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from ..errors import CryovisError, require_engine


def size_xyz_arg(text: str) -> tuple[int, int, int]:
    """argparse type for ``XxYxZ`` voxel sizes (each at least 8)."""
    try:
        parts = tuple(int(p) for p in text.lower().split("x"))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 8:
        raise argparse.ArgumentTypeError(f"size must be XxYxZ voxels, each >= 8 (got '{text}')")
    return parts  # type: ignore[return-value]


def _value_or_range(text: str) -> tuple[float, float]:
    """'A' (fixed) or 'A:B' (drawn uniformly per tomogram)."""
    try:
        parts = [float(p) for p in text.split(":")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or parts[0] > parts[-1]:
        raise argparse.ArgumentTypeError(f"expected a number or MIN:MAX, got '{text}'")
    return parts[0], parts[-1]


def _tilt_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"tilt range must be MIN,MAX degrees, got '{text}'") from None
    return lo, hi


def register(subparsers) -> None:
    """Add the ``simulate`` subcommand."""
    p = subparsers.add_parser(
        "simulate", help="simulate tomograms with exact ground truth",
        description="Simulate cryo-ET tomograms (ice, membranes, particles, gold; tilt series "
                    "with CTF, dose, noise and misalignment; weighted back-projection) with "
                    "class labels, particle instances, membrane masks and particle lists. "
                    "Conditions are domain-randomised per tomogram unless --no-randomise; "
                    "options given as a number fix a condition, as MIN:MAX draw it uniformly.")
    p.add_argument("--out", required=True, type=Path, help="output folder (created if absent)")
    p.add_argument("--n", type=int, default=1, help="number of tomograms (default 1)")
    p.add_argument("--size", type=size_xyz_arg, default=(256, 256, 128),
                   help="XxYxZ voxels (default 256x256x128)")
    p.add_argument("--seed", type=int, default=0, help="base seed; tomogram i uses (seed, i)")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.add_argument("--no-randomise", action="store_true",
                   help="fixed default conditions (10 Å, 3.5 µm, 100 e/Å², ±60°/3°)")
    p.add_argument("--prefix", default="tomo", help="file name prefix (default tomo)")
    p.add_argument("--voxel-size", type=_value_or_range, metavar="A[:B]", help="Å per voxel")
    p.add_argument("--defocus", type=_value_or_range, metavar="A[:B]", help="µm underfocus")
    p.add_argument("--dose", type=_value_or_range, metavar="A[:B]",
                   help="total dose over the tilt series, e/Å²")
    p.add_argument("--crowding", type=_value_or_range, metavar="A[:B]",
                   help="fraction of the ice volume filled by particles")
    p.add_argument("--tilt-range", type=_tilt_range, metavar="MIN,MAX", help="degrees")
    p.add_argument("--tilt-step", type=float, help="degrees")
    p.add_argument("--phase-flip", choices=("yes", "no"),
                   help="correct the CTF by phase flipping (default: randomised, or no)")
    p.set_defaults(func=run)


def _config_for(args, seed_i: int):
    import numpy as np

    from ..simulate import SimulationConfig

    cfg = SimulationConfig() if args.no_randomise else SimulationConfig.randomised(seed_i)
    rng = np.random.default_rng(np.random.SeedSequence([seed_i, 0xA11]))
    changes = {}
    for opt, field in (("voxel_size", "voxel_size"), ("defocus", "defocus_um"),
                       ("dose", "dose_total"), ("crowding", "crowding")):
        value = getattr(args, opt)
        if value is not None:
            changes[field] = float(rng.uniform(*value)) if value[0] < value[1] else value[0]
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
    """Simulate ``args.n`` tomograms into ``args.out``; prints progress and a JSON summary."""
    require_engine("scipy")
    import numpy as np

    from ..simulate import simulate_tomogram, write_simulation
    from ..simulate.io import expected_files, write_collection_files

    if args.n < 1:
        raise CryovisError(f"--n must be >= 1, got {args.n}")
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise CryovisError(f"{out}: exists and is not a directory")
    names = [f"{args.prefix}_{i:03d}" for i in range(args.n)]
    if not args.force:
        clash = [p for n in names for p in expected_files(out, n) if p.exists()]
        if clash:
            raise CryovisError(f"{clash[0]}: file exists (use --force to replace it)")
    configs = []
    for i in range(args.n):
        seed_i = int(np.random.SeedSequence([args.seed, i]).generate_state(1)[0])
        configs.append((seed_i, _config_for(args, seed_i)))
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for name, (seed_i, cfg) in zip(names, configs):
        t0 = time.perf_counter()
        sim = simulate_tomogram(seed=seed_i, size_xyz=args.size, config=cfg, tomo_name=name)
        paths = write_simulation(sim, out, name=name, overwrite=args.force)
        meta = sim.metadata
        records.append({"name": name, "seed": seed_i, "voxel_size": cfg.voxel_size,
                        "size_xyz": list(args.size), "voltage_kv": cfg.voltage_kv,
                        "cs_mm": cfg.cs_mm, "amplitude_contrast": cfg.amplitude_contrast,
                        "defocus_um": cfg.defocus_um, "dose_total": cfg.dose_total,
                        "n_particles": meta["n_particles"],
                        "membrane_fraction": meta["membrane_fraction"], "snr": meta["snr"],
                        "seconds": round(time.perf_counter() - t0, 2),
                        "files": {k: Path(v).name for k, v in paths.items()}})
        print(f"[{len(records)}/{args.n}] {name}: {meta['n_particles']} particles, "
              f"{len(meta['membranes'])} membranes, {cfg.voxel_size:.2f} Å/voxel, "
              f"{records[-1]['seconds']:.1f} s", file=sys.stderr)
    summary = write_collection_files(out, records, args.size, base_seed=args.seed,
                                     overwrite=True)
    print(json.dumps(summary, indent=2))
    return 0
